"""An io_uring submission that fails in the middle of a fan-out must not
send a byte twice or skip one. CHORUS_FAULT_URING_SUBMIT=<n> makes the
n-th batch of three or more writes of each event loop fail as a broken
ring could (broker/net/send_batch.h): the kernel has taken the first two
thirds of the writes and sent them, the completions of the second third
are lost, the last third was never taken, and io_uring_enter answers an
error. The broker must report the first third's real results, drop the
connections of the second (their stream's state is unknown; a close frame
could land inside a frame), write the last third later with writev, and
keep working on writev.

Every subscriber then either gets every offset once, in order, in whole
frames, or loses its connection after a whole-frame prefix and resumes
with `since` from the last offset it got, missing nothing."""
import json
import re
import time

from chorus_helpers import WAIT, RawWS, metrics_values, parse_close, \
    require_io_uring

TOPIC = "fault.t"
LOOPS = 2
SUBS_PER_LOOP = 6  # thirds of 2: 2 intact, 2 dropped, 2 requeued per loop
FAULT_AT = 4  # the 4th fan-out of each loop fails
COUNT = 20  # at least; more if a loop's fourth fan-out comes later
# PROTOCOL.md's close codes a subscriber may be closed with here.
RESUMABLE_CLOSES = {1001, 1011, 1013}


def subscribe(port, since=None):
    ws = RawWS(port)
    req = {"op": "subscribe", "topic": TOPIC, "id": "s"}
    if since:
        req["since"] = since
    ws.send_json(req)
    r = ws.recv_json()
    assert r["op"] == "subscribed", r
    return ws, r


def read_until_end(ws, last, count):
    """Reads messages after offset `last` until offset count or the end of
    the connection. Every frame must be whole and the offsets consecutive.
    Returns (last offset read, how it ended: None if it did not)."""
    try:
        while last < count:
            fin, op, payload = ws.recv_frame()
            if op == 8:
                code, reason = parse_close(payload)
                assert code in RESUMABLE_CLOSES, (code, reason)
                return last, f"close {code}"
            assert fin and op == 1, (fin, op, payload[:80])
            m = json.loads(payload)
            assert m["op"] == "message", m
            assert m["offset"] == last + 1, (m["offset"], last)
            assert m["data"]["n"] == m["offset"], m
            last = m["offset"]
    except (EOFError, ConnectionResetError):
        # Dropped without a close frame; a partial frame before the end
        # is discarded, as a WebSocket client does.
        return last, "dropped"
    return last, None


def publish(pub, n):
    pub.send_json({"op": "publish", "topic": TOPIC, "id": n, "data": {"n": n}})
    r = pub.recv_json()
    assert r["op"] == "published" and r["offset"] == n, r


def injected_failures(b):
    """The injected failure's log line of each loop that has had it."""
    return re.findall(r"io_uring_enter: .* \(injected\); (\d+) of (\d+) "
                      r"writes with no known outcome .*?, (\d+) not taken",
                      b.read_log())


def test_failed_submit_neither_duplicates_nor_skips(make_broker,
                                                    monkeypatch):
    monkeypatch.setenv("CHORUS_FAULT_URING_SUBMIT", str(FAULT_AT))
    b = make_broker(io_uring="on", threads=LOOPS)
    require_io_uring(b, LOOPS)
    # consecutive connections land on the loops in turn
    subs = [subscribe(b.port) for _ in range(LOOPS * SUBS_PER_LOOP)]
    epoch = subs[0][1]["epoch"]
    pub = RawWS(b.port)
    # One commit each, and usually one fan-out each; but a loop that lags
    # carries several commits in one fan-out, so its fourth may come late
    # or be its last: publish until every loop's ring has failed, then
    # once more, which reaches only the connections left.
    n, deadline = 0, time.monotonic() + WAIT
    while n < COUNT or len(injected_failures(b)) < LOOPS:
        assert time.monotonic() < deadline, b.read_log()
        n += 1
        publish(pub, n)
    failures = injected_failures(b)
    assert len(failures) == LOOPS, b.read_log()
    total = n + 1
    publish(pub, total)

    ended = []
    for ws, _ in subs:
        last, how = read_until_end(ws, 0, total)
        ws.close()
        if how is None:
            continue
        # It got a whole prefix (at least what came before the fault):
        # resuming from there replays the rest, once and in order.
        assert last >= FAULT_AT - 1, (last, how)
        ended.append(how)
        again, r = subscribe(b.port, {"epoch": epoch, "offset": last})
        assert r["recovered"] is True, r
        assert read_until_end(again, last, total) == (total, None)
        again.close()

    unknown = sum(int(f[0]) for f in failures)
    untaken = sum(int(f[2]) for f in failures)
    assert unknown > 0 and untaken > 0, failures
    # exactly the connections whose writes had no known outcome ended
    assert ended == ["dropped"] * unknown, (ended, failures)
    assert metrics_values(b)["chorus_io_uring_rings"] == 0
    pub.close()
