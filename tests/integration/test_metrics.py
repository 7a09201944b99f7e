"""GET /metrics (issue 4, "Metrics and health"): Prometheus text format,
the documented names, values checked after known traffic (connections,
subscriptions, topics, published/delivered, bytes, replays, history
commits and their latency histogram, errors by code, rejections by cause,
slow-consumer closes), and access control with api_key."""
import asyncio
import json
import re
import struct
import os
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

SECRET = "metrics-secret-of-at-least-32-bytes"
API_KEY = "metrics-api-key-LEAK"

NAMES = [
    "chorus_connections", "chorus_connections_total",
    "chorus_connections_rejected_total", "chorus_subscriptions",
    "chorus_topics", "chorus_messages_published_total",
    "chorus_messages_delivered_total", "chorus_received_bytes_total",
    "chorus_sent_bytes_total", "chorus_slow_consumer_closes_total",
    "chorus_replays_total", "chorus_history_commits_total",
    "chorus_history_commit_duration_seconds", "chorus_errors_total",
    "chorus_sse_streams", "chorus_sse_streams_total",
]
SAMPLE_RE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*)?\})? '
    r'(-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$')


def make_jwt(claims, secret=SECRET):
    return chorus_helpers.make_jwt(claims, secret)


def scrape(broker, headers=None):
    st, hdrs, body = http_request(broker, "GET", "/metrics",
                                  headers=headers)
    assert st == 200, (st, body)
    assert hdrs.get("Content-Type", "").startswith("text/plain"), hdrs
    return body.decode()


def parse(text):
    """{series: value}; also checks the exposition format line by line."""
    out, typed, helped = {}, {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge", "histogram", "summary",
                            "untyped"), line
            assert name not in typed, f"duplicate TYPE {name}"
            typed[name] = kind
            continue
        assert line and not line.startswith("#"), repr(line)
        m = SAMPLE_RE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        series = line.rpartition(" ")[0]
        assert series not in out, f"duplicate series {series}"
        out[series] = float(line.rpartition(" ")[2])
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) \
            if name not in typed else name
        assert family in typed, f"{name} has no TYPE line"
        assert family in helped, f"{name} has no HELP line"
        if typed[family] == "counter":
            assert name.endswith("_total"), f"counter {name} lacks _total"
    assert text.endswith("\n")
    return out, typed


def metrics(broker, headers=None):
    return parse(scrape(broker, headers))[0]


def delta(before, after, key):
    return after.get(key, 0) - before.get(key, 0)


async def eventually(pred, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.02)
    return pred()


def test_format_and_names(make_broker):
    b = make_broker()
    m, typed = parse(scrape(b))
    for name in NAMES:
        assert name in typed, f"{name} missing; have {sorted(typed)}"
    assert typed["chorus_connections"] == "gauge"
    assert typed["chorus_subscriptions"] == "gauge"
    assert typed["chorus_topics"] == "gauge"
    assert typed["chorus_sse_streams"] == "gauge"
    assert typed["chorus_history_commit_duration_seconds"] == "histogram"
    for cause in ("max_connections", "per_ip", "auth", "origin"):
        assert f'chorus_connections_rejected_total{{cause="{cause}"}}' in m
    for code in ("bad_request", "unknown_op", "invalid_topic",
                 "unauthorized", "forbidden", "too_large", "rate_limited",
                 "not_subscribed", "internal"):
        assert f'chorus_errors_total{{code="{code}"}}' in m
    assert 'chorus_history_commit_duration_seconds_bucket{le="+Inf"}' in m
    # the scrape itself is an open connection
    assert m["chorus_connections"] >= 1
    assert m["chorus_messages_published_total"] == 0
    assert m["chorus_subscriptions"] == 0


@pytest.mark.parametrize("threads", [1, 4])
def test_values_after_known_traffic(make_broker, threads):
    """With several event loops, connections land on different loops; the
    values must be the same as with one."""
    b = make_broker(threads=threads)
    before = metrics(b)

    async def main():
        subs = [await connect(b) for _ in range(3)]
        for s in subs:
            r = await request(s, {"op": "subscribe", "topic": "m.news"})
            assert r["op"] == "subscribed", r
        r = await request(subs[0], {"op": "subscribe", "topic": "m.other"})
        assert r["op"] == "subscribed"
        pub = await connect(b)
        mid = metrics(b)
        assert delta(before, mid, "chorus_connections") == 4, mid
        assert delta(before, mid, "chorus_connections_total") >= 4
        assert mid["chorus_subscriptions"] == 4, mid
        if threads == 1:
            assert mid["chorus_topics"] == 2, mid
        else:  # documented as summed over event loops: a topic may count
            assert 2 <= mid["chorus_topics"] <= 2 * threads, mid
        payload = "p" * 1000
        for i in range(5):
            r = await request(pub, {"op": "publish", "topic": "m.news",
                                    "data": payload})
            assert r["op"] == "published" and r["offset"] == i + 1, r
        for s in subs:
            for i in range(5):
                m = await recv_json(s)
                assert m["op"] == "message" and m["offset"] == i + 1
        after = metrics(b)
        assert delta(mid, after, "chorus_messages_published_total") == 5
        assert delta(mid, after, "chorus_messages_delivered_total") == 15
        # bytes: 5 publishes of 1000+ bytes in; 15 deliveries out
        assert delta(mid, after, "chorus_received_bytes_total") >= 5 * 1000
        assert delta(mid, after, "chorus_sent_bytes_total") >= 15 * 1000
        commits = delta(mid, after, "chorus_history_commits_total")
        assert 1 <= commits <= 5, commits
        hc = "chorus_history_commit_duration_seconds"
        assert after[hc + "_count"] == after["chorus_history_commits_total"]
        assert after[hc + "_sum"] >= 0
        buckets = sorted(
            ((float(k.split('"')[1]), v) for k, v in after.items()
             if k.startswith(hc + "_bucket") and "+Inf" not in k))
        vals = [v for _, v in buckets]
        assert vals == sorted(vals), buckets  # cumulative
        assert after[hc + '_bucket{le="+Inf"}'] == after[hc + "_count"]
        assert vals[-1] <= after[hc + "_count"]
        # an HTTP publish counts too, and is delivered to 3
        st, _, body = http_request(b, "POST", "/api/publish/m.news", b"1",
                                   {"Content-Type": "application/json"})
        assert st == 200, body
        for s in subs:
            assert (await recv_json(s))["offset"] == 6
        after2 = metrics(b)
        assert delta(after, after2, "chorus_messages_published_total") == 1
        assert delta(after, after2, "chorus_messages_delivered_total") == 3
        # unsubscribing and leaving lower the gauges
        r = await request(subs[0], {"op": "unsubscribe", "topic": "m.other"})
        assert r["op"] == "unsubscribed"
        for s in subs:
            await s.close()
        await pub.close()
        assert await eventually(
            lambda: metrics(b)["chorus_subscriptions"] == 0), metrics(b)
        assert await eventually(
            lambda: delta(before, metrics(b), "chorus_connections") == 0)
    run(main())


def test_replays_counted(make_broker):
    b = make_broker()

    async def main():
        ws = await connect(b)
        epoch = None
        for i in range(4):
            r = await request(ws, {"op": "publish", "topic": "rp",
                                   "data": i})
            assert r["op"] == "published"
        r = await request(ws, {"op": "subscribe", "topic": "rp"})
        epoch = r["epoch"]
        before = metrics(b)
        c = await connect(b)
        r = await request(c, {"op": "subscribe", "topic": "rp",
                              "since": {"epoch": epoch, "offset": 1}})
        assert r["op"] == "subscribed" and r["recovered"] is True, r
        got = [await recv_json(c) for _ in range(3)]
        assert [m["offset"] for m in got] == [2, 3, 4]
        after = metrics(b)
        assert delta(before, after, "chorus_replays_total") == 1
        if "chorus_replayed_messages_total" in after:
            assert delta(before, after,
                         "chorus_replayed_messages_total") == 3
        # replayed messages are deliveries too
        assert delta(before, after, "chorus_messages_delivered_total") == 3
    run(main())


def test_errors_by_code(make_broker):
    b = make_broker(auth_secret=SECRET)
    tok = make_jwt({"sub": "e", "exp": int(time.time()) + 600,
                    "subscribe": ["ok"], "publish": ["ok"]})
    before = metrics(b)

    async def main():
        ws = await connect(b, extra_headers={"Authorization":
                                             "Bearer " + tok})
        for _ in range(3):
            r = await request(ws, {"op": "subscribe", "topic": "no"})
            assert r["code"] == "forbidden"
        r = await request(ws, {"op": "publish", "topic": "no", "data": 1})
        assert r["code"] == "forbidden"
        r = await request(ws, {"op": "unsubscribe", "topic": "ok"})
        assert r["code"] == "not_subscribed"
        await ws.send("not json")
        assert (await recv_json(ws))["code"] == "bad_request"
        r = await request(ws, {"op": "nope"})
        assert r["code"] == "unknown_op"
        r = await request(ws, {"op": "subscribe", "topic": "bad topic"})
        assert r["code"] == "invalid_topic"
    run(main())
    # HTTP 403 counts as forbidden as well
    st, _, _ = http_request(b, "POST", "/api/publish/no", b"1",
                            {"Authorization": "Bearer " + tok})
    assert st == 403
    after = metrics(b)
    e = 'chorus_errors_total{code="%s"}'
    assert delta(before, after, e % "forbidden") == 5, after
    assert delta(before, after, e % "not_subscribed") == 1
    assert delta(before, after, e % "bad_request") == 1
    assert delta(before, after, e % "unknown_op") == 1
    assert delta(before, after, e % "invalid_topic") == 1
    assert delta(before, after, e % "internal") == 0


def test_rejections_by_cause(make_broker):
    b = make_broker(auth_secret=SECRET, allowed_origins="https://ok.example")
    before = metrics(b)

    async def refused(n, **kw):
        for _ in range(n):
            try:
                await connect(b, **kw)
            except websockets.InvalidStatusCode:
                continue
            raise AssertionError("connection was not refused")

    async def main():
        await refused(3)  # no token
        await refused(2, extra_headers={"Authorization": "Bearer x.y.z"})
        await refused(4, origin="https://evil.example")
    run(main())
    after = metrics(b)
    r = 'chorus_connections_rejected_total{cause="%s"}'
    assert delta(before, after, r % "auth") == 5, after
    assert delta(before, after, r % "origin") == 4, after
    assert delta(before, after, r % "max_connections") == 0
    assert after["chorus_connections_total"] - \
        before["chorus_connections_total"] >= 9


def test_token_expired_close_counted(make_broker):
    b = make_broker(auth_secret=SECRET)
    tok = make_jwt({"sub": "x", "exp": int(time.time()) + 2,
                    "subscribe": ["*"]})
    before = metrics(b)

    async def main():
        ws = await connect(b, extra_headers={"Authorization":
                                             "Bearer " + tok})
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed as e:
            assert e.code == 1008
    run(main())
    after = metrics(b)
    if "chorus_token_expired_closes_total" in after:
        assert delta(before, after, "chorus_token_expired_closes_total") == 1


def _raw_ws(port, rcvbuf):
    s = chorus_helpers.raw_upgrade_socket(port, "x", WAIT, rcvbuf=rcvbuf)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert buf.startswith(b"HTTP/1.1 101"), buf
    payload = dumps({"op": "subscribe", "topic": "flood"}).encode()
    mask = os.urandom(4)
    s.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask +
              bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))
    return s


def test_slow_consumer_close_counted(make_broker):
    b = make_broker(max_outbound_bytes="64k")
    before = metrics(b)
    slow = _raw_ws(b.port, 4096)
    time.sleep(0.2)

    async def main():
        pub = await connect(b)
        pad = "x" * 4000
        for round_ in range(30):
            for i in range(200):
                await pub.send(dumps({"op": "publish", "topic": "flood",
                                      "data": pad}))
            for i in range(200):
                await recv_json(pub, 20)
            if metrics(b)["chorus_slow_consumer_closes_total"] > \
                    before["chorus_slow_consumer_closes_total"]:
                return
        raise AssertionError("slow consumer never closed")
    run(main(), timeout=50)
    slow.close()
    after = metrics(b)
    assert delta(before, after, "chorus_slow_consumer_closes_total") == 1


def test_metrics_access_with_api_key(make_broker):
    b = make_broker(api_key=API_KEY, auth_secret=SECRET)
    tok = make_jwt({"sub": "m", "exp": int(time.time()) + 600,
                    "subscribe": ["*"], "publish": ["*"]})
    for hdrs in ({}, {"Authorization": "Bearer wrong"},
                 {"Authorization": "Bearer " + tok},
                 {"Authorization": "Bearer " + API_KEY + "x"},
                 {"Authorization": API_KEY}):
        st, _, body = http_request(b, "GET", "/metrics", headers=hdrs)
        assert st == 401, (hdrs, st, body)
        err = json.loads(body)
        assert err["error"] == "unauthorized", err
        assert API_KEY not in body.decode()
    st, _, body = http_request(b, "GET", "/metrics?token=" + API_KEY)
    assert st == 401, "the API key belongs in the header"
    m = metrics(b, {"Authorization": "Bearer " + API_KEY})
    assert "chorus_connections" in m


def test_metrics_open_without_api_key(make_broker):
    # auth on through auth_secret only: /metrics stays open
    b = make_broker(auth_secret=SECRET)
    assert "chorus_connections" in metrics(b)
    b2 = make_broker()
    assert "chorus_connections" in metrics(b2)
    st, _, _ = http_request(b2, "POST", "/metrics", b"")
    assert st == 405
