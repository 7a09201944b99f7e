"""A publisher that is also a slow subscriber is closed with 1013 once its
outbound queue passes max_outbound_bytes, but only after the `published`
ack of every publish the broker took from it (PROTOCOL.md: `published`
once the message is stored): no stored message goes unacknowledged."""
import json
import threading
import time

from chorus_helpers import RawWS, parse_close, publish_frames
from conftest import http_request

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
