"""A close waits for the `published` ack of every publish the broker took
before it (PROTOCOL.md: `published` once the message is stored): a
publisher that is also a slow subscriber is closed with 1013 once its
outbound queue passes max_outbound_bytes, but only after those acks, so no
stored message goes unacknowledged. The wait is bounded: with a store that
stopped answering, the close goes on once no ack has come for 5 s."""
import json
import signal
import socket
import threading
import time

from chorus_helpers import RawWS, parse_close, publish_frames
from cluster_helpers import make_cluster, make_redis  # noqa: F401 fixtures
from conftest import http_request
from wsraw import OP_CLOSE, OP_TEXT, build_frame, close_payload

TOPIC = "abc.self"


def test_slow_subscriber_gets_every_ack_before_1013(make_broker):
    b = make_broker(max_outbound_bytes="256k", threads=1)
    ws = RawWS(b.port, rcvbuf=4096, timeout=20)
    ws.send_json({"op": "subscribe", "topic": TOPIC, "id": "s"})
    assert ws.recv_json()["op"] == "subscribed"

    # It publishes to its own topic and reads nothing meanwhile, so every
    # message fans out to itself until the bound closes it. The broker
    # stops reading it then: the rest of the sendall may never go out.
    count, pad = 600, "x" * 32000
    frames = publish_frames(TOPIC, range(1, count + 1), pad)
    sender = threading.Thread(target=lambda: _send_quietly(ws, frames))
    sender.start()
    deadline = time.monotonic() + 30
    while "slow consumer" not in b.read_log().lower():
        assert time.monotonic() < deadline, "never closed as slow"
        time.sleep(0.05)

    acked, close = set(), None
    try:
        while close is None:
            _, op, payload = ws.recv_frame()
            if op == 8:
                close = parse_close(payload)
            elif op == 1:
                m = json.loads(payload)
                if m["op"] == "published":
                    acked.add(m["id"])
                else:
                    assert m["op"] == "message", m
    except EOFError:
        pass
    ws.close()
    sender.join(30)
    assert close == (1013, "slow consumer"), close

    st, _, body = http_request(b, "GET", f"/api/history/{TOPIC}?limit=1000")
    assert st == 200, body
    stored = {m["data"]["n"] for m in json.loads(body)["messages"]}
    assert stored, "nothing was published"
    assert len(stored) < count, "the bound never closed the publisher"
    assert stored == acked, (len(stored), len(acked),
                             sorted(stored - acked)[:10])


def _send_quietly(ws, data):
    try:
        ws.sock.sendall(data)
    except OSError:
        pass  # closed by the broker: expected


def test_close_gives_up_on_acks_that_never_come(make_cluster):
    """A store that stops answering (Redis paused with SIGSTOP, its
    redis_timeout far away) holds back every ack. A close waiting for them
    (the client's close frame, or its FIN) goes on once none has come for
    5 s, and the log says so; the node serves others meanwhile."""
    (redis,), (node,) = make_cluster(1, redis_timeout="60s")
    closer = RawWS(node.port, timeout=30)
    halfer = RawWS(node.port, timeout=30)
    for ws in (closer, halfer):
        ws.send_json({"op": "publish", "topic": "stall", "id": "before",
                      "data": 1})
        r = ws.recv_json()
        assert (r["op"], r["id"]) == ("published", "before"), r
    redis.send_signal(signal.SIGSTOP)
    try:
        lost = build_frame(OP_TEXT, json.dumps(
            {"op": "publish", "topic": "stall", "id": "lost",
             "data": 2}).encode())
        t0 = time.monotonic()
        closer.sock.sendall(lost + build_frame(OP_CLOSE,
                                               close_payload(1000, "bye")))
        halfer.sock.sendall(lost)
        halfer.sock.shutdown(socket.SHUT_WR)
        # The close frame comes after the wait, not before, and no ack
        # ever does.
        frames = _frames_until_end(closer)
        waited = time.monotonic() - t0
        assert [op for op, _ in frames] == [OP_CLOSE], frames
        assert parse_close(frames[0][1])[0] == 1000, frames
        assert 4.5 <= waited < 20, waited
        # The half-closed one is flushed and closed: EOF, no close frame.
        assert _frames_until_end(halfer) == []
        assert time.monotonic() - t0 < 20
        assert "closing without 1 publish ack(s)" in node.read_log()
    finally:
        redis.send_signal(signal.SIGCONT)
    closer.close()
    halfer.close()
    # Redis answers again: the node acks new publishes as before.
    ws = RawWS(node.port, timeout=30)
    ws.send_json({"op": "publish", "topic": "stall", "id": "after",
                  "data": 3})
    assert ws.recv_json()["op"] == "published"
    ws.close()


def _frames_until_end(ws):
    """(opcode, payload) of every frame until the close frame (included)
    or the end of the stream."""
    frames = []
    try:
        while not frames or frames[-1][0] != OP_CLOSE:
            _, op, payload = ws.recv_frame()
            frames.append((op, payload))
    except (EOFError, ConnectionResetError):
        pass
    return frames
