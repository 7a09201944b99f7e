"""Helpers shared by the integration tests: running a test coroutine (with
or without closing the connections it opened), connecting with
python3-websockets, JSON request/response, subscribe/publish, HS256 JWTs
made with the standard library, a blocking raw-socket /ws client and a
plain /metrics reader. Each test module binds the variants it needs."""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import struct

import websockets

from conftest import dumps, http_request
from wsraw import GUID, OP_TEXT, build_frame

WAIT = 5.0


# --- running test coroutines -------------------------------------------------

def run_simple(coro, timeout):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def connect(broker, url=None, **kw):
    """websockets.connect with max_size=None unless given, within WAIT."""
    kw.setdefault("max_size", None)
    return await asyncio.wait_for(
        websockets.connect(url or broker.url, **kw), WAIT)


class Runner:
    """run() runs a test coroutine with a timeout, between begin() and
    end() (which subclasses use to clean up connections)."""

    def __init__(self, timeout):
        self.timeout = timeout

    def begin(self):
        pass

    async def end(self):
        pass

    def run(self, coro, timeout=None):
        timeout = self.timeout if timeout is None else timeout

        async def wrapper():
            self.begin()
            try:
                return await asyncio.wait_for(coro, timeout)
            finally:
                await self.end()
        return asyncio.run(wrapper())


class AbortingRunner(Runner):
    """Every connection a test coroutine opened with connect() is aborted
    before the loop ends, so that brokers stop quickly. `stack` holds one
    list of connections per running run()."""

    def __init__(self, timeout=40):
        super().__init__(timeout)
        self.stack = []

    def begin(self):
        self.stack.append([])

    async def end(self):
        for ws in self.stack.pop():
            ws.transport.abort()

    async def connect(self, broker, url=None, **kw):
        ws = await connect(broker, url, **kw)
        if self.stack:
            self.stack[-1].append(ws)
        return ws


class ClosingRunner(Runner):
    """Every connection opened with connect() while a test coroutine runs
    is closed (within 5 s) after it."""

    def __init__(self, timeout=60):
        super().__init__(timeout)
        self.opened = []

    async def end(self):
        conns = list(self.opened)
        self.opened.clear()
        await asyncio.wait_for(asyncio.gather(
            *(ws.close() for ws in conns), return_exceptions=True), 5)

    async def connect(self, broker, **kw):
        kw.setdefault("close_timeout", 1)
        ws = await connect(broker, **kw)
        self.opened.append(ws)
        return ws


# The test modules' shared runners (tests run one at a time).
ABORTING = AbortingRunner(timeout=40)
run_aborting = ABORTING.run
connect_aborting = ABORTING.connect
CLOSING = ClosingRunner(timeout=60)
run_closing = CLOSING.run
connect_closing = CLOSING.connect


# --- JSON over a websockets connection ---------------------------------------

async def recv_json(ws, timeout=WAIT, require_text=True):
    raw = await asyncio.wait_for(ws.recv(), timeout)
    if require_text:
        assert isinstance(raw, str), f"expected a text message, got {raw!r}"
    return json.loads(raw)


async def request(ws, msg, timeout=WAIT, require_text=True):
    await ws.send(dumps(msg))
    return await recv_json(ws, timeout, require_text)


async def recv_json_any(ws, timeout=WAIT):
    """recv_json for a reply that may come as a text or binary message."""
    return await recv_json(ws, timeout, require_text=False)


async def request_any(ws, msg, timeout=WAIT):
    return await request(ws, msg, timeout, require_text=False)


async def expect_silence(ws, seconds=0.3):
    try:
        raw = await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected message: {raw[:300]!r}")


async def wait_close_code(ws, timeout=WAIT):
    """Reads until the broker closes; returns the close code it sent."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as e:
        return e.code


async def subscribe(ws, topic, since=None, id=None, check_id=True):
    """Sends subscribe and returns the `subscribed` reply; anything else
    arriving first fails the test."""
    msg = {"op": "subscribe", "topic": topic}
    if since is not None:
        msg["since"] = since
    if id is not None:
        msg["id"] = id
    r = await request(ws, msg)
    assert r.get("op") == "subscribed", r
    assert r["topic"] == topic, r
    if check_id and id is not None:
        assert r["id"] == id, r
    return r


async def publish(ws, topic, data, id=None):
    """Publishes and returns the `published` reply."""
    msg = {"op": "publish", "topic": topic, "data": data}
    if id is not None:
        msg["id"] = id
    r = await request(ws, msg)
    assert r.get("op") == "published", r
    assert r["topic"] == topic, r
    return r


async def recv_messages(ws, topic, count, timeout=WAIT):
    out = []
    for _ in range(count):
        m = await recv_json(ws, timeout)
        assert m.get("op") == "message" and m["topic"] == topic, m
        out.append(m)
    return out


# --- JWTs made with the standard library -------------------------------------

def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims, secret, header=None, digest=hashlib.sha256, sig=None):
    """An HS256 JWT (or whatever header, digest and sig say) over claims;
    header and claims may be given as ready-made JSON strings."""
    header = header if header is not None else {"alg": "HS256",
                                                "typ": "JWT"}
    h = header if isinstance(header, str) else dumps(header)
    c = claims if isinstance(claims, str) else dumps(claims)
    signing_input = b64u(h) + "." + b64u(c)
    if sig is None:
        sig = b64u(hmac.new(secret.encode(), signing_input.encode(),
                            digest).digest())
    return signing_input + "." + sig


# --- /metrics ----------------------------------------------------------------

def metrics_values(broker):
    """{series: value} from GET /metrics (no format checks)."""
    st, _, body = http_request(broker, "GET", "/metrics")
    assert st == 200, (st, body)
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


# --- a blocking raw-socket /ws client ----------------------------------------

def raw_upgrade_socket(port, host, timeout=WAIT, rcvbuf=None, src=None):
    """A socket to the broker (from source address src, with SO_RCVBUF
    rcvbuf) that has sent a /ws upgrade with a fixed key; nothing read."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    return s


def parse_close(payload):
    """(code, reason) of a close frame's payload; (None, "") if empty."""
    if len(payload) >= 2:
        return (struct.unpack("!H", payload[:2])[0],
                payload[2:].decode("utf-8", "replace"))
    return (None, "")


class RawWS:
    """Minimal blocking WebSocket client that does only what it is told
    (never answers pings, never reads unless asked)."""

    def __init__(self, port, path="/ws", timeout=WAIT, rcvbuf=None,
                 check_accept=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
             "\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"closed during handshake: {buf!r}")
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        if check_accept:
            accept = base64.b64encode(
                hashlib.sha1(key.encode() + GUID).digest()).decode()
            assert accept.encode() in head, head

    def send_frame(self, opcode, payload, fin=True):
        """One masked frame (random mask key)."""
        self.sock.sendall(build_frame(opcode, payload, fin=fin))

    def send_json(self, obj):
        self.send_frame(OP_TEXT, dumps(obj).encode())

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self):
        """(fin, opcode, payload); EOFError when the connection ended."""
        b0, b1 = self._need(2)
        n = b1 & 0x7F
        assert not b1 & 0x80, "server frames must not be masked"
        if n == 126:
            n = struct.unpack("!H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._need(8))[0]
        return bool(b0 & 0x80), b0 & 0x0F, self._need(n)

    def recv_json(self):
        """The next frame, which must be a whole text frame, as JSON."""
        fin, op, payload = self.recv_frame()
        assert fin and op == OP_TEXT, (fin, op, payload[:100])
        return json.loads(payload)

    def recv_close(self):
        """Skips data frames; returns (code, reason) of the close frame, or
        None if the connection ended without one."""
        try:
            while True:
                _, op, payload = self.recv_frame()
                if op == 8:
                    return parse_close(payload)
        except (EOFError, ConnectionResetError):
            return None

    def close(self):
        self.sock.close()


def publish_frames(topic, ids, pad):
    """Masked text frames of publishes to topic, one per id, each with
    data {"n": id, "pad": pad}: for pipelining them in one write."""
    return b"".join(
        build_frame(OP_TEXT, json.dumps(
            {"op": "publish", "topic": topic, "id": i,
             "data": {"n": i, "pad": pad}}).encode())
        for i in ids)


# --- io_uring: what the kernel offers and what the broker uses ---------------

IO_URING_SETUP = 425  # the same number on every architecture since 5.1
IO_URING_PARAMS_SIZE = 120  # struct io_uring_params


def kernel_io_uring():
    """(True, "") if this process may create an io_uring instance, else
    (False, why): measured with the io_uring_setup system call itself (a
    seccomp filter or io_uring_disabled answers it as it would the
    broker, which runs as the same user on the same kernel)."""
    import ctypes
    import errno

    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(IO_URING_PARAMS_SIZE)
    fd = libc.syscall(ctypes.c_long(IO_URING_SETUP), ctypes.c_uint(1), params)
    if fd >= 0:
        os.close(fd)
        return True, ""
    err = ctypes.get_errno()
    why = (f"io_uring_setup(1) failed with {errno.errorcode.get(err, err)} "
           f"({os.strerror(err)})")
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            why += f"; kernel.io_uring_disabled = {f.read().strip()}"
    except OSError:
        pass
    return False, why


def proc_rings(pid):
    """io_uring instances the process holds (one per event loop using
    it), from /proc/PID/fd."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if "io_uring" in os.readlink(f"/proc/{pid}/fd/{fd}"):
                n += 1
        except OSError:
            pass
    return n


def require_io_uring(broker, loops):
    """For a broker started with io_uring = on and `loops` event loops:
    fails unless it was built with liburing, skips (saying why) only if
    the kernel offers no io_uring to this process, and fails if it could
    use io_uring but does not."""
    import pytest

    m = metrics_values(broker)
    if m["chorus_io_uring_built_in"] != 1:
        pytest.fail("chorusd was built without liburing, so io_uring cannot "
                    "be tested: install liburing-dev (scripts/deps.sh) and "
                    "configure the build again")
    ok, why = kernel_io_uring()
    if not ok:
        assert m["chorus_io_uring_rings"] == 0
        assert "io_uring not available" in broker.read_log()
        pytest.skip(f"the kernel offers no io_uring here: {why}")
    assert m["chorus_io_uring_rings"] == loops, (
        "built with liburing and the kernel offers io_uring, but the broker "
        "does not use it:\n" + broker.read_log())
    assert proc_rings(broker.proc.pid) == loops, "one ring per event loop"
