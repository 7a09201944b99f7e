"""Authentication and authorization against the real broker (issue 4,
PROTOCOL.md "Transport" and "HTTP API"): HS256 tokens made here with the
standard library (hmac/hashlib/base64, independent of our own signer) and
a few with `chorus token`; valid and invalid tokens (wrong secret, expired,
nbf, alg none/RS256/HS512, bad base64, missing exp, ...) refused with 401
before any upgrade; topic patterns; anonymous access; the API key; the
1008 close at token expiry; Origin checks (403); the HTTP API's 401/403;
secrets never in the log or in replies."""
import asyncio
import base64
import hashlib
import hmac
import json
import re
import socket
import time
import urllib.parse

import pytest
import websockets

from conftest import Broker, dumps, http_request, run_cli

import chorus_helpers
from chorus_helpers import WAIT, b64u
from chorus_helpers import recv_json_any as recv_json
from chorus_helpers import request_any as request
from chorus_helpers import run_aborting as run

# Taken as written (quoted below); at least 32 bytes, as chorusd requires.
SECRET = "s3cret #with spaces and \u00e9, 32 bytes or more"
SECRET_CONF = '"' + SECRET + '"'
API_KEY = "api-key-0123456789abcdef-LEAKCHECK"


# --- JWTs made with the standard library ------------------------------------

def make_jwt(claims, secret=SECRET, **kw):
    return chorus_helpers.make_jwt(claims, secret, **kw)


def claims(sub="alice", ttl=3600, subscribe=("*",), publish=("*",), **kw):
    c = {"sub": sub, "exp": int(time.time()) + ttl}
    if subscribe is not None:
        c["subscribe"] = list(subscribe)
    if publish is not None:
        c["publish"] = list(publish)
    c.update(kw)
    return c


def token(**kw):
    return make_jwt(claims(**kw))


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


# --- raw handshakes ----------------------------------------------------------

def raw_handshake(broker, headers=None, query="", timeout=WAIT):
    """Sends a WebSocket upgrade for /ws and returns (status, headers dict
    with lower-case names, body bytes, closed) where closed tells that the
    broker ended the connection after a refusal."""
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=timeout)
    try:
        lines = [f"GET /ws{query} HTTP/1.1",
                 f"Host: 127.0.0.1:{broker.port}",
                 "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                 "Sec-WebSocket-Version: 13"]
        for k, v in (headers or {}).items():
            if isinstance(v, (list, tuple)):
                lines += [f"{k}: {x}" for x in v]
            else:
                lines.append(f"{k}: {v}")
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError(f"closed before a response: {buf!r}")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        status_line, *hlines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        hdrs = {}
        for ln in hlines:
            k, _, v = ln.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if status == 101:
            return status, hdrs, rest, False
        n = int(hdrs.get("content-length", "0"))
        while len(rest) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        body, extra = rest[:n], rest[n:]
        assert extra == b"", f"bytes after the refusal: {extra!r}"
        # the refused connection is closed by the broker
        closed = False
        try:
            closed = s.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            closed = True
        return status, hdrs, body, closed
    finally:
        s.close()


def assert_refused(broker, status, code, headers=None, query="",
                   secrets=()):
    st, hdrs, body, closed = raw_handshake(broker, headers, query)
    assert st == status, (st, hdrs, body)
    assert hdrs.get("content-type", "").startswith("application/json"), hdrs
    assert "sec-websocket-accept" not in hdrs, hdrs
    err = json.loads(body)
    assert err.get("error") == code, err
    assert isinstance(err.get("message"), str) and err["message"], err
    assert closed, "broker kept the refused connection open"
    for s in secrets:
        assert s not in body.decode("utf-8", "replace"), (s, body)
    return err


async def connect(broker, headers=None, query="", origin=None):
    return await chorus_helpers.connect_aborting(
        broker, broker.url + query, extra_headers=headers or {},
        origin=origin)


async def can_subscribe(ws, topic):
    r = await request(ws, {"op": "subscribe", "topic": topic, "id": topic})
    if r["op"] == "subscribed":
        assert r["id"] == topic and r["topic"] == topic, r
        r2 = await request(ws, {"op": "unsubscribe", "topic": topic})
        assert r2["op"] == "unsubscribed", r2
        return True
    assert r == {"op": "error", "id": topic, "code": "forbidden",
                 "message": r.get("message")}, r
    assert isinstance(r["message"], str)
    return False


async def can_publish(ws, topic):
    r = await request(ws, {"op": "publish", "topic": topic, "id": 7,
                           "data": {"t": topic}})
    if r["op"] == "published":
        assert r["topic"] == topic and r["id"] == 7, r
        return True
    assert r["op"] == "error" and r["code"] == "forbidden" and \
        r["id"] == 7, r
    return False


async def still_open(ws):
    r = await request(ws, {"op": "ping", "id": "alive"})
    assert r == {"op": "pong", "id": "alive"}, r


def auth_broker(make_broker, **conf):
    conf.setdefault("auth_secret", SECRET_CONF)
    return make_broker(**conf)


# --- the secret itself ---------------------------------------------------------

@pytest.mark.parametrize("secret", ["x", "a" * 31])
def test_short_secret_refused_at_start(workdir, secret):
    """An HS256 key shorter than 32 bytes (RFC 7518, section 3.2) stops
    chorusd at start with a file:line error that gives the length, never
    the secret."""
    b = Broker(workdir, auth_secret=secret).start(wait=False)
    assert b.proc.wait(10) == 1
    log = b.read_log()
    line = list(b.conf).index("auth_secret") + 1
    assert re.search(r"broker\.conf:%d: auth_secret: must be at least 32 "
                     r"bytes .*RFC 7518.*; this one has %d" %
                     (line, len(secret)), log), log
    if len(secret) > 8:
        assert secret not in log


def test_secret_of_32_bytes_accepted(make_broker):
    b = make_broker(auth_secret="k" * 32)
    status, _, _ = http_request(b, "GET", "/api/history/t")
    assert status == 401


# --- valid tokens --------------------------------------------------------------

def test_valid_token_header_and_query(make_broker):
    b = auth_broker(make_broker)
    t = token(subscribe=["chat.*"], publish=["chat.room1"])

    async def main():
        for kw in ({"headers": bearer(t)},
                   {"query": "?token=" + urllib.parse.quote(t)},
                   {"headers": {"Authorization": "bearer  " + t}}):
            ws = await connect(b, **kw)
            assert await can_subscribe(ws, "chat.room1")
            assert await can_subscribe(ws, "chat.room2")
            assert not await can_subscribe(ws, "news")
            assert await can_publish(ws, "chat.room1")
            assert not await can_publish(ws, "chat.room2")
            assert not await can_publish(ws, "news")
            await still_open(ws)  # forbidden never closes
            await ws.close()
    run(main())


def test_header_wins_over_query(make_broker):
    b = auth_broker(make_broker)
    good = token()
    bad = make_jwt(claims(), secret="wrong")
    # valid header, bad query: accepted
    st, hdrs, _, _ = raw_handshake(b, bearer(good), "?token=" + bad)
    assert st == 101, (st, hdrs)
    # bad header, valid query: refused
    assert_refused(b, 401, "unauthorized", bearer(bad), "?token=" + good)


def test_missing_token_refused(make_broker):
    b = auth_broker(make_broker)
    assert_refused(b, 401, "unauthorized")
    assert_refused(b, 401, "unauthorized", query="?token=")
    assert_refused(b, 401, "unauthorized", {"Authorization": "Bearer"})
    assert_refused(b, 401, "unauthorized", {"Authorization": "Bearer "})

    async def main():
        with pytest.raises(websockets.InvalidStatusCode) as e:
            await connect(b)
        assert e.value.status_code == 401
    run(main())


def std_alphabet_token(base):
    """A token whose claims segment uses '+' or '/' (standard base64, not
    base64url), correctly signed over that literal text."""
    for i in range(1000):
        c = b64u(dumps(dict(base, pad="?" * i + ">~")))
        if "-" in c or "_" in c:
            break
    c = c.replace("-", "+").replace("_", "/")
    si = b64u(dumps({"alg": "HS256", "typ": "JWT"})) + "." + c
    return si + "." + b64u(hmac.new(SECRET.encode(), si.encode(),
                                    hashlib.sha256).digest())


def _invalid_tokens():
    now = int(time.time())
    good = claims()
    sig_in = b64u(dumps({"alg": "HS256", "typ": "JWT"})) + "." + \
        b64u(dumps(good))
    good_sig = b64u(hmac.new(SECRET.encode(), sig_in.encode(),
                             hashlib.sha256).digest())
    return {
        "wrong_secret": make_jwt(good, secret="not-the-secret"),
        "secret_prefix": make_jwt(good, secret=SECRET[:-1]),
        "expired": make_jwt(claims(ttl=-10)),
        "expired_now": make_jwt(dict(good, exp=now - 1)),
        "nbf_future": make_jwt(claims(nbf=now + 600)),
        "missing_exp": make_jwt({k: v for k, v in good.items()
                                 if k != "exp"}),
        "exp_string": make_jwt(dict(good, exp=str(now + 3600))),
        "alg_none_unsigned": make_jwt(good, header={"alg": "none",
                                                    "typ": "JWT"}, sig=""),
        "alg_none_signed": make_jwt(good, header={"alg": "none"}),
        "alg_None_case": make_jwt(good, header={"alg": "None"}, sig=""),
        "alg_missing": make_jwt(good, header={"typ": "JWT"}),
        "alg_rs256": make_jwt(good, header={"alg": "RS256", "typ": "JWT"}),
        "alg_hs512": make_jwt(good, header={"alg": "HS512", "typ": "JWT"},
                              digest=hashlib.sha512),
        "alg_hs384": make_jwt(good, header={"alg": "HS384", "typ": "JWT"},
                              digest=hashlib.sha384),
        "alg_hs256_lower": make_jwt(good, header={"alg": "hs256"}),
        "tampered_claims": b64u(dumps({"alg": "HS256", "typ": "JWT"})) +
        "." + b64u(dumps(dict(good, sub="mallory"))) + "." + good_sig,
        "sig_truncated": sig_in + "." + good_sig[:-2],
        "sig_empty": sig_in + ".",
        "bad_base64_char": sig_in.replace(".", ".!", 1) + "." + good_sig,
        "base64_padding": sig_in + "=." + good_sig
        if len(b64u(dumps(good))) % 4 else sig_in + "." + good_sig + "=",
        "base64_std_alphabet": std_alphabet_token(good),
        "two_segments": sig_in,
        "four_segments": sig_in + "." + good_sig + ".x",
        "not_a_jwt": "hello",
        "claims_array": make_jwt("[1,2,3]"),
        "claims_not_json": make_jwt("{not json"),
        "header_not_json": make_jwt(good, header="{\"alg\":HS256}"),
        "sub_not_string": make_jwt(dict(good, sub=42)),
        "subscribe_not_list": make_jwt(dict(good, subscribe="*")),
    }


INVALID = _invalid_tokens()


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_token_refused(make_broker, name):
    b = auth_broker(make_broker, allow_anonymous="on",
                    anonymous_publish="on")
    t = INVALID[name]
    # even with anonymous access on, a bad token never falls back to it
    assert_refused(b, 401, "unauthorized", bearer(t), secrets=(SECRET,))
    assert_refused(b, 401, "unauthorized",
                   query="?token=" + urllib.parse.quote(t, safe=""),
                   secrets=(SECRET,))
    # the broker is fine afterwards
    st, _, _, _ = raw_handshake(b, bearer(token()))
    assert st == 101


def test_invalid_token_messages_are_distinct(make_broker):
    """The 401 says why, without echoing the token."""
    b = auth_broker(make_broker)
    msgs = {}
    for name in ("wrong_secret", "expired", "missing_exp", "alg_none_signed",
                 "nbf_future"):
        err = assert_refused(b, 401, "unauthorized", bearer(INVALID[name]),
                             secrets=(INVALID[name], SECRET,
                                      INVALID[name].split(".")[-1] or "-"))
        msgs[name] = err["message"]
    assert len(set(msgs.values())) >= 3, msgs
    assert "expire" in msgs["expired"].lower(), msgs


def test_other_auth_schemes_refused(make_broker):
    b = auth_broker(make_broker, allow_anonymous="on")
    t = token()
    assert_refused(b, 401, "unauthorized", {"Authorization": "Basic " + t})
    assert_refused(b, 401, "unauthorized", {"Authorization": t})
    assert_refused(b, 401, "unauthorized",
                   {"Authorization": ["Bearer " + t, "Bearer " + t]})
    assert_refused(b, 401, "unauthorized",
                   {"Authorization": "Bearer " + t + " extra"})


def test_nbf_past_and_fractional_exp_accepted(make_broker):
    b = auth_broker(make_broker)
    now = int(time.time())
    for c in (claims(nbf=now - 60), claims(iat=now, jti="x", aud="y"),
              dict(claims(), exp=now + 3600.5)):
        st, hdrs, _, _ = raw_handshake(b, bearer(make_jwt(c)))
        assert st == 101, (c, st)
    # "typ" is optional
    st, _, _, _ = raw_handshake(b, bearer(make_jwt(claims(),
                                                    header={"alg": "HS256"})))
    assert st == 101


# --- patterns -------------------------------------------------------------------

PATTERN_CASES = [
    # (patterns, topic, allowed)
    (["chat.*"], "chat.room", True),
    (["chat.*"], "chat.a.b", True),
    (["chat.*"], "chat.", True),
    (["chat.*"], "chat", False),
    (["chat.*"], "chatroom", False),
    (["chat.*"], "Chat.room", False),
    (["chat.*"], "xchat.room", False),
    (["chat*"], "chat", True),
    (["chat*"], "chatter", True),
    (["chat*"], "cha", False),
    (["news"], "news", True),
    (["news"], "news2", False),
    (["news"], "new", False),
    (["news"], "news.sport", False),
    (["*"], "anything/at:all@x", True),
    (["a.*", "b"], "b", True),
    (["a.*", "b"], "a.z", True),
    (["a.*", "b"], "c", False),
    ([], "news", False),
    (["ne*s"], "news", False),   # only a trailing * is a wildcard
    (["ne*s"], "ne*s", False),   # * is not a topic character anyway
]


def test_pattern_edge_cases(make_broker):
    b = auth_broker(make_broker)

    async def main():
        for pats, topic, allowed in PATTERN_CASES:
            if topic == "ne*s":
                continue  # invalid_topic, checked below
            ws = await connect(b, bearer(token(subscribe=pats,
                                               publish=pats)))
            assert await can_subscribe(ws, topic) is allowed, (pats, topic)
            assert await can_publish(ws, topic) is allowed, (pats, topic)
            await ws.close()
        # claims absent: neither right
        ws = await connect(b, bearer(token(subscribe=None, publish=None)))
        assert not await can_subscribe(ws, "x")
        assert not await can_publish(ws, "x")
        await still_open(ws)
        # subscribe rights do not grant publish, and the reverse
        ws = await connect(b, bearer(token(subscribe=["*"], publish=None)))
        assert await can_subscribe(ws, "x")
        assert not await can_publish(ws, "x")
        await ws.close()
        ws = await connect(b, bearer(token(subscribe=None, publish=["*"])))
        assert not await can_subscribe(ws, "x")
        assert await can_publish(ws, "x")
        await ws.close()
    run(main())


def test_forbidden_publish_is_not_delivered(make_broker):
    b = auth_broker(make_broker)

    async def main():
        reader = await connect(b, bearer(token(subscribe=["*"],
                                               publish=None)))
        r = await request(reader, {"op": "subscribe", "topic": "room"})
        assert r["op"] == "subscribed" and r["offset"] == 0, r
        writer = await connect(b, bearer(token(publish=["other"])))
        assert not await can_publish(writer, "room")
        assert await can_publish(writer, "other")
        await still_open(writer)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.recv(), 0.3)
        api = await connect(b, bearer(token(publish=["room"])))
        r = await request(api, {"op": "publish", "topic": "room",
                                "data": 1})
        assert r["op"] == "published" and r["offset"] == 1, r
        m = await recv_json(reader)
        assert m["op"] == "message" and m["offset"] == 1, m
    run(main())


# --- anonymous access and the API key ------------------------------------------

def test_anonymous_subscribe_only(make_broker):
    b = auth_broker(make_broker, allow_anonymous="on")

    async def main():
        ws = await connect(b)
        assert await can_subscribe(ws, "anything")
        assert not await can_publish(ws, "anything")
        await still_open(ws)
    run(main())


def test_anonymous_publish_on(make_broker):
    b = auth_broker(make_broker, allow_anonymous="on",
                    anonymous_publish="on")

    async def main():
        ws = await connect(b)
        assert await can_subscribe(ws, "t")
        assert await can_publish(ws, "t")
        # a token still limits its holder to its patterns
        ws2 = await connect(b, bearer(token(subscribe=["a"], publish=["a"])))
        assert not await can_publish(ws2, "t")
    run(main())


def test_anonymous_publish_needs_allow_anonymous(make_broker):
    b = auth_broker(make_broker, allow_anonymous="off",
                    anonymous_publish="on")
    assert_refused(b, 401, "unauthorized")


def test_api_key_on_ws_has_full_rights(make_broker):
    b = auth_broker(make_broker, api_key=API_KEY)

    async def main():
        ws = await connect(b, bearer(API_KEY))
        for t in ("a", "chat.x", "zz/yy"):
            assert await can_subscribe(ws, t)
            assert await can_publish(ws, t)
        ws2 = await connect(b, query="?token=" + API_KEY)
        assert await can_publish(ws2, "q")
    run(main())
    assert_refused(b, 401, "unauthorized", bearer(API_KEY + "x"))
    assert_refused(b, 401, "unauthorized", bearer(API_KEY[:-1]))


def test_api_key_only_refuses_jwts(make_broker):
    """With api_key but no auth_secret, auth is on; there is no secret to
    check tokens against, so any JWT is refused."""
    b = make_broker(api_key=API_KEY)
    assert_refused(b, 401, "unauthorized")
    assert_refused(b, 401, "unauthorized", bearer(token()))
    st, _, _, _ = raw_handshake(b, bearer(API_KEY))
    assert st == 101


def test_auth_off_ignores_tokens(make_broker):
    b = make_broker()

    async def main():
        ws = await connect(b)
        assert await can_publish(ws, "x")
        ws2 = await connect(b, bearer("garbage"))
        assert await can_publish(ws2, "x")
    run(main())


# --- expiry ------------------------------------------------------------------

def test_connection_closed_1008_at_token_expiry(make_broker):
    b = auth_broker(make_broker)
    # exp on a whole second at least 2 s away
    exp = int(time.time()) + 3
    short = make_jwt(claims(ttl=0) | {"exp": exp})

    async def main():
        ws = await connect(b, bearer(short))
        other = await connect(b, bearer(token()))
        r = await request(ws, {"op": "subscribe", "topic": "x"})
        assert r["op"] == "subscribed", r
        await still_open(ws)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 6)
        except websockets.ConnectionClosed as e:
            closed_at = time.time()
            assert e.code == 1008, (e.code, e.reason)
            assert e.reason == "token expired", e.reason
        assert exp - 0.1 <= closed_at <= exp + 1.5, (exp, closed_at)
        # others are unaffected
        await still_open(other)
        assert await can_publish(other, "x")
    run(main())
    assert "token expired" in b.read_log()


# --- Origin ------------------------------------------------------------------

ORIGINS = "https://app.example.com, http://localhost:3000"


@pytest.mark.parametrize("origin,ok", [
    ("https://app.example.com", True),
    ("http://localhost:3000", True),
    (None, True),
    ("https://evil.example.com", False),
    ("http://app.example.com", False),
    ("https://app.example.com:443", False),
    ("https://app.example.com/", False),
    ("http://localhost:3001", False),
    ("http://localhost", False),
    ("https://app.example.com.evil.com", False),
    ("null", False),
])
def test_origin_list(make_broker, origin, ok):
    b = make_broker(allowed_origins='"' + ORIGINS + '"')
    hdrs = {} if origin is None else {"Origin": origin}
    if ok:
        st, h, _, _ = raw_handshake(b, hdrs)
        assert st == 101, (origin, st)
    else:
        err = assert_refused(b, 403, "forbidden", hdrs)
        assert "origin" in err["message"].lower(), err


def test_origin_star_and_unset(make_broker):
    for conf in ({"allowed_origins": "*"}, {}):
        b = make_broker(**conf)
        for o in ("https://anything.example", "http://x:1"):
            st, _, _, _ = raw_handshake(b, {"Origin": o})
            assert st == 101, (conf, o, st)
        st, _, _, _ = raw_handshake(b)
        assert st == 101
        b.stop()


def test_origin_checked_before_credentials(make_broker):
    b = auth_broker(make_broker, allowed_origins="https://ok.example")
    # a valid token from a foreign origin: 403, not 101
    assert_refused(b, 403, "forbidden",
                   {"Origin": "https://evil.example", **bearer(token())})
    # no token from a foreign origin: 403 (origin first), not 401
    assert_refused(b, 403, "forbidden", {"Origin": "https://evil.example"})
    # the allowed origin still needs a token
    assert_refused(b, 401, "unauthorized", {"Origin": "https://ok.example"})

    async def main():
        ws = await connect(b, bearer(token()), origin="https://ok.example")
        assert await can_publish(ws, "x")
    run(main())


# --- HTTP API -------------------------------------------------------------

def api(b, method, path, tok=None, body=None):
    h = {"Content-Type": "application/json"}
    if tok is not None:
        h["Authorization"] = "Bearer " + tok
    st, hdrs, data = http_request(b, method, path,
                                  body.encode() if body else None, h)
    return st, data


def test_http_api_with_auth(make_broker):
    b = auth_broker(make_broker, api_key=API_KEY, allow_anonymous="on",
                    anonymous_publish="on")
    pub = token(subscribe=None, publish=["news.*"])
    sub = token(subscribe=["news.*"], publish=None)
    bad = INVALID["wrong_secret"]
    cases = [
        # (method, path, token, expected status)
        ("POST", "/api/publish/news.a", None, 200),  # anonymous_publish
        ("POST", "/api/publish/news.a", bad, 401),
        ("POST", "/api/publish/news.a", INVALID["expired"], 401),
        ("POST", "/api/publish/news.a", "garbage", 401),
        ("POST", "/api/publish/news.a", sub, 403),
        ("POST", "/api/publish/other", pub, 403),
        ("POST", "/api/publish/news.a", pub, 200),
        ("POST", "/api/publish/news.a", API_KEY, 200),
        ("POST", "/api/publish/anything", API_KEY, 200),
        ("GET", "/api/history/news.a", None, 200),  # allow_anonymous
        ("GET", "/api/history/news.a", bad, 401),
        ("GET", "/api/history/news.a", pub, 403),
        ("GET", "/api/history/other", sub, 403),
        ("GET", "/api/history/news.a", sub, 200),
        ("GET", "/api/history/news.a", API_KEY, 200),
    ]
    for method, path, tok, want in cases:
        st, data = api(b, method, path, tok,
                       '{"v":1}' if method == "POST" else None)
        assert st == want, (method, path, tok and tok[:20], st, data)
        body = json.loads(data)
        if want == 401:
            assert body["error"] == "unauthorized", body
        elif want == 403:
            assert body["error"] == "forbidden", body
        for s in (SECRET, API_KEY, bad):
            assert s not in data.decode(), data
    st, data = api(b, "GET", "/api/history/news.a", API_KEY)
    h = json.loads(data)
    assert [m["data"] for m in h["messages"]] == [{"v": 1}] * 3, h


def test_http_api_open_without_auth(make_broker):
    b = make_broker(allow_anonymous="off")
    st, data = api(b, "POST", "/api/publish/x", None, "1")
    assert st == 200, data
    st, data = api(b, "GET", "/api/history/x")
    assert st == 200 and json.loads(data)["offset"] == 1, data


def test_http_publish_reaches_token_subscriber(make_broker):
    b = auth_broker(make_broker, api_key=API_KEY)

    async def main():
        ws = await connect(b, bearer(token(subscribe=["feed"], publish=None)))
        r = await request(ws, {"op": "subscribe", "topic": "feed"})
        assert r["op"] == "subscribed"
        loop = asyncio.get_running_loop()
        st, data = await loop.run_in_executor(
            None, lambda: api(b, "POST", "/api/publish/feed", API_KEY,
                              '"hi"'))
        assert st == 200, data
        m = await recv_json(ws)
        assert m["data"] == "hi" and m["offset"] == 1, m
    run(main())


# --- chorus token ---------------------------------------------------------

def test_cli_token_verifies_with_stdlib_and_works(make_broker):
    b = auth_broker(make_broker)
    r = run_cli("token", "--secret", SECRET, "--sub", "cli-user",
                "--subscribe", "chat.*", "--publish", "chat.room1",
                "--ttl", "1h")
    assert r.returncode == 0, r.stderr
    tok = r.stdout.decode().strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",
                        tok), tok
    h64, c64, s64 = tok.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    header = json.loads(base64.urlsafe_b64decode(pad(h64)))
    cl = json.loads(base64.urlsafe_b64decode(pad(c64)))
    assert header["alg"] == "HS256", header
    want = hmac.new(SECRET.encode(), f"{h64}.{c64}".encode(),
                    hashlib.sha256).digest()
    assert hmac.compare_digest(base64.urlsafe_b64decode(pad(s64)), want)
    assert cl["sub"] == "cli-user"
    assert cl["subscribe"] == ["chat.*"] and cl["publish"] == ["chat.room1"]
    assert abs(cl["exp"] - (time.time() + 3600)) < 30, cl

    async def main():
        ws = await connect(b, bearer(tok))
        assert await can_subscribe(ws, "chat.x")
        assert not await can_subscribe(ws, "news")
        assert await can_publish(ws, "chat.room1")
        assert not await can_publish(ws, "chat.room2")
    run(main())

    # the CLI clients use it
    r = run_cli("pub", "--url", b.url, "--token", tok, "chat.room1", "42")
    assert r.returncode == 0, r.stderr
    r = run_cli("pub", "--url", b.url, "chat.room1", "42")
    assert r.returncode != 0
    r = run_cli("pub", "--url", b.url, "--token", tok, "chat.room2", "42")
    assert r.returncode != 0
    assert b"forbidden" in r.stderr, r.stderr
    st, data = api(b, "GET", "/api/history/chat.room1", tok)
    assert st == 200 and json.loads(data)["offset"] == 2, data


def test_cli_token_wrong_secret_refused(make_broker):
    b = auth_broker(make_broker)
    r = run_cli("token", "--secret", "other", "--sub", "x", "--subscribe",
                "*", "--ttl", "1h")
    assert r.returncode == 0, r.stderr
    assert_refused(b, 401, "unauthorized", bearer(r.stdout.decode().strip()))


# --- secrets never leak ---------------------------------------------------

@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_never_logged(make_broker, log_format):
    b = auth_broker(make_broker, api_key=API_KEY, allow_anonymous="on",
                    log_level="debug", log_format=log_format)
    good = token(subscribe=["a"], publish=["a"])
    short = make_jwt(claims(ttl=0) | {"exp": int(time.time()) + 2})
    leaks = [SECRET, API_KEY, good, good.split(".")[2], short,
             short.split(".")[2]]
    bad = list(INVALID.values())
    leaks += [t for t in bad if len(t) > 20]
    leaks += [t.split(".")[2] for t in bad
              if t.count(".") == 2 and len(t.split(".")[2]) > 20]
    bodies = []

    async def main():
        ws = await connect(b, bearer(good))
        assert await can_publish(ws, "a")
        assert not await can_publish(ws, "b")
        await ws.send("not json " + good)
        bodies.append(await asyncio.wait_for(ws.recv(), WAIT))
        ws2 = await connect(b, query="?token=" + good)
        await still_open(ws2)
        ws3 = await connect(b, bearer(short))
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws3.recv(), 5)
    run(main())
    for t in bad:
        _, _, body, _ = raw_handshake(b, bearer(t))
        bodies.append(body.decode("utf-8", "replace"))
        _, _, body, _ = raw_handshake(
            b, query="?token=" + urllib.parse.quote(t, safe=""))
        bodies.append(body.decode("utf-8", "replace"))
    for tok in (good, INVALID["wrong_secret"], API_KEY + "x"):
        st, data = api(b, "POST", "/api/publish/b", tok, "1")
        bodies.append(data.decode())
        st, data = api(b, "GET", "/metrics", tok)
        bodies.append(data.decode())
    b.stop()
    log = b.read_log()
    assert "refusing" in log or "token" in log, log[-2000:]  # it did log
    if log_format == "json":
        for line in log.splitlines():
            json.loads(line)  # one object per line
    for s in leaks:
        assert s not in log, f"secret/token leaked into the log: {s[:30]}"
        assert json.dumps(s)[1:-1] not in log, s[:30]  # nor escaped
        for body in bodies:
            assert s not in body, (s[:30], body[:300])
