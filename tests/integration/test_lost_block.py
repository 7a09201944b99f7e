"""A committed block that cannot be delivered (out of memory building it,
or passing it to another loop) must not leave a silent gap: every
subscriber that would have missed it is closed with 1013 before it can see
a later offset, and resuming with `since` replays what it missed. The
allocation failure is injected with CHORUS_FAULT_LOSE_BLOCK=<topic> (the
first block of that topic is lost)."""

import pytest

from chorus_helpers import RawWS, parse_close

TOPIC = "lost.t"


def subscribe(port, since=None):
    ws = RawWS(port)
    req = {"op": "subscribe", "topic": TOPIC, "id": "s"}
    if since:
        req["since"] = since
    ws.send_json(req)
    r = ws.recv_json()
    assert r["op"] == "subscribed", r
    return ws, r


def publish(pub, n):
    pub.send_json({"op": "publish", "topic": TOPIC, "id": n,
                   "data": {"n": n}})
    r = pub.recv_json()
    assert r["op"] == "published" and r["offset"] == n, r
    return r


@pytest.mark.parametrize("threads", [1, 2])
def test_lost_block_closes_subscribers_who_then_resume(make_broker,
                                                       monkeypatch, threads):
    monkeypatch.setenv("CHORUS_FAULT_LOSE_BLOCK", TOPIC)
    b = make_broker(threads=threads)
    # with two loops, consecutive connections land on different loops
    subs = [subscribe(b.port) for _ in range(4)]
    epoch = subs[0][1]["epoch"]
    pub = RawWS(b.port)

    publish(pub, 1)  # committed, acked, but its block is "lost"
    for ws, _ in subs:
        fin, op, payload = ws.recv_frame()  # the close, and nothing before
        assert op == 8 and parse_close(payload) == \
            (1013, "missed messages (out of memory); resume"), (op, payload)
        ws.close()
    publish(pub, 2)
    publish(pub, 3)

    # resuming from what each had (nothing) replays everything, in order
    for _ in range(len(subs)):
        ws, r = subscribe(b.port, {"epoch": epoch, "offset": 0})
        assert r["recovered"] is True, r
        got = [ws.recv_json() for _ in range(3)]
        assert [(m["offset"], m["data"]["n"]) for m in got] == \
            [(1, 1), (2, 2), (3, 3)], got
        ws.close()

    # the publisher was not touched, and live delivery works again
    live, _ = subscribe(b.port)
    publish(pub, 4)
    m = live.recv_json()
    assert m["op"] == "message" and m["offset"] == 4, m
    live.close()
    pub.close()
    assert "out of memory fanning out lost.t" in b.read_log()
