"""Publisher flow control (max_unacked_bytes): a WebSocket connection that
pipelines publishes faster than they are committed stops being read from
once its unacknowledged data reaches the bound, and is read again when
acks bring it under half. Nothing is refused or lost: every publish gets
its `published`, in order, and subscribers see every message once."""
import threading

import pytest

import chorus_helpers
from chorus_helpers import RawWS, publish_frames


def pipeline(port, topic, count, pad, results):
    """Sends count publishes at once without reading, then reads every
    reply; results[topic] = list of (id, offset)."""
    ws = RawWS(port)
    try:
        sender = threading.Thread(
            target=ws.sock.sendall,
            args=(publish_frames(topic, range(1, count + 1), pad),))
        sender.start()
        got = []
        while len(got) < count:
            r = ws.recv_json()
            assert r["op"] == "published", r
            got.append((r["id"], r["offset"]))
        sender.join()
        results[topic] = got
    finally:
        ws.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_pipelined_publishes_pause_reading_and_all_get_acked(make_broker,
                                                             threads):
    b = make_broker(max_unacked_bytes="2k", threads=threads)
    count, pad = 400, "x" * 200   # ~80 KB of data against a 2 KB bound
    sub = RawWS(b.port)
    sub.send_json({"op": "subscribe", "topic": "fc0", "id": "s"})
    assert sub.recv_json()["op"] == "subscribed"

    # Two publishers at once: with threads = 2 one of them is on the
    # loop that forwards its publishes to loop 0 and waits for their acks.
    results = {}
    workers = [threading.Thread(target=pipeline,
                                args=(b.port, f"fc{k}", count, pad, results))
               for k in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    for k in range(2):
        got = results.get(f"fc{k}")
        assert got == [(i, i) for i in range(1, count + 1)], got and got[:5]

    seen = []
    while len(seen) < count:
        m = sub.recv_json()
        assert m["op"] == "message", m
        seen.append((m["offset"], m["data"]["n"]))
    assert seen == [(i, i) for i in range(1, count + 1)]
    sub.close()

    m = chorus_helpers.metrics_values(b)
    assert m["chorus_publish_read_pauses_total"] >= 2, m
    assert m["chorus_messages_published_total"] == 2 * count


def test_paused_publisher_does_not_stall_others(make_broker):
    """While one publisher is paused, another connection's requests are
    answered at once."""
    b = make_broker(max_unacked_bytes="1")
    slow = RawWS(b.port)
    slow.sock.sendall(publish_frames("busy", range(1, 201), "y" * 100))
    other = RawWS(b.port)
    other.send_json({"op": "ping", "id": 7})
    assert other.recv_json() == {"op": "pong", "id": 7}
    other.send_json({"op": "publish", "topic": "quiet", "data": 1, "id": 8})
    r = other.recv_json()
    assert r["op"] == "published" and r["id"] == 8, r
    acks = [slow.recv_json() for _ in range(200)]
    assert [a["id"] for a in acks] == list(range(1, 201))
    assert all(a["op"] == "published" for a in acks)
    slow.close()
    other.close()

