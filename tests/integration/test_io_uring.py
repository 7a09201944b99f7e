"""End-of-turn writes through io_uring (io_uring = on, the default) and
through writev (io_uring = off).

Where chorusd is built with liburing and the kernel offers io_uring, the
broker must use it: these tests fail otherwise, and skip (with the
measured reason) only where the kernel really offers no io_uring. Either
way the same fan-out, with writes a slow socket takes only in part, must
reach every subscriber whole, once and in order."""
import time

import pytest

from chorus_helpers import (RawWS, metrics_values, proc_rings,
                            require_io_uring)

LOOPS = 2


def subscribe(port, topic, rcvbuf=None):
    ws = RawWS(port, rcvbuf=rcvbuf)
    ws.send_json({"op": "subscribe", "topic": topic, "id": 1})
    r = ws.recv_json()
    assert r["op"] == "subscribed", r
    return ws


def test_broker_uses_io_uring_where_it_can(make_broker):
    b = make_broker(io_uring="on", threads=LOOPS)
    require_io_uring(b, LOOPS)


def test_io_uring_off_writes_with_writev(make_broker):
    b = make_broker(io_uring="off", threads=LOOPS)
    m = metrics_values(b)
    assert m["chorus_io_uring_rings"] == 0
    assert proc_rings(b.proc.pid) == 0


def read_stream(ws, count, pause=0.0):
    """The next count messages, each a whole text frame; their data.n."""
    got = []
    for _ in range(count):
        got.append(ws.recv_json()["data"]["n"])
        time.sleep(pause)
    return got


def frames_to_overflow(frame_bytes):
    """Frames enough to fill the largest send buffer TCP may give the
    broker's socket (tcp_wmem's maximum) twice over: a subscriber that
    does not read cannot take them all, so a write to it comes up short."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        wmem_max = int(f.read().split()[2])
    return 2 * wmem_max // frame_bytes + 16


@pytest.mark.parametrize("mode", ["on", "off"])
def test_partial_writes_keep_every_stream_whole(make_broker, mode):
    b = make_broker(io_uring=mode, threads=LOOPS, max_outbound_bytes="64m")
    if mode == "on":
        require_io_uring(b, LOOPS)
    via = "io_uring" if mode == "on" else "writev"
    series = f'chorus_partial_writes_total{{via="{via}"}}'
    before = metrics_values(b)[series]
    subs = [subscribe(b.port, "t") for _ in range(4)]
    # A subscriber with a tiny receive buffer that does not read until
    # everything is published, then reads slowly: its socket cannot take
    # what is sent to it, so a write to it is partial (it stops in the
    # middle of a frame), and the rest must follow in order.
    slow = subscribe(b.port, "t", rcvbuf=4096)
    pub = RawWS(b.port)
    pad = "p" * 65536
    count = frames_to_overflow(len(pad))
    for i in range(1, count + 1):
        pub.send_json({"op": "publish", "topic": "t", "id": i,
                       "data": {"n": i, "pad": pad}})
    for i in range(1, count + 1):
        r = pub.recv_json()
        assert r["op"] == "published" and r["id"] == i, r
    want = list(range(1, count + 1))
    assert read_stream(slow, count, pause=0.002) == want
    for ws in subs:
        assert read_stream(ws, count) == want
    m = metrics_values(b)
    assert m[series] > before, f"no partial write through {via}"
    if mode == "off":
        assert m['chorus_partial_writes_total{via="io_uring"}'] == 0
    else:  # the ring did not fail on the way
        assert m["chorus_io_uring_rings"] == LOOPS
    for ws in subs + [slow, pub]:
        ws.close()
