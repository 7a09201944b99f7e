"""Server-Sent Events (issue 15, "Endpoint"): GET /sse/{topic} with curl -N
and a Python client (sse_helpers.SSE): the head, live events, resume by
Last-Event-ID or ?since= (after a kill -9 and restart too) with every
offset exactly once, `event: gap` when history was trimmed, data with
line breaks, auth (Bearer, ?token= never logged, 401, 403, Origin),
malformed positions (400), the slow consumer ended and resuming, the
`: ping` comments and `ping` events, the TLS listener and the connection limits."""
import json
import signal
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import free_port, http_request
from chorus_helpers import WAIT, RawWS, make_jwt, metrics_values, \
    publish_frames
from sse_helpers import SSE, messages_upto
from test_tls import make_cert

SECRET = "s" * 32


def publish(b, topic, data, headers=None):
    status, _, body = http_request(
        b, "POST", "/api/publish/" + urllib.parse.quote(topic, safe=""),
        json.dumps(data).encode(),
        dict({"Content-Type": "application/json"}, **(headers or {})))
    assert status == 200, body
    return json.loads(body)


def subscribed(stream):
    """Reads the first event, which must be `subscribed`."""
    ev = stream.next_event()
    assert ev is not None and ev.event == "subscribed", ev
    return ev


def check_offsets(events, first, last):
    got = [e.json()["offset"] for e in events if e.event == "message"]
    assert got == list(range(first, last + 1)), got


def wait_trimmed(b, topic, oldest, timeout=10):
    """Until the history of topic starts at oldest (the trim runs on a
    one-second timer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, _, body = http_request(b, "GET", f"/api/history/{topic}?since=0")
        msgs = json.loads(body)["messages"]
        if msgs and msgs[0]["offset"] == oldest:
            return
        time.sleep(0.1)
    raise AssertionError(f"history of {topic} never trimmed to {oldest}")


def wait_subscriptions(b, n, timeout=WAIT):
    """Until the broker counts n subscriptions (a stream's is made after
    its head is sent)."""
    deadline = time.monotonic() + timeout
    while metrics_values(b).get("chorus_subscriptions", 0) < n:
        assert time.monotonic() < deadline, "no subscription"
        time.sleep(0.02)


def wait_metric(b, name, value, timeout=WAIT):
    """Until /metrics shows name == value; fails with what it shows."""
    deadline = time.monotonic() + timeout
    while True:
        got = metrics_values(b).get(name)
        if got == value:
            return
        assert time.monotonic() < deadline, f"{name} is {got}, not {value}"
        time.sleep(0.02)


def curl_sse(b, path, seconds, *args):
    """curl -N for `seconds`; returns (head, body) as text."""
    r = subprocess.run(["curl", "-sN", "-i", "--max-time", str(seconds),
                        *args, b.http + path], capture_output=True,
                       timeout=seconds + 10)
    text = r.stdout.decode()
    head, _, body = text.partition("\r\n\r\n")
    return head, body


# --- the stream ------------------------------------------------------------

def test_live_events_with_curl(broker):
    first = publish(broker, "news", {"n": 0})
    epoch = first["epoch"]
    out = {}
    t = threading.Thread(target=lambda: out.update(
        zip(("head", "body"), curl_sse(broker, "/sse/news", 4))))
    t.start()
    wait_subscriptions(broker, 1)
    for i in range(1, 4):
        publish(broker, "news", {"n": i, "text": "hi"})
    t.join()
    head = out["head"].lower()
    assert head.startswith("http/1.1 200"), out
    assert "content-type: text/event-stream" in head
    assert "cache-control: no-cache" in head
    assert "x-accel-buffering: no" in head
    blocks = out["body"].split("\n\n")
    assert blocks[0].startswith("retry: "), blocks
    assert 1000 <= int(blocks[0][7:]) < 2000
    assert blocks[1] == (
        f"id: {epoch}:1\nevent: subscribed\ndata: "
        f'{{"topic":"news","epoch":"{epoch}","offset":1,"recovered":true,'
        f'"ping_interval_ms":30000}}'
    ), blocks
    for i, block in enumerate(blocks[2:5], start=2):
        lines = block.split("\n")
        assert lines[0] == f"id: {epoch}:{i}"
        assert lines[1] == "event: message"
        assert lines[2].startswith("data: ") and len(lines) == 3, block
        msg = json.loads(lines[2][6:])
        assert set(msg) == {"topic", "offset", "ts", "data"}, msg
        assert msg["topic"] == "news" and msg["offset"] == i
        assert msg["data"] == {"n": i - 1, "text": "hi"}
    assert blocks[5:] == [""], blocks


def test_live_events_python_and_percent_encoded_topic(broker):
    s = SSE(broker.port, "room/a@b")
    try:
        assert s.status == 200
        assert s.headers["content-type"] == "text/event-stream"
        sub = subscribed(s).json()
        assert sub["topic"] == "room/a@b" and sub["offset"] == 0
        for i in range(5):
            publish(broker, "room/a@b", {"i": i})
        evs = messages_upto(s, 5)
        check_offsets(evs, 1, 5)
        assert [e.json()["data"]["i"] for e in evs] == list(range(5))
        assert all(e.id == f"{sub['epoch']}:{e.json()['offset']}"
                   for e in evs)
    finally:
        s.close()


def test_multi_line_data_is_one_event(broker):
    text = "line one\nline two\r\nline three\rend"
    s = SSE(broker.port, "ml")
    try:
        subscribed(s)
        publish(broker, "ml", {"text": text, "list": ["a\n", "\n\nb"]})
        ev = s.next_event()
        assert ev.event == "message", ev
        assert ev.json()["data"] == {"text": text, "list": ["a\n", "\n\nb"]}
        publish(broker, "ml", "after")
        assert s.next_event().json()["data"] == "after"
    finally:
        s.close()


# --- resume ------------------------------------------------------------------

def test_resume_by_last_event_id_and_since(broker):
    for i in range(1, 11):
        epoch = publish(broker, "r", i)["epoch"]
    # the header wins over ?since=: EventSource reconnects to the same URL
    for headers, query, start in (
            ({"Last-Event-ID": f"{epoch}:4"}, "", 4),
            ({}, f"since={epoch}:7", 7),
            ({"Last-Event-ID": f"{epoch}:4"}, f"since={epoch}:1", 4)):
        s = SSE(broker.port, "r", query=query, headers=headers)
        try:
            sub = subscribed(s)
            assert sub.id == f"{epoch}:{start}"
            assert sub.json() == {"topic": "r", "epoch": epoch,
                                  "offset": 10, "recovered": True,
                                  "ping_interval_ms": 30000}
            check_offsets(messages_upto(s, 10), start + 1, 10)
        finally:
            s.close()
    # curl -N resuming, then live
    out = {}
    t = threading.Thread(target=lambda: out.update(zip(
        ("head", "body"),
        curl_sse(broker, "/sse/r", 3, "-H", f"Last-Event-ID: {epoch}:8"))))
    t.start()
    wait_subscriptions(broker, 1)
    publish(broker, "r", 11)
    t.join()
    assert out["head"].startswith("HTTP/1.1 200"), out
    ids = [line[4:] for line in out["body"].split("\n")
           if line.startswith("id: ")]
    assert ids == [f"{epoch}:{n}" for n in (8, 9, 10, 11)], ids


def test_position_edges_are_taken(broker):
    """Leading zeros and the largest offset (2**64 - 1) are positions; one
    past the newest offset is not recoverable, so it gets `gap` (the
    400s of malformed ones are in test_bad_position_is_400_with_json)."""
    for i in range(1, 4):
        epoch = publish(broker, "edge", i)["epoch"]
    for headers, query, recovered, cursor in (
            ({"Last-Event-ID": f"{epoch}:0002"}, "", True, 2),
            ({}, f"since={epoch}:000", True, 0),
            ({"Last-Event-ID": f"{epoch}:{2**64 - 1}"}, "", False, 0),
            ({}, f"since={epoch}:{2**64 - 1}", False, 0)):
        s = SSE(broker.port, "edge", query=query, headers=headers)
        try:
            assert s.status == 200, (headers, query, s.read_body())
            sub = subscribed(s)
            assert sub.json()["recovered"] is recovered, (headers, query)
            assert sub.id == f"{epoch}:{cursor}", sub
            if not recovered:
                assert s.next_event().event == "gap"
            check_offsets(messages_upto(s, 3), cursor + 1, 3)
        finally:
            s.close()


def test_resume_after_kill9_every_offset_once(make_broker):
    b = make_broker(history_size=100000)
    epoch = None
    for i in range(1, 31):
        epoch = publish(b, "k", {"i": i})["epoch"]
    got = []
    s = SSE(b.port, "k", query=f"since={epoch}:0")
    stop = threading.Event()

    def publisher():  # publishes go on across the kill and the restart
        for _ in range(3000):
            if stop.is_set():
                return
            try:
                publish(b, "k", {"x": 1})
            except (OSError, AssertionError):
                time.sleep(0.02)
            time.sleep(0.002)

    t = threading.Thread(target=publisher)
    t.start()
    try:
        sub = subscribed(s)
        assert sub.json()["recovered"] is True
        got += messages_upto(s, 60, timeout=20)
        b.kill9()
        while True:  # what was already on the wire still arrives
            ev = s.next_event()
            if ev is None:
                break
            got.append(ev)
        last = s.last_id
        s.close()
        assert last == f"{epoch}:{got[-1].json()['offset']}"
        b.start()
        time.sleep(0.3)  # publishes go on meanwhile
        s = SSE(b.port, "k", query=f"since={epoch}:0",
                headers={"Last-Event-ID": last})
        sub = subscribed(s)
        assert sub.json()["recovered"] is True, sub
        assert sub.json()["epoch"] == epoch
        stop.set()
        t.join()
        newest = publish(b, "k", "end")["offset"]
        got += messages_upto(s, newest, timeout=20)
    finally:
        stop.set()
        t.join()
        s.close()
    check_offsets(got, 1, newest)


def test_gap_when_history_was_trimmed(make_broker):
    b = make_broker(history_size=5)
    for i in range(1, 21):
        epoch = publish(b, "g", i)["epoch"]
    wait_trimmed(b, "g", 16)
    s = SSE(b.port, "g", headers={"Last-Event-ID": f"{epoch}:3"})
    try:
        sub = subscribed(s)
        assert sub.json() == {"topic": "g", "epoch": epoch, "offset": 20,
                              "recovered": False, "ping_interval_ms": 30000}
        gap = s.next_event()
        assert gap.event == "gap", gap
        assert gap.json() == {"epoch": epoch, "offset": 20}
        check_offsets(messages_upto(s, 20), 16, 20)
    finally:
        s.close()
    # a foreign epoch: the same, with everything retained
    s = SSE(b.port, "g", query="since=" + "0" * 32 + ":19")
    try:
        sub = subscribed(s)
        assert sub.json()["recovered"] is False
        assert sub.id == f"{epoch}:0"
        assert s.next_event().json() == {"epoch": epoch, "offset": 20}
        check_offsets(messages_upto(s, 20), 16, 20)
    finally:
        s.close()
    # an offset beyond the newest is treated like a foreign epoch
    s = SSE(b.port, "g", query=f"since={epoch}:99")
    try:
        assert subscribed(s).json()["recovered"] is False
        assert s.next_event().event == "gap"
    finally:
        s.close()


def test_longest_topic_with_gap(broker):
    topic = "t" * 200
    epoch = publish(broker, topic, 1)["epoch"]
    s = SSE(broker.port, topic, query="since=" + "f" * 32 + ":5")
    try:
        sub = subscribed(s)
        assert sub.json() == {"topic": topic, "epoch": epoch, "offset": 1,
                              "recovered": False, "ping_interval_ms": 30000}
        assert s.next_event().json() == {"epoch": epoch, "offset": 1}
        check_offsets(messages_upto(s, 1), 1, 1)
    finally:
        s.close()


def test_history_off(make_broker):
    # threads = 1: with history off a topic's state lives in its loop, as
    # long as something there subscribes to it
    b = make_broker(history="off", threads=1)
    live = SSE(b.port, "mem")
    s = up = None
    try:
        epoch = subscribed(live).json()["epoch"]
        for i in range(3):
            publish(b, "mem", i)
        check_offsets(messages_upto(live, 3), 1, 3)
        # nothing is stored: only an up-to-date position recovers
        s = SSE(b.port, "mem", headers={"Last-Event-ID": f"{epoch}:1"})
        up = SSE(b.port, "mem", headers={"Last-Event-ID": f"{epoch}:3"})
        sub = subscribed(s)
        assert sub.json()["recovered"] is False and sub.id == f"{epoch}:3"
        assert s.next_event().json() == {"epoch": epoch, "offset": 3}
        assert subscribed(up).json()["recovered"] is True
        publish(b, "mem", 3)
        assert [e.next_event().json()["offset"]
                for e in (live, s, up)] == [4, 4, 4]
    finally:
        for x in (live, s, up):
            if x:
                x.close()


@pytest.mark.parametrize("where,value", [
    ("header", "nonsense"),
    ("header", "0123456789abcdef0123456789abcdef"),
    ("header", "0123456789abcdef0123456789abcdef:"),
    ("header", "0123456789ABCDEF0123456789ABCDEF:1"),
    ("header", "0123456789abcdef0123456789abcdef:-1"),
    ("header", "0123456789abcdef0123456789abcdef:1x"),
    ("header", "0123456789abcdef0123456789abcdef:99999999999999999999999"),
    ("query", "12"),
    ("query", "abc:1"),
    ("query", "0123456789abcdef0123456789abcdef:+1"),
    ("query", ""),
])
def test_bad_position_is_400_with_json(broker, where, value):
    if where == "header":
        s = SSE(broker.port, "t", headers={"Last-Event-ID": value})
    else:
        s = SSE(broker.port, "t",
                query="since=" + urllib.parse.quote(value))
    try:
        assert s.status == 400, s.status
        assert s.headers["content-type"] == "application/json"
        body = json.loads(s.read_body())
        assert body["error"] == "bad_request"
        assert ("Last-Event-ID" if where == "header" else "since") in \
            body["message"]
    finally:
        s.close()


def test_bad_topic_and_method(broker):
    for topic in ("a%20b", "x" * 201, "%zz", "a%00"):
        status, headers, body = http_request(broker, "GET", "/sse/" + topic)
        assert status == 400, (topic, status)
        assert json.loads(body)["error"] == "invalid_topic"
    status, headers, body = http_request(broker, "GET", "/sse/")
    assert status == 400
    status, headers, _ = http_request(broker, "POST", "/sse/t", b"{}")
    assert status == 405 and headers["Allow"] == "GET, OPTIONS"


# --- auth ------------------------------------------------------------------

API_KEY = "k" * 32


def token(subscribe=("*",), ttl=3600):
    return make_jwt({"sub": "alice", "exp": int(time.time()) + ttl,
                     "subscribe": list(subscribe), "publish": []}, SECRET)


def refused(stream, status, code):
    try:
        assert stream.status == status, stream.status
        assert stream.headers["content-type"] == "application/json"
        body = json.loads(stream.read_body())
        assert body["error"] == code, body
        return body["message"]
    finally:
        stream.close()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_auth_token_in_query_never_logged(make_broker, log_format):
    b = make_broker(auth_secret=SECRET, api_key=API_KEY,
                    log_format=log_format, log_level="debug")
    key = {"Authorization": "Bearer " + API_KEY}
    tok = token(subscribe=("chat.*",))
    s = SSE(b.port, "chat.1", query="token=" + tok)
    try:
        assert s.status == 200
        subscribed(s)
        publish(b, "chat.1", {"hi": 1}, key)
        assert s.next_event().json()["data"] == {"hi": 1}
    finally:
        s.close()
    s = SSE(b.port, "chat.2", headers={"Authorization": "Bearer " + tok})
    try:
        assert s.status == 200
        subscribed(s)
    finally:
        s.close()
    # refusals of query tokens are logged too, without the token
    bad = token(subscribe=("chat.*",), ttl=-10)
    assert "expired" in refused(SSE(b.port, "chat.1", query="token=" + bad),
                                401, "unauthorized")
    refused(SSE(b.port, "chat.1", query="token=" + tok[:-3] + "AAA"), 401,
            "unauthorized")
    log = b.read_log()
    assert "/sse" in log  # the streams were logged ...
    for t in (tok, bad, tok.split(".")[2], bad.split(".")[2]):
        assert t not in log  # ... never their tokens
    assert "token=" not in log


def test_auth_refusals_401_403(make_broker):
    b = make_broker(auth_secret=SECRET, api_key=API_KEY,
                    allowed_origins="https://app.example")
    assert "token" in refused(SSE(b.port, "t"), 401, "unauthorized")
    refused(SSE(b.port, "t", headers={"Authorization": "Bearer nope"}), 401,
            "unauthorized")
    msg = refused(SSE(b.port, "secret.x",
                      query="token=" + token(subscribe=("public.*",))),
                  403, "forbidden")
    assert "subscribe permission" in msg
    tok = token()
    assert "origin" in refused(
        SSE(b.port, "t", query="token=" + tok,
            headers={"Origin": "https://evil.example"}), 403, "forbidden")
    s = SSE(b.port, "t", query="token=" + tok,
            headers={"Origin": "https://app.example"})
    try:
        assert s.status == 200
        assert s.headers["access-control-allow-origin"] == \
            "https://app.example"
        subscribed(s)
    finally:
        s.close()
    # the API key may subscribe too
    s = SSE(b.port, "t", headers={"Authorization": "Bearer " + API_KEY})
    try:
        assert s.status == 200
    finally:
        s.close()


def test_cors_on_every_answer_for_an_admitted_origin(make_broker):
    """A page on another origin reads why its stream was refused (the
    401 or 403 body) only with CORS on that answer too; a refused Origin
    gets no CORS header at all."""
    app = "https://app.example"
    b = make_broker(auth_secret=SECRET, allowed_origins=app)
    origin = {"Origin": app}

    def cors(stream):
        assert stream.headers["access-control-allow-origin"] == app
        assert stream.headers["vary"] == "Origin"

    s = SSE(b.port, "t", headers=origin)
    cors(s)
    refused(s, 401, "unauthorized")
    s = SSE(b.port, "secret.x", headers=origin,
            query="token=" + token(subscribe=("public.*",)))
    cors(s)
    refused(s, 403, "forbidden")
    s = SSE(b.port, "t", headers=dict(origin, **{"Last-Event-ID": "x"}),
            query="token=" + token())
    cors(s)
    refused(s, 400, "bad_request")
    for bad in ("https://evil.example", "null"):
        s = SSE(b.port, "t", headers={"Origin": bad},
                query="token=" + token())
        assert not [k for k in s.headers if k.startswith("access-control")]
        refused(s, 403, "forbidden")


def test_token_expiry_ends_the_stream(make_broker):
    b = make_broker(auth_secret=SECRET)
    s = SSE(b.port, "t", query="token=" + token(ttl=2))
    try:
        subscribed(s)
        ev = s.next_event(timeout=10)
        assert ev.event == "close", ev
        assert ev.json() == {"code": 1008, "reason": "token expired"}
        assert s.next_event() is None
    finally:
        s.close()


# --- metrics ---------------------------------------------------------------

def test_stream_metrics(make_broker):
    """chorus_sse_streams counts open streams over every event loop, and
    goes back down as their clients leave; chorus_sse_streams_total counts
    streams opened. Refused requests and /ws subscribers are no streams."""
    b = make_broker(threads=2)
    assert metrics_values(b)["chorus_sse_streams"] == 0
    assert metrics_values(b)["chorus_sse_streams_total"] == 0
    streams = [SSE(b.port, f"gauge.{i}") for i in range(3)]
    ws = RawWS(b.port)
    try:
        for s in streams:
            subscribed(s)
        ws.send_json({"op": "subscribe", "topic": "gauge.0"})
        assert ws.recv_json()["op"] == "subscribed"
        bad = SSE(b.port, "gauge.0", headers={"Last-Event-ID": "nonsense"})
        assert bad.status == 400
        bad.close()
        m = metrics_values(b)
        assert m["chorus_sse_streams"] == 3, m
        assert m["chorus_sse_streams_total"] == 3, m
        assert m["chorus_subscriptions"] == 4, m
        streams.pop().close()
        wait_metric(b, "chorus_sse_streams", 2)
        streams.append(SSE(b.port, "gauge.again"))
        subscribed(streams[-1])
        m = metrics_values(b)
        assert m["chorus_sse_streams"] == 3, m
        assert m["chorus_sse_streams_total"] == 4, m
    finally:
        for s in streams:
            s.close()
        ws.close()
    wait_metric(b, "chorus_sse_streams", 0)
    wait_metric(b, "chorus_subscriptions", 0)
    assert metrics_values(b)["chorus_sse_streams_total"] == 4


# --- limits, pings, shutdown -----------------------------------------------

def test_slow_consumer_ended_then_resumes(make_broker):
    """Also: the ended stream is counted once, as a slow-consumer close,
    and leaves the open-streams gauge."""
    b = make_broker(max_outbound_bytes="64k", threads=1)
    pub = RawWS(b.port)
    s = SSE(b.port, "slow", rcvbuf=4096)
    total = 0
    try:
        epoch = subscribed(s).json()["epoch"]
        pad = "x" * 2000
        for _ in range(40):
            pub.sock.sendall(publish_frames("slow", range(total + 1,
                                                          total + 501), pad))
            for _ in range(500):
                assert pub.recv_json()["op"] == "published"
            total += 500
            if "slow consumer" in b.read_log():
                break
        else:
            raise AssertionError("the stream was never ended")
        got = []
        while True:
            ev = s.next_event(timeout=10)
            if ev is None:
                break
            got.append(ev)
        assert got[-1].event == "close", got[-3:]
        assert got[-1].json() == {"code": 1013, "reason": "slow consumer"}
        msgs = [e for e in got if e.event == "message"]
        check_offsets(msgs, 1, msgs[-1].json()["offset"])
        assert s.last_id == f"{epoch}:{msgs[-1].json()['offset']}"
        assert msgs[-1].json()["offset"] < total
        last = s.last_id
        s.close()
        s = SSE(b.port, "slow", headers={"Last-Event-ID": last})
        assert subscribed(s).json()["recovered"] is True
        check_offsets(messages_upto(s, total, timeout=30),
                      msgs[-1].json()["offset"] + 1, total)
    finally:
        pub.close()
        s.close()
    wait_metric(b, "chorus_sse_streams", 0)
    m = metrics_values(b)
    assert m["chorus_slow_consumer_closes_total"] == 1, m
    assert m["chorus_sse_streams_total"] == 2, m


def test_ping_comments_and_events(make_broker):
    """Each ping is the `: ping` comment (for proxies) and an `event: ping`
    (for the page, which cannot see comments), without an id, so that
    Last-Event-ID stays the last message's; `subscribed` names the
    interval the page can expect them at."""
    b = make_broker(ping_interval="200ms")
    publish(b, "quiet", 0)
    s = SSE(b.port, "quiet")
    try:
        sub = subscribed(s)
        assert sub.json()["ping_interval_ms"] == 200
        before = time.time() * 1000
        pings = [s.next_event(timeout=1) for _ in range(4)]
        assert [p.event for p in pings] == ["ping"] * 4, pings
        for p in pings:
            assert p.id == sub.id, p  # no id field: Last-Event-ID stays
            ts = p.json()["ts"]
            assert before - 1000 <= ts <= time.time() * 1000 + 1000, p
        assert [p.json()["ts"] for p in pings] == sorted(
            p.json()["ts"] for p in pings)
        assert s.comments.count("ping") >= 4, s.comments
        assert s.comments == ["ping"] * len(s.comments)
        publish(b, "quiet", 1)
        ev = s.next_event()
        while ev.event == "ping":
            ev = s.next_event()
        assert ev.json()["offset"] == 2  # still open
    finally:
        s.close()


def test_no_ping_events_when_ping_interval_is_off(make_broker):
    b = make_broker(ping_interval="0")
    s = SSE(b.port, "quiet")
    try:
        assert subscribed(s).json()["ping_interval_ms"] == 0
        with pytest.raises(TimeoutError):
            s.next_event(timeout=1)
        assert s.comments == []
    finally:
        s.close()


def test_shutdown_ends_streams_with_close_event(make_broker):
    b = make_broker()
    s = SSE(b.port, "t")
    try:
        subscribed(s)
        b.proc.send_signal(signal.SIGTERM)
        ev = s.next_event(timeout=10)
        assert ev.event == "close" and ev.json()["code"] == 1001, ev
        assert s.next_event() is None
    finally:
        s.close()
    assert b.proc.wait(10) == 0


def sse_when_slot_free(b, topic):
    """An admitted stream, trying again while refused with 503 (within
    WAIT): the broker frees the slots of earlier requests (readiness
    probes, publishes) when it reads their close, which can come late."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            s = SSE(b.port, topic)
        except OSError:  # refused while the request was being sent
            status = 503
        else:
            if s.status == 200:
                return s
            s.close()
            status = s.status
        assert status == 503 and time.monotonic() < deadline, status
        time.sleep(0.02)


def test_max_connections_and_per_ip(make_broker):
    for conf in ({"max_connections": 2}, {"max_connections_per_ip": 2}):
        b = make_broker(**conf)
        streams = [sse_when_slot_free(b, "t") for _ in range(2)]
        try:
            for s in streams:
                subscribed(s)
            extra = SSE(b.port, "t")
            try:
                assert extra.status == 503, extra.status
            finally:
                extra.close()
            streams[0].close()  # once one leaves, a new one gets in
            streams[0] = sse_when_slot_free(b, "t")
            subscribed(streams[0])
            streams[0].close()
            deadline = time.monotonic() + WAIT
            while True:  # the publish needs the slot that was freed
                try:
                    status, _, body = http_request(b, "POST",
                                                   "/api/publish/t", b"1")
                except OSError:  # refused before the body was sent
                    status = 503
                if status == 200:
                    break
                assert status == 503 and time.monotonic() < deadline
                time.sleep(0.02)
            assert streams[1].next_event().json()["offset"] == \
                json.loads(body)["offset"]
        finally:
            for s in streams:
                s.close()
        b.stop()


def test_tls_listener(make_broker, workdir):
    cert, key = make_cert(workdir, "server")
    port = free_port()
    b = make_broker(tls_listen=f"127.0.0.1:{port}", tls_cert=cert,
                    tls_key=key)
    s = SSE(port, "secure", tls_ca=cert)
    try:
        assert s.status == 200
        assert s.headers["content-type"] == "text/event-stream"
        epoch = subscribed(s).json()["epoch"]
        for i in range(3):
            publish(b, "secure", i)
        check_offsets(messages_upto(s, 3), 1, 3)
    finally:
        s.close()
    s = SSE(port, "secure", tls_ca=cert,
            headers={"Last-Event-ID": f"{epoch}:1"})
    try:
        assert subscribed(s).json()["recovered"] is True
        check_offsets(messages_upto(s, 3), 2, 3)
    finally:
        s.close()
