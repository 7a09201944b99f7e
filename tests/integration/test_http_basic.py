"""Plain HTTP on the broker port and the WebSocket upgrade checks:
/healthz, 404, broken upgrades (400/426), header parsing, limits and
garbage."""
import base64
import hashlib
import json
import os
import socket
import struct

import pytest

from conftest import http_request

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def accept_for(key):
    return base64.b64encode(
        hashlib.sha1(key.encode() + GUID).digest()).decode()


class Resp:
    def __init__(self, status, headers, body, closed, raw):
        self.status, self.headers, self.body = status, headers, body
        self.closed, self.raw = closed, raw

    def __repr__(self):
        return f"Resp({self.raw[:400]!r}, closed={self.closed})"


def raw_http(port, data, timeout=5, expect_close=False):
    """Sends data, reads one response head (and body by Content-Length).
    With expect_close, keeps reading until the broker closes; closed says
    whether it did within the timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    closed = False
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    closed = True
                    break
                buf += chunk
        except ConnectionResetError:
            closed = True
        assert b"\r\n\r\n" in buf, f"no response head: {buf!r}"
        head, body = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        assert parts[0] == "HTTP/1.1", lines[0]
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.setdefault(k.strip().lower(), v.strip())
        n = int(headers.get("content-length", "0"))
        try:
            while len(body) < n and not closed:
                chunk = s.recv(65536)
                if not chunk:
                    closed = True
                    break
                body += chunk
            if expect_close and not closed:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        closed = True
                        break
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            pass
        return Resp(status, headers, body, closed, buf)
    finally:
        s.close()


def upgrade_request(path="/ws", drop=(), extra="", **override):
    hdrs = {"Host": "127.0.0.1", "Upgrade": "websocket",
            "Connection": "Upgrade", "Sec-WebSocket-Key": KEY,
            "Sec-WebSocket-Version": "13"}
    for k, v in override.items():
        hdrs[k.replace("_", "-")] = v
    text = f"GET {path} HTTP/1.1\r\n"
    for k, v in hdrs.items():
        if k not in drop:
            text += f"{k}: {v}\r\n"
    return (text + extra + "\r\n").encode()


def healthy(broker):
    status, _, body = http_request(broker, "GET", "/healthz")
    return status == 200 and body.strip() == b"ok"


# --- plain HTTP -----------------------------------------------------------

def test_healthz(broker):
    status, headers, body = http_request(broker, "GET", "/healthz")
    assert status == 200, (status, body)
    assert body.strip() == b"ok", body
    # raw, to see the framing too
    r = raw_http(broker.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 200 and r.body.strip() == b"ok", r
    assert int(r.headers["content-length"]) == len(r.body), r


# "/" is the built-in demo page (issue 5), so it is not in this list.
@pytest.mark.parametrize("path", ["/nope", "/favicon.ico", "/wss",
                                  "/healthz/x", "/ws2", "/index.htm"])
def test_unknown_path_404(broker, path):
    status, _, body = http_request(broker, "GET", path)
    assert status == 404, (path, status, body)


def test_upgrade_on_unknown_path_404(broker):
    r = raw_http(broker.port, upgrade_request(path="/nope"))
    assert r.status == 404, r


def test_echo_off_by_default(broker):
    status, _, _ = http_request(broker, "GET", "/echo")
    assert status == 404
    r = raw_http(broker.port, upgrade_request(path="/echo"))
    assert r.status == 404, r
    assert healthy(broker)


# --- broken upgrades ------------------------------------------------------

def test_ws_without_upgrade_400(broker):
    status, _, _ = http_request(broker, "GET", "/ws")
    assert status == 400, status
    r = raw_http(broker.port, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 400, r


@pytest.mark.parametrize("version", ["8", "12", "14", "abc", "13, 8"])
def test_wrong_version_426(broker, version):
    r = raw_http(broker.port,
                 upgrade_request(Sec_WebSocket_Version=version))
    assert r.status == 426, r
    assert r.headers.get("sec-websocket-version") == "13", r


def test_missing_version(broker):
    r = raw_http(broker.port, upgrade_request(drop=("Sec-WebSocket-Version",)))
    assert r.status in (400, 426), r
    if r.status == 426:
        assert r.headers.get("sec-websocket-version") == "13", r


@pytest.mark.parametrize("case", [
    dict(drop=("Upgrade",)),
    dict(Upgrade="h2c"),
    dict(Upgrade="websocketx"),
    dict(drop=("Connection",)),
    dict(Connection="keep-alive"),
    dict(Connection="Upgrades"),
    dict(drop=("Sec-WebSocket-Key",)),
], ids=["no-upgrade", "upgrade-h2c", "upgrade-websocketx", "no-connection",
        "connection-keepalive", "connection-upgrades", "no-key"])
def test_broken_upgrade_400(broker, case):
    r = raw_http(broker.port, upgrade_request(**case))
    assert r.status == 400, (case, r)
    assert healthy(broker)


def test_post_upgrade_refused(broker):
    req = upgrade_request().replace(b"GET ", b"POST ", 1)
    r = raw_http(broker.port, req)
    assert r.status in (400, 405), r


@pytest.mark.parametrize("key", [
    "not base64 !!",
    base64.b64encode(b"x" * 15).decode(),
    base64.b64encode(b"x" * 17).decode(),
    base64.b64encode(b"x" * 32).decode(),
    "",
    "====",
    "dGhlIHNhbXBsZSBub25j*Q==",
])
def test_bad_key_400(broker, key):
    r = raw_http(broker.port, upgrade_request(Sec_WebSocket_Key=key))
    assert r.status == 400, (key, r)


def test_duplicate_key_400(broker):
    r = raw_http(broker.port,
                 upgrade_request(extra="Sec-WebSocket-Key: "
                                 "AAAAAAAAAAAAAAAAAAAAAA==\r\n"))
    assert r.status == 400, r


# --- header parsing that must work ---------------------------------------

def ws_ping_roundtrip(sock, rest):
    """Sends a masked {"op":"ping"} text frame and checks the pong."""
    payload = b'{"op":"ping","id":"h"}'
    mask = os.urandom(4)
    sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask +
                 bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))
    buf = rest
    while len(buf) < 2 or len(buf) < 2 + (buf[1] & 0x7F):
        chunk = sock.recv(4096)
        assert chunk, "closed instead of answering"
        buf += chunk
    assert buf[0] == 0x81, buf
    n = buf[1] & 0x7F
    assert json.loads(buf[2:2 + n]) == {"op": "pong", "id": "h"}, buf


@pytest.mark.parametrize("raw_headers", [
    "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n",
    "Upgrade: websocket\r\nConnection: Upgrade, keep-alive\r\n",
    "Upgrade: websocket\r\nConnection: keep-alive,Upgrade\r\n",
    "Upgrade: WebSocket\r\nConnection: upgrade\r\n",
    "upgrade: WEBSOCKET\r\nconnection: UPGRADE\r\n",
    "UPGRADE:websocket\r\nCONNECTION:   Upgrade   \r\n",
], ids=["list1", "list2", "list-nospace", "case1", "case2", "spacing"])
def test_upgrade_header_variants(broker, raw_headers):
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n{raw_headers}"
           f"sec-websocket-key: {key}\r\nSEC-WEBSOCKET-VERSION: 13\r\n"
           "User-Agent: test\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
    try:
        s.sendall(req)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            assert chunk, buf
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 101"), head
        hdrs = {k.strip().lower(): v.strip() for k, _, v in
                (ln.partition(":") for ln in lines[1:])}
        assert hdrs["sec-websocket-accept"] == accept_for(key), head
        assert hdrs["upgrade"].lower() == "websocket", head
        assert "upgrade" in hdrs["connection"].lower(), head
        ws_ping_roundtrip(s, rest)
    finally:
        s.close()


# --- limits and garbage ---------------------------------------------------

def test_long_request_line(broker):
    req = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    r = raw_http(broker.port, req)
    assert r.status in (431, 414, 400), r
    req = b"GET /ws?x=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    r = raw_http(broker.port, req)
    assert r.status in (431, 414, 400), r
    assert healthy(broker)


def test_large_headers(broker):
    # every line short, 20 KB in all
    hdrs = "".join(f"X-Filler-{i}: {'b' * 1000}\r\n" for i in range(20))
    r = raw_http(broker.port, f"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                 f"{hdrs}\r\n".encode())
    assert r.status in (431, 400), r
    # one header line of 17 KB
    r = raw_http(broker.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " +
                 b"c" * 17000 + b"\r\n\r\n")
    assert r.status in (431, 400), r
    # on an upgrade too
    r = raw_http(broker.port, upgrade_request(extra=hdrs))
    assert r.status in (431, 400), r
    assert healthy(broker)


def test_headers_under_limit_ok(broker):
    hdrs = "".join(f"X-Filler-{i}: {'b' * 100}\r\n" for i in range(30))
    r = raw_http(broker.port, f"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                 f"{hdrs}\r\n".encode())
    assert r.status == 200 and r.body.strip() == b"ok", r


@pytest.mark.parametrize("garbage", [
    b"\x00\x01\x02\x03garbage\xff\xfe\r\n\r\n",
    b"HELLO\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /healthz\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n folded: line\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40 +
    b"\r\n\r\n",
], ids=["binary", "word", "method-only", "http09", "version", "no-colon",
        "folding", "tls-hello"])
def test_garbage_400_and_closed(broker, garbage):
    r = raw_http(broker.port, garbage, expect_close=True)
    assert r.status in (400, 505) if b"9.9" in garbage else r.status == 400, r
    assert r.closed, r
    assert healthy(broker)


def test_header_count_limit(broker):
    # 64 headers in all are accepted; one more is refused with 431, each
    # line short and the head far below its byte limit.
    ok = "".join(f"X-H-{i}: v\r\n" for i in range(63))
    r = raw_http(broker.port, f"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                 f"{ok}\r\n".encode())
    assert r.status == 200, r
    over = "".join(f"X-H-{i}: v\r\n" for i in range(64))
    r = raw_http(broker.port, f"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                 f"{over}\r\n".encode())
    assert r.status == 431, r
    assert healthy(broker)
