"""HTTP API (PROTOCOL.md, "HTTP API"): POST /api/publish/{topic} and
GET /api/history/{topic}: replies, delivery to WebSocket subscribers,
bad bodies, size limit, body framing, percent-encoded and invalid topics,
since/limit paging, wrong methods, keep-alive and pipelining; CORS for
pages on other origins (preflight, refused origins) and anonymous clients
as /ws takes them (anonymous_publish, publish_rate per address)."""
import asyncio
import http.client
import json
import re
import socket
import time

import pytest
import websockets

from conftest import dumps, http_request
from chorus_helpers import make_jwt

WAIT = 5.0
EPOCH_RE = re.compile(r"^[0-9a-f]{32}$")
JSON_HDR = {"Content-Type": "application/json"}


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def post(broker, topic_path, body, headers=JSON_HDR):
    if isinstance(body, str):
        body = body.encode()
    return http_request(broker, "POST", f"/api/publish/{topic_path}", body,
                        dict(headers))


def post_ok(broker, topic_path, obj):
    st, hdrs, body = post(broker, topic_path, dumps(obj))
    assert st == 200, (st, body)
    assert hdrs.get("Content-Type", "").startswith("application/json"), hdrs
    return json.loads(body)


def history(broker, topic_path, query=""):
    st, hdrs, body = http_request(broker, "GET",
                                  f"/api/history/{topic_path}{query}")
    return st, body


def history_ok(broker, topic_path, query=""):
    st, body = history(broker, topic_path, query)
    assert st == 200, (st, body)
    return json.loads(body)


def assert_error(st, hdrs, body, status, code=None):
    if isinstance(status, int):
        status = (status,)
    assert st in status, (st, body)
    assert hdrs.get("Content-Type", "").startswith("application/json"), \
        (hdrs, body)
    err = json.loads(body)
    assert isinstance(err, dict) and isinstance(err.get("error"), str), err
    if code:
        assert err["error"] == code, err
    return err


class RawHTTP:
    """A plain socket that sends bytes and reads HTTP/1.1 responses framed
    by Content-Length, one at a time."""

    def __init__(self, broker, timeout=WAIT):
        self.sock = socket.create_connection(("127.0.0.1", broker.port),
                                             timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"^HTTP/1\.1 (\d{3}) ", lines[0])
        assert m, lines[0]
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return int(m.group(1)), hdrs, body

    def closed_soon(self, timeout=2.0):
        """True when the broker closes the connection (after any
        remaining response bytes)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def post_request(path, body, extra=""):
    if isinstance(body, str):
        body = body.encode()
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


# ---------------------------------------------------------------- publish

def test_publish_reply_and_delivery_to_ws(broker):
    values = [{"text": "hi", "n": [1, 2]}, [1, "two", None], "str", 42,
              -1.5, None, True, False, {}, "snow \u2603 \U0001F600"]

    async def main():
        ws = await asyncio.wait_for(websockets.connect(broker.url), WAIT)
        try:
            await ws.send(dumps({"op": "subscribe", "topic": "ha.pub"}))
            s = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert s["op"] == "subscribed" and s["offset"] == 0, s
            for i, v in enumerate(values, 1):
                r = await asyncio.to_thread(post_ok, broker, "ha.pub", v)
                assert set(r) >= {"topic", "epoch", "offset"}, r
                assert r["topic"] == "ha.pub" and r["offset"] == i, r
                assert r["epoch"] == s["epoch"], (r, s)
                assert EPOCH_RE.match(r["epoch"]), r
                m = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                assert m["op"] == "message" and m["topic"] == "ha.pub", m
                assert m["offset"] == i and m["data"] == v, (m, v)
                assert isinstance(m["ts"], int)
        finally:
            await ws.close()
    run(main())


def test_publish_body_with_whitespace_is_json(broker):
    st, _, body = post(broker, "ha.ws", ' \r\n {"a" : [ 1 , 2 ] } \n')
    assert st == 200, body
    h = history_ok(broker, "ha.ws")
    assert [m["data"] for m in h["messages"]] == [{"a": [1, 2]}]


@pytest.mark.parametrize("body", [b"", b"{", b"abc", b"{} x", b"[1,]",
                                  b"{'a': 1}", b"\"\xff\"", b"NaN",
                                  b"{\"a\":1}{\"b\":2}", b"\"unterminated"])
def test_publish_not_json_400(broker, body):
    st, hdrs, resp = post(broker, "ha.bad", body)
    assert_error(st, hdrs, resp, 400, "bad_request")
    h = history_ok(broker, "ha.bad")
    assert h["messages"] == [] and h["offset"] == 0, h


def test_publish_too_large_413(make_broker):
    broker = make_broker(max_message_size="1k")
    ok = dumps("x" * 1022)          # exactly 1024 bytes
    assert len(ok) == 1024
    st, _, body = post(broker, "ha.big", ok)
    assert st == 200, body
    over = dumps("x" * 1023)        # 1025 bytes
    st, hdrs, body = post(broker, "ha.big", over)
    assert_error(st, hdrs, body, 413)
    st, hdrs, body = post(broker, "ha.big", dumps("y" * 100_000))
    assert_error(st, hdrs, body, 413)
    h = history_ok(broker, "ha.big")
    assert [m["offset"] for m in h["messages"]] == [1]
    assert h["offset"] == 1


def test_publish_without_content_length_or_chunked(broker):
    # A body without Content-Length.
    c = RawHTTP(broker)
    try:
        c.send(b"POST /api/publish/ha.frame HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/json\r\n\r\n{\"a\":1}")
        st, hdrs, body = c.response()
        assert st in (400, 411), (st, body)
    finally:
        c.close()
    # Transfer-Encoding: chunked.
    c = RawHTTP(broker)
    try:
        c.send(b"POST /api/publish/ha.frame HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               b"7\r\n{\"a\":1}\r\n0\r\n\r\n")
        st, hdrs, body = c.response()
        assert st in (400, 411), (st, body)
        # The body cannot be framed: the broker must not try to read the
        # chunk bytes as a next request.
        assert c.closed_soon(), "connection left open after chunked body"
    finally:
        c.close()
    # Content-Length and chunked together, and a malformed length.
    for extra in (b"Content-Length: 7\r\nTransfer-Encoding: chunked\r\n",
                  b"Content-Length: 7\r\nContent-Length: 8\r\n",
                  b"Content-Length: -7\r\n",
                  b"Content-Length: 7x\r\n"):
        c = RawHTTP(broker)
        try:
            c.send(b"POST /api/publish/ha.frame HTTP/1.1\r\nHost: x\r\n" +
                   extra + b"\r\n{\"a\":1}")
            st, hdrs, body = c.response()
            assert st in (400, 411), (extra, st, body)
        finally:
            c.close()
    h = history_ok(broker, "ha.frame")
    assert h["messages"] == [] and h["offset"] == 0, h


def test_percent_encoded_topic(broker):
    async def main():
        ws = await asyncio.wait_for(websockets.connect(broker.url), WAIT)
        try:
            await ws.send(dumps({"op": "subscribe", "topic": "a/b"}))
            s = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert s["op"] == "subscribed", s
            r = await asyncio.to_thread(post_ok, broker, "a%2Fb", {"k": 1})
            assert r["topic"] == "a/b" and r["offset"] == 1, r
            r = await asyncio.to_thread(post_ok, broker, "a%2fb", {"k": 2})
            assert r["topic"] == "a/b" and r["offset"] == 2, r
            for k in (1, 2):
                m = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                assert m["topic"] == "a/b" and m["data"] == {"k": k}, m
        finally:
            await ws.close()
    run(main())
    h = history_ok(broker, "a%2Fb")
    assert h["topic"] == "a/b" and h["offset"] == 2
    assert [m["data"] for m in h["messages"]] == [{"k": 1}, {"k": 2}]
    # Other allowed characters, some encoded needlessly.
    r = post_ok(broker, "x%3Ay%40z.w_v-u", 1)
    assert r["topic"] == "x:y@z.w_v-u", r
    r = post_ok(broker, "%41bc", 1)
    assert r["topic"] == "Abc", r


@pytest.mark.parametrize("path", ["bad%20topic", "a%2", "a%ZZb", "a%00b",
                                  "caf%C3%A9", "a%2Bb", "a+b", "a*b",
                                  "t" * 201, "%2F" * 201, "a%22b"])
def test_invalid_topic_400(broker, path):
    st, hdrs, body = post(broker, path, "1")
    assert_error(st, hdrs, body, 400, "invalid_topic")
    st, body = history(broker, path)
    assert st == 400, (st, body)
    assert json.loads(body)["error"] == "invalid_topic"


def test_longest_topic_ok_and_empty_topic_refused(broker):
    r = post_ok(broker, "t" * 200, 1)
    assert r["topic"] == "t" * 200
    st, hdrs, body = post(broker, "", "1")
    assert st in (400, 404), (st, body)


# ---------------------------------------------------------------- history

def test_history_since_limit(make_broker):
    broker = make_broker(history_size=5000)
    topic = "ha.hist"
    c = http.client.HTTPConnection("127.0.0.1", broker.port, timeout=WAIT)
    try:
        for i in range(1, 1201):
            c.request("POST", f"/api/publish/{topic}", dumps({"i": i}),
                      JSON_HDR)
            r = c.getresponse()
            body = r.read()
            assert r.status == 200, body
            assert json.loads(body)["offset"] == i
    finally:
        c.close()

    h = history_ok(broker, topic, "?since=3&limit=4")
    assert set(h) >= {"topic", "epoch", "offset", "messages"}, h
    assert h["topic"] == topic and h["offset"] == 1200
    assert EPOCH_RE.match(h["epoch"])
    assert [m["offset"] for m in h["messages"]] == [4, 5, 6, 7]
    for m in h["messages"]:
        assert set(m) >= {"offset", "ts", "data"}, m
        assert m["data"] == {"i": m["offset"]}
        assert isinstance(m["ts"], int) and m["ts"] > 1_600_000_000_000

    # limit defaults to 100; since defaults to 0.
    h = history_ok(broker, topic, "?since=0")
    assert [m["offset"] for m in h["messages"]] == list(range(1, 101))
    h = history_ok(broker, topic)
    assert [m["offset"] for m in h["messages"]] == list(range(1, 101))
    h = history_ok(broker, topic, "?limit=3")
    assert [m["offset"] for m in h["messages"]] == [1, 2, 3]
    h = history_ok(broker, topic, "?since=1150")
    assert [m["offset"] for m in h["messages"]] == list(range(1151, 1201))
    # Capped: at most 1000, still the first ones after since.
    h = history_ok(broker, topic, "?since=0&limit=5000")
    offs = [m["offset"] for m in h["messages"]]
    assert 0 < len(offs) <= 1000
    assert offs == list(range(1, len(offs) + 1))
    # since at and past the newest.
    for q in ("?since=1200", "?since=1201&limit=10", "?since=999999999"):
        h = history_ok(broker, topic, q)
        assert h["messages"] == [] and h["offset"] == 1200, (q, h)
    # Paging through everything with since/limit.
    since, seen = 0, []
    while True:
        page = history_ok(broker, topic, f"?since={since}&limit=333")
        seen += [m["offset"] for m in page["messages"]]
        if len(page["messages"]) < 333:
            break
        since = page["messages"][-1]["offset"]
    assert seen == list(range(1, 1201))


@pytest.mark.parametrize("query", ["?since=-1", "?since=abc", "?since=1.5",
                                   "?since=", "?limit=-5", "?limit=abc",
                                   "?limit=0", "?limit=2.5", "?limit=",
                                   "?since=99999999999999999999999",
                                   "?since=0x10", "?since=+3", "?since=%203"])
def test_history_bad_query_400(broker, query):
    post_ok(broker, "ha.q", 1)
    st, body = history(broker, "ha.q", query)
    assert st == 400, (query, st, body)
    assert json.loads(body)["error"] == "bad_request"


# ---------------------------------------------------------------- methods

@pytest.mark.parametrize("method,path", [
    ("GET", "/api/publish/ha.m"), ("PUT", "/api/publish/ha.m"),
    ("DELETE", "/api/publish/ha.m"), ("POST", "/api/history/ha.m"),
    ("PUT", "/api/history/ha.m"), ("DELETE", "/api/history/ha.m")])
def test_wrong_method_405(broker, method, path):
    body = b"1" if method in ("POST", "PUT") else None
    st, hdrs, resp = http_request(broker, method, path, body, JSON_HDR)
    assert st == 405, (method, path, st, resp)
    allow = {m.strip() for m in hdrs.get("Allow", "").split(",")}
    assert allow & {"GET", "POST"}, hdrs
    assert method not in allow, hdrs
    h = history_ok(broker, "ha.m")
    assert h["messages"] == [], h


# ----------------------------------------------- keep-alive and pipelining

def test_keep_alive_many_requests_one_connection(broker):
    c = http.client.HTTPConnection("127.0.0.1", broker.port, timeout=WAIT)
    try:
        c.connect()
        sock = c.sock
        offsets = []
        for i in range(10):
            c.request("POST", "/api/publish/ha.ka", dumps({"i": i}),
                      JSON_HDR)
            r = c.getresponse()
            body = r.read()
            assert r.status == 200, body
            assert (r.getheader("Connection") or "").lower() != "close"
            offsets.append(json.loads(body)["offset"])
            c.request("GET", "/api/history/ha.ka?since=%d" % (i,))
            r = c.getresponse()
            h = json.loads(r.read())
            assert r.status == 200
            assert [m["data"] for m in h["messages"]] == [{"i": i}]
            # An error reply keeps the connection, too.
            c.request("POST", "/api/publish/ha.ka", b"nope", JSON_HDR)
            r = c.getresponse()
            r.read()
            assert r.status == 400
            assert c.sock is sock, "connection was re-opened"
        assert offsets == list(range(1, 11))
    finally:
        c.close()


def test_pipelined_posts_answered_in_order(broker):
    c = RawHTTP(broker)
    try:
        path = "/api/publish/ha.pipe"
        c.send(post_request(path, dumps({"n": 1})) +
               post_request(path, dumps({"n": 2})) +
               post_request("/api/history/ha.pipe", "")  # wrong method
               .replace(b"POST", b"GET", 1) +
               post_request(path, dumps({"n": 3})))
        replies = [c.response() for _ in range(4)]
    finally:
        c.close()
    assert [r[0] for r in replies] == [200, 200, 200, 200], replies
    offs = [json.loads(replies[i][2])["offset"] for i in (0, 1, 3)]
    assert offs == [1, 2, 3], offs
    # The GET between them saw exactly the first two.
    h = json.loads(replies[2][2])
    assert [m["data"] for m in h["messages"]] == [{"n": 1}, {"n": 2}], h
    h = history_ok(broker, "ha.pipe")
    assert [(m["offset"], m["data"]) for m in h["messages"]] == \
        [(1, {"n": 1}), (2, {"n": 2}), (3, {"n": 3})]


def test_pipelined_burst_of_posts(broker):
    c = RawHTTP(broker)
    n = 200
    try:
        c.send(b"".join(post_request("/api/publish/ha.burst",
                                     dumps({"n": i}))
                        for i in range(n)))
        replies = [c.response() for _ in range(n)]
    finally:
        c.close()
    assert all(r[0] == 200 for r in replies), replies[:3]
    offs = [json.loads(r[2])["offset"] for r in replies]
    assert offs == list(range(1, n + 1))
    h = history_ok(broker, "ha.burst", "?limit=1000")
    assert [m["data"] for m in h["messages"]] == [{"n": i} for i in range(n)]


# --- a page on another origin (CORS) -----------------------------------------

APP = "https://app.example"
EVIL = "https://evil.example"
SECRET = "s" * 32
CORS_HEADERS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods",
                "Access-Control-Allow-Headers", "Access-Control-Max-Age")


def jwt(publish=("*",), subscribe=("*",)):
    return make_jwt({"sub": "page", "exp": int(time.time()) + 3600,
                     "publish": list(publish), "subscribe": list(subscribe)},
                    SECRET)


def preflight(broker, path, method, origin):
    return http_request(broker, "OPTIONS", path, None, {
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type"})


def api_call(broker, method, path, origin=None, tok=None, body=None):
    h = dict(JSON_HDR)
    if origin:
        h["Origin"] = origin
    if tok:
        h["Authorization"] = "Bearer " + tok
    return http_request(broker, method, path,
                        body.encode() if body is not None else None, h)


@pytest.mark.parametrize("path,method", [("/api/publish/t", "POST"),
                                         ("/api/history/t", "GET"),
                                         ("/sse/t", "GET")])
def test_cors_preflight(make_broker, path, method):
    b = make_broker(auth_secret=SECRET,
                    allowed_origins=f"{APP} https://other.example")
    st, h, body = preflight(b, path, method, APP)
    assert st == 204 and body == b"", (st, h, body)
    assert "Content-Length" not in h, h  # a 204 has no body
    assert h["Access-Control-Allow-Origin"] == APP
    assert h["Vary"] == "Origin"
    assert method in h["Access-Control-Allow-Methods"].split(", ")
    allowed = {v.strip().lower()
               for v in h["Access-Control-Allow-Headers"].split(",")}
    assert allowed >= {"authorization", "content-type", "last-event-id"}, h
    assert int(h["Access-Control-Max-Age"]) > 0
    # a refused origin: 403 with a JSON body, and no CORS at all
    st, h, body = preflight(b, path, method, EVIL)
    assert_error(st, h, body, 403, "forbidden")
    assert "origin" in json.loads(body)["message"]
    assert not [k for k in h if k.startswith("Access-Control")], h
    # OPTIONS without an Origin is no preflight: just Allow
    st, h, _ = http_request(b, "OPTIONS", path)
    assert st == 204 and h["Allow"] == f"{method}, OPTIONS", h
    assert not [k for k in h if k.startswith("Access-Control")], h


def test_cors_on_every_api_answer_for_an_admitted_origin(make_broker):
    b = make_broker(auth_secret=SECRET, allowed_origins=APP)
    tok = jwt(publish=("pub.*",), subscribe=("pub.*",))
    answers = [
        (api_call(b, "POST", "/api/publish/pub.a", APP, tok, '{"v":1}'), 200),
        (api_call(b, "POST", "/api/publish/pub.a", APP, None, "{}"), 401),
        (api_call(b, "POST", "/api/publish/other", APP, tok, "{}"), 403),
        (api_call(b, "POST", "/api/publish/pub.a", APP, tok, "{nope"), 400),
        (api_call(b, "GET", "/api/history/pub.a", APP, tok), 200),
        (api_call(b, "GET", "/api/history/pub.a", APP), 401),
        (api_call(b, "GET", "/api/history/other", APP, tok), 403),
        (api_call(b, "PUT", "/api/history/pub.a", APP, tok, "{}"), 405),
    ]
    for (st, h, body), want in answers:
        assert st == want, (st, body)
        assert h["Access-Control-Allow-Origin"] == APP, (st, h)
        assert h["Vary"] == "Origin", h
    st, _, body = answers[4][0]
    assert [m["data"] for m in json.loads(body)["messages"]] == [{"v": 1}]
    # without an Origin (a server), nothing changes and no CORS is sent
    st, h, _ = api_call(b, "POST", "/api/publish/pub.a", None, tok, "{}")
    assert st == 200 and "Access-Control-Allow-Origin" not in h, h


def test_cors_refused_origin_gets_403_and_no_cors(make_broker):
    b = make_broker(auth_secret=SECRET, allowed_origins=APP)
    tok = jwt()
    for origin in (EVIL, "null"):
        for method, path, body in (("POST", "/api/publish/t", '{"v":1}'),
                                   ("GET", "/api/history/t", None)):
            st, h, data = api_call(b, method, path, origin, tok, body)
            assert_error(st, h, data, 403, "forbidden")
            assert not [k for k in h if k.startswith("Access-Control")], h
    # nothing was published from there
    st, _, data = api_call(b, "GET", "/api/history/t", None, tok)
    assert st == 200 and json.loads(data)["messages"] == [], data


def test_cors_on_healthz(make_broker):
    b = make_broker(allowed_origins=APP)
    st, h, body = http_request(b, "GET", "/healthz", None, {"Origin": APP})
    assert st == 200 and h["Access-Control-Allow-Origin"] == APP, h
    st, h, body = http_request(b, "GET", "/healthz", None, {"Origin": EVIL})
    assert st == 200 and body == b"ok\n", (st, body)
    assert "Access-Control-Allow-Origin" not in h, h


def test_cors_any_origin_when_allowed_origins_is_unset(broker):
    st, h, _ = api_call(broker, "POST", "/api/publish/t", EVIL, None, "{}")
    assert st == 200 and h["Access-Control-Allow-Origin"] == EVIL, h


# --- anonymous clients over HTTP, as over /ws --------------------------------

async def ws_publish_answer(broker, topic):
    """What /ws answers an anonymous publish: "published", an error code,
    or the HTTP status refusing the handshake."""
    try:
        ws = await asyncio.wait_for(websockets.connect(broker.url), WAIT)
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code
    try:
        await ws.send(dumps({"op": "publish", "id": "1", "topic": topic,
                             "data": 1}))
        r = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        return "published" if r["op"] == "published" else r["code"]
    finally:
        await ws.close()


@pytest.mark.parametrize("allow_anonymous,anonymous_publish,ws,http", [
    ("on", "on", "published", 200),
    ("on", "off", "forbidden", 403),
    ("off", "on", 401, 401),
])
def test_anonymous_http_publish_follows_ws(make_broker, allow_anonymous,
                                           anonymous_publish, ws, http):
    b = make_broker(auth_secret=SECRET, allow_anonymous=allow_anonymous,
                    anonymous_publish=anonymous_publish)
    assert run(ws_publish_answer(b, "t")) == ws
    st, h, body = api_call(b, "POST", "/api/publish/t", body='{"v":2}')
    assert st == http, (st, body)
    if http != 200:
        assert_error(st, h, body, http)
    # anonymous history reads follow anonymous subscribe: allow_anonymous
    st, h, body = api_call(b, "GET", "/api/history/t")
    if allow_anonymous == "on":
        assert st == 200, body
        got = [m["data"] for m in json.loads(body)["messages"]]
        assert got == ([1, {"v": 2}] if http == 200 else []), got
    else:
        assert_error(st, h, body, 401, "unauthorized")


def test_anonymous_http_publish_rate_per_address(make_broker):
    """publish_rate holds for anonymous HTTP publishers per client address,
    however many connections they open (each request here is one)."""
    b = make_broker(auth_secret=SECRET, allow_anonymous="on",
                    anonymous_publish="on", publish_rate=1, publish_burst=3)
    codes = [api_call(b, "POST", "/api/publish/t", body="1")[0]
             for _ in range(3)]
    assert codes == [200] * 3, codes
    st, h, body = api_call(b, "POST", "/api/publish/t", body="1")
    assert_error(st, h, body, 429, "rate_limited")
    # a token's holder is not an anonymous client: no address bucket
    st, _, body = api_call(b, "POST", "/api/publish/t", tok=jwt(), body="2")
    assert st == 200, body
    time.sleep(1.2)  # the bucket refills at publish_rate
    assert api_call(b, "POST", "/api/publish/t", body="3")[0] == 200
    st, _, body = api_call(b, "GET", "/api/history/t")
    assert [m["data"] for m in json.loads(body)["messages"]] == \
        [1, 1, 1, 2, 3], body
