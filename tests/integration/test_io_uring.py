"""End-of-turn writes through io_uring (io_uring = on, the default) and
through writev (io_uring = off): the same fan-out, including partial
writes to a subscriber whose socket is full, must reach every subscriber
complete and in order either way."""
import os
import time

import pytest

from chorus_helpers import RawWS


def rings(pid):
    """io_uring instances the process holds (one per event loop)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if "io_uring" in os.readlink(f"/proc/{pid}/fd/{fd}"):
                n += 1
        except OSError:
            pass
    return n


def subscribe(port, topic, rcvbuf=None):
    ws = RawWS(port, rcvbuf=rcvbuf)
    ws.send_json({"op": "subscribe", "topic": topic, "id": 1})
    r = ws.recv_json()
    assert r["op"] == "subscribed", r
    return ws


@pytest.mark.parametrize("mode", ["on", "off"])
def test_fan_out_complete_and_ordered(make_broker, mode):
    b = make_broker(io_uring=mode, threads=2, max_outbound_bytes="64m")
    if mode == "on" and "io_uring not available" in b.read_log():
        # A kernel or container without io_uring: the broker said so once
        # and writes with writev; the fan-out below must still be whole.
        assert rings(b.proc.pid) == 0
    elif mode == "on":
        assert rings(b.proc.pid) == 2, "one ring per event loop"
    else:
        assert rings(b.proc.pid) == 0
    subs = [subscribe(b.port, "t") for _ in range(20)]
    # A subscriber that does not read at first: its small socket buffer
    # fills, so writes to it are partial and the rest waits for it.
    stalled = subscribe(b.port, "t", rcvbuf=4096)
    pub = RawWS(b.port)
    count, pad = 300, "p" * 1000
    for i in range(1, count + 1):
        pub.send_json({"op": "publish", "topic": "t", "id": i,
                       "data": {"n": i, "pad": pad}})
    for i in range(1, count + 1):
        r = pub.recv_json()
        assert r["op"] == "published" and r["id"] == i, r
    for ws in subs:
        got = [ws.recv_json()["data"]["n"] for _ in range(count)]
        assert got == list(range(1, count + 1))
    time.sleep(0.2)
    got = [stalled.recv_json()["data"]["n"] for _ in range(count)]
    assert got == list(range(1, count + 1))
    for ws in subs + [stalled, pub]:
        ws.close()
