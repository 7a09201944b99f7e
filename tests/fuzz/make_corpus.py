#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/).

Seeds are small valid and edge-case inputs in each target's input layout
(see the comment at the top of each fuzz_<target>.c). Run from anywhere;
it rewrites the seed-*.bin files and leaves other files (regression inputs
from findings, named regress-*) alone. Deterministic: no randomness.
"""
import base64
import hashlib
import hmac
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
MASK = b"\x37\xfa\x21\x3d"


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-%s.bin" % name), "wb") as f:
        f.write(data)


def frame(op, payload, fin=True, mask=None, rsv1=False, len_form=None):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
    n = len(payload)
    form = len_form or (7 if n < 126 else 16 if n < 65536 else 64)
    m = 0x80 if mask else 0
    if form == 7:
        hdr = bytes([b0, m | n])
    elif form == 16:
        hdr = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        hdr += mask
    return hdr + payload


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


# ---- http_parse: flags byte, prefix byte, head -----------------------------
def http_parse():
    req = (b"GET /ws?token=abc%20def&x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
           b"Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Extensions: permessage-deflate; "
           b"client_max_window_bits\r\n\r\n")
    write("http_parse", "upgrade", b"\x3f\x20" + req)
    write("http_parse", "upgrade-small-limits", b"\x00\x10" + req)
    write("http_parse", "post", b"\x3f\x08POST /publish/news HTTP/1.0\r\n"
          b"Content-Length: 5\r\nAuthorization: Bearer k\r\n\r\nhello")
    write("http_parse", "lf-only", b"\x3f\x05GET / HTTP/1.1\nHost: x\n\n")
    write("http_parse", "response", b"\x7f\x30HTTP/1.1 101 Switching Protocols"
          b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    write("http_parse", "obs-fold", b"\x7f\x00GET / HTTP/1.1\r\nA: b\r\n c\r\n"
          b"\r\n")
    write("http_parse", "bad-version", b"\x3f\x01GET / HTTP/2.0\r\n\r\n")


# ---- ws_frame: limit byte, 4 seed bytes, client-to-server stream ----------
def ws_frame():
    seed = b"\x12\x34\x56\x78"
    text = "héllo wörld €𝄞".encode()
    write("ws_frame", "text", b"\x05" + seed +
          frame(1, text, mask=MASK))
    write("ws_frame", "fragments", b"\x07" + seed +
          frame(1, text[:3], fin=False, mask=MASK) +
          frame(9, b"ping", mask=MASK) +
          frame(0, text[3:], mask=MASK))
    write("ws_frame", "binary16", b"\x06" + seed +
          frame(2, bytes(range(256)) * 2, mask=MASK))
    write("ws_frame", "len64", b"\x00" + seed +
          frame(2, b"abc", mask=MASK, len_form=64))
    write("ws_frame", "close", b"\x03" + seed +
          frame(8, close_payload(1000, b"bye"), mask=MASK))
    write("ws_frame", "close-bad-code", b"\x03" + seed +
          frame(8, close_payload(1005), mask=MASK))
    write("ws_frame", "bad-utf8", b"\x05" + seed +
          frame(1, b"ok\xc3", fin=False, mask=MASK) +
          frame(0, b"\x28", mask=MASK))
    write("ws_frame", "unmasked", b"\x05" + seed + frame(1, b"hi"))
    write("ws_frame", "too-big", b"\x02" + seed +
          frame(1, b"0123456789abc", mask=MASK))
    write("ws_frame", "rsv", b"\x05" + seed +
          frame(1, b"x", mask=MASK, rsv1=True))
    # byte 0 bit 3: permessage-deflate negotiated, RSV1 allowed
    write("ws_frame", "compressed", b"\x0d" + seed +
          frame(1, deflated(b"\xff\xfe compressed"), fin=False, mask=MASK,
                rsv1=True) + frame(0, b"", mask=MASK) +
          frame(0, b"x", mask=MASK, rsv1=True))


# ---- wire: one /ws text message -------------------------------------------
def wire():
    msgs = {
        "subscribe": {"op": "subscribe", "topic": "news/eu@1", "id": 1},
        "subscribe-since": {"op": "subscribe", "topic": "a:b", "id": "s1",
                            "since": {"epoch": "0123456789abcdef0123456789"
                                      "abcdef", "offset": 42}},
        "unsubscribe": {"op": "unsubscribe", "topic": "news", "id": -7},
        "publish": {"op": "publish", "topic": "t", "id": 9223372036854775807,
                    "data": {"a": [1, 2.5, True, None, "x\u0000y"],
                             "b": {"c": "é€𝄞"}}},
        "publish-null": {"op": "publish", "topic": "t", "data": None},
        "ping": {"op": "ping", "id": "p"},
        "unknown-op": {"op": "subscribé" * 10, "topic": "t", "id": 1},
        "bad-topic": {"op": "subscribe", "topic": "a b", "id": 2},
        "long-id": {"op": "ping", "id": "i" * 65},
        "since-negative": {"op": "subscribe", "topic": "t",
                           "since": {"epoch": "x", "offset": -1}},
    }
    for name, m in msgs.items():
        write("wire", name, json.dumps(m, ensure_ascii=False).encode())
    write("wire", "not-json", b'{"op":"ping",')
    write("wire", "not-object", b"[42]")
    write("wire", "nul-in-op", b'{"op":"ping\\u0000x","id":1}')
    write("wire", "nested", b'{"op":"publish","topic":"t","data":' +
          b"[" * 100 + b"]" * 100 + b"}")
    write("wire", "duplicate-key", b'{"op":"ping","op":"publish","topic":"t",'
          b'"data":1e300}')


# ---- config: a configuration file -----------------------------------------
def config():
    with open(os.path.join(HERE, "..", "..", "broker.conf.example"), "rb") as f:
        write("config", "example", f.read())
    write("config", "all-keys", b"""\xef\xbb\xbf# every key, once
listen = [::1]:9000
echo_endpoint = on
max_message_size = 64k
max_outbound_bytes = 1g
max_unacked_bytes = 16M
ping_interval = 500ms
idle_timeout = 2m
handshake_timeout = 10s
log_level = debug
db_path = "/var/lib/chorus/db #1/chorus.db"   # quoted
history_size = 0
history_ttl = 7d
durability = full
max_connections = 0
max_subscriptions_per_connection = 18446744073709551615
max_connections_per_ip = 3
history = off
compression = on
io_uring = off
threads = 64
auth_secret = 0123456789abcdef0123456789abcdef
api_key = key#not-a-comment
allow_anonymous = on
anonymous_publish = off
allowed_origins = "https://a.example https://b.example"
publish_rate = 100
publish_burst = 10
tls_listen = :8443
tls_cert = cert.pem
tls_key = key.pem
web_root = /srv/www
""")
    write("config", "crlf", b"listen = :80\r\nthreads = 2\r\n")
    write("config", "duplicate", b"threads = 1\nthreads = 2\n")
    write("config", "unknown-key", b"\n\n  nope = 1\n")
    write("config", "no-equals", b"listen\n")
    write("config", "unclosed-quote", b'db_path = "abc\n')
    write("config", "overflow", b"max_message_size = 99999999999999999999g\n")
    write("config", "nul", b"threads = 1\x00\n")
    write("config", "no-newline", b"ping_interval = 0")


# ---- jwt: clock/secret byte, token -----------------------------------------
def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def token(secret, claims, header=None):
    h = b64u(json.dumps(header or {"alg": "HS256", "typ": "JWT"},
                        separators=(",", ":")).encode())
    p = b64u(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret, h + b"." + p, hashlib.sha256).digest()
    return h + b"." + p + b"." + b64u(sig)


def jwt():
    long_secret = b"a much longer test secret"
    # byte 0: bits 0-1 clock (0, 1700000000, INT64_MAX, -1), bit 2 secret
    write("jwt", "valid", b"\x05" + token(long_secret, {
        "sub": "alice", "exp": 4102444800, "nbf": 1600000000,
        "sub_topics": ["news/*"], "pub_topics": ["chat"]}))
    write("jwt", "valid-short-secret", b"\x00" + token(b"k", {"exp": 1.5}))
    write("jwt", "expired", b"\x01" + token(b"k", {"exp": 1600000000}))
    write("jwt", "not-yet", b"\x01" + token(b"k", {"exp": 4e9, "nbf": 2e9}))
    write("jwt", "no-exp", b"\x01" + token(b"k", {"sub": "x"}))
    write("jwt", "alg-none", b"\x01" + token(b"k", {"exp": 4e9},
                                             {"alg": "none"}))
    write("jwt", "crit", b"\x01" + token(b"k", {"exp": 4e9},
                                         {"alg": "HS256", "crit": ["x"]}))
    write("jwt", "wrong-secret", b"\x05" + token(b"k", {"exp": 4e9}))
    write("jwt", "padded", b"\x01" + token(b"k", {"exp": 4e9}) + b"==")
    write("jwt", "four-segments", b"\x01a.b.c.d")
    write("jwt", "claims-json", b"\x01" + json.dumps(
        {"exp": 4102444800, "nbf": 0, "sub": "bob"}).encode())


# ---- ws_client: 4 seed bytes, server-to-client stream ----------------------
def ws_client():
    seed = b"\x9a\xbc\xde\xf1"
    msg = json.dumps({"op": "message", "topic": "t", "offset": 1, "ts": 2,
                      "data": "é"}, ensure_ascii=False).encode()
    write("ws_client", "messages", seed + frame(1, msg) + frame(1, msg))
    write("ws_client", "fragments", seed + frame(1, msg[:5], fin=False) +
          frame(9, b"") + frame(0, msg[5:], fin=False) + frame(0, b""))
    write("ws_client", "binary16", seed + frame(2, bytes(range(256)) * 3))
    write("ws_client", "len64", seed + frame(2, b"xyz", len_form=64))
    write("ws_client", "close", seed + frame(8, close_payload(1013,
                                                              b"slow")))
    write("ws_client", "close-1-byte", seed + frame(8, b"\x03"))
    write("ws_client", "masked", seed + frame(1, b"hi", mask=MASK))
    write("ws_client", "bad-utf8", seed + frame(1, b"\xff"))
    write("ws_client", "cont-first", seed + frame(0, b"x"))
    write("ws_client", "huge-len", seed + bytes([0x82, 127]) +
          b"\x7f\xff\xff\xff\xff\xff\xff\xff")


# ---- bench_sse: 4 seed bytes (bit 7 of the first: chunked), SSE body -------
def chunked(body, sizes):
    out, i = b"", 0
    for n in sizes:
        out += b"%x\r\n" % n + body[i:i + n] + b"\r\n"
        i += n
    return out + b"%x;ext=1\r\n" % (len(body) - i) + body[i:] + b"\r\n0\r\n\r\n"


def bench_sse():
    seed, cseed = b"\x1a\xbc\xde\xf1", b"\x9a\xbc\xde\xf1"
    epoch = b"65f56f95694d696ad3122359a76a66a2"
    stream = (b"retry: 1190\n\n"
              b"id: " + epoch + b":0\nevent: subscribed\ndata: {\"topic\":"
              b"\"t\",\"epoch\":\"" + epoch + b"\",\"offset\":0,"
              b"\"recovered\":true}\n\n"
              b"id: " + epoch + b":1\nevent: message\ndata: {\"topic\":\"t\","
              b"\"offset\":1,\"ts\":1796355458888,\"data\":\"hello\"}\n\n"
              b": ping\n\n")
    write("bench_sse", "chorus", seed + stream)
    write("bench_sse", "nchan", seed + b": hi\n\nid: 1796355167:0\n"
          b"data: hello\ndata: world\n\n")
    write("bench_sse", "crlf-cr", seed + b"data: a\r\n\r\ndata: b\r\rdata:c"
          b"\n\ndata\n:\nevents: x\ndataaaaaaa: y\n\n")
    write("bench_sse", "chunked", cseed + chunked(stream, [5, 1, 40, 100]))
    write("bench_sse", "chunked-bad", cseed + b"5\r\nhello\r\nzz\r\n")
    write("bench_sse", "chunked-long", cseed + b"1000000000000000\r\n")


# ---- deflate: options byte, length-prefixed messages -----------------------
def deflated(data, wbits=15, final=False, level=6):
    c = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = c.compress(data) + (c.flush(zlib.Z_FINISH) if final
                              else c.flush(zlib.Z_SYNC_FLUSH))
    if not final:
        assert out.endswith(b"\x00\x00\xff\xff")
        out = out[:-4]
    return out


def msgs(*parts):
    return b"".join(struct.pack(">H", len(p)) + p for p in parts)


def deflate():
    text = json.dumps({"op": "publish", "topic": "t",
                       "data": ["abc" * 20, "é€"]}).encode()
    write("deflate", "messages-noctx", b"\x03" + msgs(
        deflated(text), deflated(b""), deflated(text, wbits=9)))
    # with context takeover the second message refers to the first
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    m1 = c.compress(text) + c.flush(zlib.Z_SYNC_FLUSH)
    m2 = c.compress(text) + c.flush(zlib.Z_SYNC_FLUSH)
    write("deflate", "context-takeover", b"\x02" + msgs(m1[:-4], m2[:-4]))
    write("deflate", "bfinal", b"\x03" + msgs(deflated(text, final=True),
                                              deflated(text)))
    write("deflate", "stored", b"\x8b" + msgs(deflated(text, level=0)))
    write("deflate", "bomb", b"\x03" + msgs(deflated(b"\x00" * 300000)))
    write("deflate", "truncated", b"\x05" + msgs(deflated(text)[:-3]))
    write("deflate", "corrupt", b"\x05" + msgs(b"\xff\xff\xff\xff"))
    write("deflate", "empty", b"\x01")
    write("deflate", "offer", b"\x41permessage-deflate; client_max_window_bits,"
          b" permessage-deflate; server_max_window_bits=10")
    write("deflate", "offer-quoted", b'\x41x-webkit-deflate-frame, '
          b'permessage-deflate; server_max_window_bits="12"; '
          b"server_no_context_takeover")
    write("deflate", "offer-8", b"\x41permessage-deflate; "
          b"server_max_window_bits=8, permessage-deflate")


# ---- sse_position: the whole input is the position text ------------------
def sse_position():
    epoch = b"0123456789abcdef0123456789abcdef"
    for name, text in [
            ("valid", epoch + b":42"),
            ("zero", epoch + b":0"),
            ("leading-zeros", epoch + b":000042"),
            ("max", epoch + b":18446744073709551615"),
            ("max-plus-one", epoch + b":18446744073709551616"),
            ("twenty-nines", epoch + b":99999999999999999999"),
            ("empty", b""),
            ("no-offset", epoch + b":"),
            ("no-colon", epoch + b"42"),
            ("upper-epoch", epoch.upper() + b":1"),
            ("short-epoch", epoch[:31] + b":1"),
            ("sign", epoch + b":+1"),
            ("minus", epoch + b":-1"),
            ("space", epoch + b": 1"),
            ("nul-in-offset", epoch + b":1\x002"),
            ("nul-in-epoch", epoch[:16] + b"\x00" + epoch[17:] + b":1"),
            ("two-colons", epoch + b":1:2")]:
        write("sse_position", name, text)


for gen in (http_parse, ws_frame, wire, config, jwt, ws_client, deflate,
            bench_sse, sse_position):
    gen()
