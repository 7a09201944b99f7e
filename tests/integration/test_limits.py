"""Limits (issue 4, "Origin and limits"): max_connections,
max_connections_per_ip, max_subscriptions_per_connection, the publish
token bucket (publish_rate / publish_burst) and max_message_size. For each:
the documented refusal (503 before any upgrade, too_large, rate_limited,
1009 / 413), recovery, other clients unaffected, a /metrics counter, and a
log line at most once per second per cause however many refusals."""
import asyncio
import json
import re
import time

import pytest
import websockets

from conftest import dumps, http_request

import chorus_helpers
from chorus_helpers import WAIT
from chorus_helpers import connect_aborting as connect
from chorus_helpers import recv_json_any as recv_json
from chorus_helpers import request_any as request
from chorus_helpers import run_aborting as run


async def still_works(ws, topic="alive"):
    r = await request(ws, {"op": "ping", "id": 1})
    assert r == {"op": "pong", "id": 1}, r
    r = await request(ws, {"op": "publish", "topic": topic, "data": 1})
    assert r["op"] == "published", r


metrics = chorus_helpers.metrics_values


def log_lines(broker, pattern, since=0):
    rx = re.compile(pattern, re.I)
    return [ln for ln in broker.read_log()[since:].splitlines()
            if rx.search(ln)]


def log_problem(broker, pattern, since, seconds):
    """At least one line for the cause, at most one per started second:
    None, or what is wrong."""
    lines = log_lines(broker, pattern, since)
    if not lines:
        return f"no log line matching {pattern!r} (log_level = info):\n" + \
            broker.read_log()[since:][-2000:]
    if len(lines) > int(seconds) + 2:
        return f"{len(lines)} log lines for {pattern!r} in " \
            f"{seconds:.1f}s:\n" + "\n".join(lines[:20])
    return None


def assert_log_rate_limited(broker, pattern, since, seconds):
    problem = log_problem(broker, pattern, since, seconds)
    assert problem is None, problem


def assert_no_problems(problems):
    problems = [p for p in problems if p]
    assert not problems, "\n\n".join(problems)


def raw_upgrade(port, src=None, timeout=WAIT):
    """Opens a socket (from source address src) and sends a /ws upgrade;
    returns (socket, first bytes of the answer)."""
    s = chorus_helpers.raw_upgrade_socket(port, f"127.0.0.1:{port}", timeout,
                                          src=src)
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    except ConnectionResetError:
        pass
    return s, buf


def assert_refused_503(port, src=None):
    s, buf = raw_upgrade(port, src)
    try:
        assert buf.startswith(b"HTTP/1.1 503"), buf
        assert b"101" not in buf.split(b"\r\n")[0]
        # then the broker closes the connection
        try:
            rest = s.recv(4096)
            while rest and b"" != rest:
                assert b"HTTP/1.1 101" not in rest
                rest = s.recv(4096)
        except ConnectionResetError:
            pass
    finally:
        s.close()


def assert_upgrades(port, src=None):
    s, buf = raw_upgrade(port, src)
    s.close()
    assert buf.startswith(b"HTTP/1.1 101"), buf


async def wait_until(pred, timeout=WAIT, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await pred():
            return True
        await asyncio.sleep(step)
    return False


# --- max_connections ------------------------------------------------------

def test_max_connections(make_broker):
    b = make_broker(max_connections=3, log_level="info")
    before = metrics(b)
    since = len(b.read_log())

    async def main():
        conns = [await connect(b) for _ in range(3)]
        t0 = time.monotonic()
        for _ in range(30):
            assert_refused_503(b.port)
        with pytest.raises((websockets.InvalidStatusCode, OSError,
                            websockets.InvalidMessage)):
            await connect(b)
        elapsed = time.monotonic() - t0
        # those already in are unaffected
        for c in conns:
            await still_works(c)
        # once one leaves, a new one gets in (the slot frees soon)
        await conns[0].close()

        async def admitted():
            try:
                ws = await connect(b)
            except (websockets.InvalidStatusCode, websockets.InvalidMessage,
                    OSError):
                return False
            conns[0] = ws
            return True
        assert await wait_until(admitted), "slot never freed"
        await still_works(conns[0])
        for c in conns:
            await c.close()
        return elapsed

    elapsed = run(main())

    async def can_query():
        try:
            return metrics(b) is not None
        except (OSError, AssertionError):
            return False
    asyncio.run(wait_until(can_query))
    after = metrics(b)
    key = 'chorus_connections_rejected_total{cause="max_connections"}'
    assert after[key] - before.get(key, 0) >= 31, (before.get(key), after[key])
    assert_log_rate_limited(b, r"max_connections", since, elapsed + 1)


# --- max_connections_per_ip -----------------------------------------------

async def connect_when_slot_free(b):
    """connect(b), again while refused with 503 (within WAIT): the requests
    just before (readiness, /metrics) also came from 127.0.0.1, and the
    broker frees their slots when it reads their close, which on a busy
    machine can come after the next connection."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return await connect(b)
        except websockets.exceptions.InvalidStatusCode as e:
            if e.status_code != 503 or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.02)


def test_max_connections_per_ip(make_broker):
    b = make_broker(max_connections_per_ip=2, log_level="info")
    since = len(b.read_log())
    before = metrics(b)

    async def main():
        t0 = time.monotonic()  # refusals (so log lines) may start here
        a = await connect_when_slot_free(b)
        c = await connect_when_slot_free(b)
        for _ in range(20):
            assert_refused_503(b.port)
        elapsed = time.monotonic() - t0
        # another address is not affected by 127.0.0.1's cap
        s1, buf = raw_upgrade(b.port, src="127.0.0.2")
        assert buf.startswith(b"HTTP/1.1 101"), buf
        s2, buf = raw_upgrade(b.port, src="127.0.0.2")
        assert buf.startswith(b"HTTP/1.1 101"), buf
        assert_refused_503(b.port, src="127.0.0.2")
        await still_works(a)
        await still_works(c)
        s1.close()
        s2.close()
        await a.close()

        async def admitted():
            s, buf = raw_upgrade(b.port)
            s.close()
            return buf.startswith(b"HTTP/1.1 101")
        assert await wait_until(admitted), "per-IP slot never freed"
        await c.close()
        return elapsed

    elapsed = run(main())
    # /metrics is itself a connection from 127.0.0.1: wait for a free slot
    deadline = time.monotonic() + WAIT
    while True:
        try:
            after = metrics(b)
            break
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    key = 'chorus_connections_rejected_total{cause="per_ip"}'
    assert after[key] - before.get(key, 0) >= 21, (before.get(key), after[key])
    assert_log_rate_limited(b, r"max_connections_per_ip", since, elapsed + 1)


# --- max_subscriptions_per_connection ---------------------------------------

def test_max_subscriptions_per_connection(make_broker):
    b = make_broker(max_subscriptions_per_connection=3, log_level="info")
    since = len(b.read_log())
    before = metrics(b)

    async def main():
        ws = await connect(b)
        other = await connect(b)
        for i in range(3):
            r = await request(ws, {"op": "subscribe", "topic": f"t{i}"})
            assert r["op"] == "subscribed", r
        t0 = time.monotonic()
        for i in range(3, 23):
            r = await request(ws, {"op": "subscribe", "topic": f"t{i}",
                                   "id": i})
            assert r["op"] == "error" and r["code"] == "too_large" and \
                r["id"] == i, r
        elapsed = time.monotonic() - t0
        # subscribing again to a held topic is not a new subscription
        r = await request(ws, {"op": "subscribe", "topic": "t1"})
        assert r["op"] == "subscribed", r
        # the refused topics deliver nothing; held ones still do
        r = await request(other, {"op": "publish", "topic": "t5",
                                  "data": "no"})
        assert r["op"] == "published"
        r = await request(other, {"op": "publish", "topic": "t0",
                                  "data": "yes"})
        assert r["op"] == "published"
        m = await recv_json(ws)
        assert m["op"] == "message" and m["topic"] == "t0", m
        # other connections have their own allowance
        for i in range(3):
            r = await request(other, {"op": "subscribe", "topic": f"t{i}"})
            assert r["op"] == "subscribed", r
        # recovery: unsubscribe one, then a new one fits
        r = await request(ws, {"op": "unsubscribe", "topic": "t2"})
        assert r["op"] == "unsubscribed", r
        r = await request(ws, {"op": "subscribe", "topic": "t9"})
        assert r["op"] == "subscribed", r
        r = await request(ws, {"op": "subscribe", "topic": "t10"})
        assert r["op"] == "error" and r["code"] == "too_large", r
        await still_works(ws)
        return elapsed

    elapsed = run(main())
    after = metrics(b)
    key = 'chorus_errors_total{code="too_large"}'
    assert after[key] - before.get(key, 0) == 21, (before.get(key), after[key])
    assert_log_rate_limited(b, r"max_subscriptions|subscriptions", since,
                            elapsed + 1)


# --- publish rate -------------------------------------------------------------

def test_publish_rate_limit(make_broker):
    b = make_broker(publish_rate=5, publish_burst=3, log_level="info")
    since = len(b.read_log())
    before = metrics(b)

    async def main():
        ws = await connect(b)
        other = await connect(b)
        sub = await connect(b)
        r = await request(sub, {"op": "subscribe", "topic": "r"})
        assert r["op"] == "subscribed"
        t0 = time.monotonic()
        for i in range(40):
            await ws.send(dumps({"op": "publish", "topic": "r", "id": i,
                                 "data": i}))
        replies = [await recv_json(ws) for _ in range(40)]
        elapsed = time.monotonic() - t0
        ok = [r for r in replies if r["op"] == "published"]
        limited = [r for r in replies if r["op"] == "error"]
        assert all(r["code"] == "rate_limited" for r in limited), limited
        assert {r["id"] for r in ok} | {r["id"] for r in limited} == \
            set(range(40))
        # the burst, plus what refilled at 5/s while sending
        assert 3 <= len(ok) <= 3 + int(elapsed * 5) + 1, (len(ok), elapsed)
        assert [r["id"] for r in ok][:3] == [0, 1, 2], ok
        # subscribers get exactly the accepted ones
        got = [await recv_json(sub) for _ in ok]
        assert [m["data"] for m in got] == [r["id"] for r in ok]
        # another connection has its own bucket
        for i in range(3):
            r = await request(other, {"op": "publish", "topic": "r2",
                                      "data": i})
            assert r["op"] == "published", r
        # recovery: after a pause, publishing works again, at the rate
        await asyncio.sleep(0.7)
        r = await request(ws, {"op": "publish", "topic": "r", "data": "x"})
        assert r["op"] == "published", r
        await recv_json(sub)
        # the connection was never closed by the limit
        r = await request(ws, {"op": "ping", "id": 2})
        assert r["op"] == "pong"
        return elapsed, len(limited)

    elapsed, n_limited = run(main())
    after = metrics(b)
    key = 'chorus_errors_total{code="rate_limited"}'
    assert after[key] - before.get(key, 0) == n_limited
    assert_log_rate_limited(b, r"publish_rate|rate.limit", since, elapsed + 2)


def test_publish_burst_defaults_to_rate(make_broker):
    b = make_broker(publish_rate=4)

    async def main():
        ws = await connect(b)
        for i in range(10):
            await ws.send(dumps({"op": "publish", "topic": "r", "id": i,
                                 "data": i}))
        replies = [await recv_json(ws) for _ in range(10)]
        ok = [r for r in replies if r["op"] == "published"]
        assert 4 <= len(ok) <= 5, replies
    run(main())


# --- max_message_size -------------------------------------------------------

def test_max_message_size_ws_1009(make_broker):
    limit = 1024
    b = make_broker(max_message_size="1k", log_level="info")
    since = len(b.read_log())
    before = metrics(b)

    def msg_of_size(n, topic="big"):
        base = dumps({"op": "publish", "topic": topic, "data": ""})
        m = dumps({"op": "publish", "topic": topic,
                   "data": "x" * (n - len(base))})
        assert len(m) == n
        return m

    async def main():
        other = await connect(b)
        r = await request(other, {"op": "subscribe", "topic": "big"})
        assert r["op"] == "subscribed"
        ws = await connect(b)
        # exactly at the limit: accepted
        r = await request(ws, {"op": "ping"})
        await ws.send(msg_of_size(limit))
        r = await recv_json(ws)
        assert r["op"] == "published", r
        assert (await recv_json(other))["op"] == "message"
        t0 = time.monotonic()
        for i in range(10):
            c = await connect(b)
            if i % 2:
                await c.send(msg_of_size(limit + 1))
            else:  # fragmented: the reassembled size counts
                await c.send(iter(["x" * 600, "y" * 600]))
            with pytest.raises(websockets.ConnectionClosed) as e:
                await asyncio.wait_for(c.recv(), WAIT)
            assert e.value.code == 1009, (e.value.code, e.value.reason)
        elapsed = time.monotonic() - t0
        # nothing of it was published; others are unaffected
        await still_works(other, "big2")
        await still_works(ws, "big2")
        return elapsed

    elapsed = run(main())
    after = metrics(b)
    # some counter in /metrics must count these refusals
    grew = {k: after[k] - before.get(k, 0) for k in after
            if re.search(r"too_large|message_size|1009", k)
            and after[k] - before.get(k, 0) >= 10}
    assert_no_problems([
        None if grew else "no /metrics counter counts the 10 1009 closes; "
        "changed: " + ", ".join(k for k in after
                                if after[k] != before.get(k, 0)),
        log_problem(b, r"max_message_size|too (large|big)", since,
                    elapsed + 1)])


def test_max_message_size_http_413(make_broker):
    b = make_broker(max_message_size="1k", log_level="info")
    since = len(b.read_log())
    before = metrics(b)
    h = {"Content-Type": "application/json"}
    body = b'"' + b"x" * 1022 + b'"'
    st, _, data = http_request(b, "POST", "/api/publish/h", body, h)
    assert st == 200, data
    t0 = time.monotonic()
    for _ in range(10):
        st, hdrs, data = http_request(b, "POST", "/api/publish/h",
                                      b'"' + b"x" * 1023 + b'"', h)
        assert st == 413, (st, data)
        assert json.loads(data)["error"] == "too_large", data
    elapsed = time.monotonic() - t0
    st, _, data = http_request(b, "GET", "/api/history/h")
    assert json.loads(data)["offset"] == 1, data
    after = metrics(b)
    grew = {k for k in after
            if after[k] - before.get(k, 0) >= 10 and
            re.search(r"too_large|message_size|413", k)}
    assert_no_problems([
        None if grew else "no /metrics counter names the 10 413 refusals; "
        "changed: " + ", ".join(k for k in after
                                if after[k] != before.get(k, 0)),
        log_problem(b, r"max_message_size|too (large|big)", since,
                    elapsed + 1)])
