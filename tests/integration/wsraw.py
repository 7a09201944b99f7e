"""A small raw-socket WebSocket client (RFC 6455) for conformance tests.

Unlike a normal client library it lets a test build frames with arbitrary
FIN/RSV bits, opcodes, masks and declared lengths, send bytes in chunks with
pauses between them, and read the server's frames one by one with deadlines.
Every frame read from the server is checked against what RFC 6455 requires
of a server (unmasked, RSV bits clear, known opcode, control frames whole and
at most 125 bytes, valid close payload), so a test cannot pass while the
server misbehaves on the wire.

Typical use:

    with WSConn(port) as c:              # connects and does the handshake
        c.send_frame(OP_TEXT, b"hi")
        c.expect_message(OP_TEXT, b"hi")
        c.close_handshake(1000)          # close 1000 -> close 1000 -> TCP FIN
"""
import base64
import hashlib
import os
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
OP_NAMES = {OP_CONT: "cont", OP_TEXT: "text", OP_BINARY: "binary",
            OP_CLOSE: "close", OP_PING: "ping", OP_PONG: "pong"}

# Close codes a peer may legitimately put on the wire (RFC 6455 7.4).
_NEVER_SENT = {1004, 1005, 1006, 1015}

# Sentinel for "close frame with an empty payload" in expected close codes.
NO_CODE = None

DEFAULT_TIMEOUT = 5.0


class WSError(AssertionError):
    """Something the server did (or failed to do) that a test rejects."""


class Timeout(WSError):
    pass


class ConnectionClosed(WSError):
    """The TCP connection ended while a frame was expected."""


# ---------------------------------------------------------------- frames

def mask_bytes(data, key):
    """XORs data with the 4-byte key (fast: big-integer XOR)."""
    n = len(data)
    if n == 0:
        return b""
    reps = key * (n // 4 + 1)
    x = int.from_bytes(data, "big") ^ int.from_bytes(reps[:n], "big")
    return x.to_bytes(n, "big")


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True,
                mask_key=None, length=None):
    """Returns the bytes of one frame.

    rsv is the 3-bit RSV value as Autobahn numbers it (1 = RSV3, 2 = RSV2,
    4 = RSV1; bits 4..6 of the first byte). mask=False sends the payload
    unmasked (illegal from a client). length overrides the declared payload
    length (the payload given is still appended as is), for frames whose
    header announces more than is sent."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    payload = bytes(payload)
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        key = mask_key if mask_key is not None else os.urandom(4)
        return hdr + key + mask_bytes(payload, key)
    return hdr + payload


def close_payload(code=None, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    if code is None:
        return b""
    return struct.pack("!H", code) + reason


def fragments(payload, size):
    """Splits payload into pieces of size bytes (at least one piece)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if not payload:
        return [b""]
    return [payload[i:i + size] for i in range(0, len(payload), size)]


def build_fragmented(opcode, payload, size, mask=True):
    """The bytes of a message split into frames of size payload bytes."""
    parts = fragments(payload, size)
    out = []
    for i, p in enumerate(parts):
        out.append(build_frame(opcode if i == 0 else OP_CONT, p,
                               fin=(i == len(parts) - 1), mask=mask))
    return b"".join(out)


class Frame:
    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin = fin
        self.rsv = rsv
        self.opcode = opcode
        self.masked = masked
        self.payload = payload

    @property
    def close_code(self):
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    @property
    def close_reason(self):
        return self.payload[2:]

    def __repr__(self):
        name = OP_NAMES.get(self.opcode, "op%d" % self.opcode)
        p = self.payload
        shown = p[:40].hex() + ("..." if len(p) > 40 else "")
        extra = ""
        if self.opcode == OP_CLOSE:
            extra = " code=%s reason=%r" % (self.close_code,
                                             bytes(self.close_reason[:60]))
        return "<%s fin=%d rsv=%d masked=%d len=%d %s%s>" % (
            name, self.fin, self.rsv, self.masked, len(p), shown, extra)


def _check_server_frame(f):
    """Raises WSError unless f is a frame a server may send."""
    if f.masked:
        raise WSError("server sent a masked frame: %r" % f)
    if f.rsv:
        raise WSError("server sent a frame with RSV bits set: %r" % f)
    if f.opcode not in OP_NAMES:
        raise WSError("server sent a reserved opcode: %r" % f)
    if f.opcode >= 8:
        if not f.fin:
            raise WSError("server sent a fragmented control frame: %r" % f)
        if len(f.payload) > 125:
            raise WSError("server sent a control frame > 125 bytes: %r" % f)
    if f.opcode == OP_CLOSE:
        if len(f.payload) == 1:
            raise WSError("server close frame with a 1-byte payload")
        if len(f.payload) >= 2:
            code = f.close_code
            if code < 1000 or code in _NEVER_SENT or code >= 5000:
                raise WSError("server sent close code %d, which may not be "
                              "sent on the wire" % code)
            try:
                bytes(f.close_reason).decode("utf-8")
            except UnicodeDecodeError:
                raise WSError("server close reason is not UTF-8: %r" % f)


# ---------------------------------------------------------------- connection

class WSConn:
    """One client connection. Connects and does the opening handshake in
    the constructor (handshake=False to do only the TCP connect)."""

    def __init__(self, port, host="127.0.0.1", path="/echo",
                 timeout=DEFAULT_TIMEOUT, headers=(), handshake=True):
        self.host = host
        self.port = port
        self.path = path
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.frames = []          # every frame received, for diagnostics
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.response_headers = None
        if handshake:
            self.handshake(headers)

    # -- context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- opening handshake
    def handshake(self, headers=()):
        key = base64.b64encode(os.urandom(16))
        lines = ["GET %s HTTP/1.1" % self.path,
                 "Host: %s:%d" % (self.host, self.port),
                 "Upgrade: websocket",
                 "Connection: Upgrade",
                 "Sec-WebSocket-Key: %s" % key.decode(),
                 "Sec-WebSocket-Version: 13"]
        lines += list(headers)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.buf:
            if self.eof:
                raise WSError("connection closed during handshake; got %r"
                              % bytes(self.buf[:300]))
            if len(self.buf) > 65536:
                raise WSError("handshake response too long")
            self._fill(deadline, "the handshake response")
        end = self.buf.index(b"\r\n\r\n") + 4
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end]
        status, *hlines = head.split("\r\n")
        parts = status.split(" ", 2)
        if len(parts) < 2 or parts[1] != "101":
            raise WSError("handshake refused: %r" % head)
        hdrs = {}
        for h in hlines:
            if ":" in h:
                k, v = h.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        self.response_headers = hdrs
        want = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        if hdrs.get("sec-websocket-accept") != want:
            raise WSError("bad Sec-WebSocket-Accept in %r" % head)
        if hdrs.get("upgrade", "").lower() != "websocket":
            raise WSError("bad Upgrade header in %r" % head)
        if "upgrade" not in hdrs.get("connection", "").lower():
            raise WSError("bad Connection header in %r" % head)

    # -- sending
    def send(self, data, chop=None, pause=0.0, tolerate_closed=False):
        """Sends data, optionally in chunks of chop bytes with pause
        seconds between chunks. With tolerate_closed, a connection the
        server already closed (EPIPE/ECONNRESET) is not an error; returns
        False then, True when everything was sent."""
        data = bytes(data)
        chunks = [data] if not chop else [data[i:i + chop]
                                          for i in range(0, len(data), chop)]
        try:
            for i, c in enumerate(chunks):
                if i and pause:
                    time.sleep(pause)
                self.sock.sendall(c)
        except (BrokenPipeError, ConnectionResetError):
            if not tolerate_closed:
                raise
            return False
        return True

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, mask=True,
                   chop=None, pause=0.0, tolerate_closed=False, length=None):
        return self.send(build_frame(opcode, payload, fin=fin, rsv=rsv,
                                     mask=mask, length=length),
                         chop=chop, pause=pause,
                         tolerate_closed=tolerate_closed)

    def send_close(self, code=None, reason=b"", payload=None, **kw):
        if payload is None:
            payload = close_payload(code, reason)
        return self.send_frame(OP_CLOSE, payload, **kw)

    # -- receiving
    def _fill(self, deadline, what="data"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout("timed out waiting for %s" % what)
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 18)
        except socket.timeout:
            raise Timeout("timed out waiting for %s" % what)
        except ConnectionResetError:
            self.reset = True
            self.eof = True
            return
        if not data:
            self.eof = True
        else:
            self.buf += data

    def _parse(self):
        """A complete frame from the buffer, or None."""
        b = self.buf
        if len(b) < 2:
            return None
        b0, b1 = b[0], b[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(b) < 4:
                return None
            n = struct.unpack_from("!H", b, 2)[0]
            pos = 4
        elif n == 127:
            if len(b) < 10:
                return None
            n = struct.unpack_from("!Q", b, 2)[0]
            pos = 10
        masked = bool(b1 & 0x80)
        key = None
        if masked:
            if len(b) < pos + 4:
                return None
            key = bytes(b[pos:pos + 4])
            pos += 4
        if len(b) < pos + n:
            return None
        payload = bytes(b[pos:pos + n])
        del b[:pos + n]
        if masked:
            payload = mask_bytes(payload, key)
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, masked,
                     payload)

    def recv_frame(self, timeout=None, what="a frame"):
        """The next frame from the server. Raises Timeout, or
        ConnectionClosed if the server closes TCP first, or WSError if the
        frame is not one a server may send."""
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while True:
            f = self._parse()
            if f is not None:
                self.frames.append(f)
                _check_server_frame(f)
                return f
            if self.eof:
                raise ConnectionClosed(
                    "server closed TCP (%s) while waiting for %s; %d stray "
                    "bytes buffered; frames so far: %r" % (
                        "reset" if self.reset else "FIN", what,
                        len(self.buf), self.frames))
            self._fill(deadline, what)

    def try_recv_frame(self, timeout):
        """The next frame, or None if none arrives within timeout."""
        try:
            return self.recv_frame(timeout)
        except Timeout:
            return None

    def expect_message(self, opcode, payload, timeout=None):
        """The next frame must be the unfragmented echo of a message."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        what = "%s message of %d bytes" % (OP_NAMES[opcode], len(payload))
        f = self.recv_frame(timeout, what)
        if f.opcode != opcode or not f.fin:
            raise WSError("expected %s as one frame, got %r" % (what, f))
        if f.payload != payload:
            raise WSError("%s: payload differs (got %d bytes %r..., "
                          "want %r...)" % (what, len(f.payload),
                                           f.payload[:40], payload[:40]))
        return f

    def expect_pong(self, payload=b"", timeout=None):
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        f = self.recv_frame(timeout, "pong %r" % payload[:40])
        if f.opcode != OP_PONG:
            raise WSError("expected pong %r, got %r" % (payload[:40], f))
        if f.payload != payload:
            raise WSError("pong payload %r, want %r" % (f.payload, payload))
        return f

    def expect_close(self, codes, timeout=2.0, reply=True,
                     allow_reset=True, tcp_timeout=2.0):
        """The next frame must be a close with a code in codes (an int or
        a list; NO_CODE stands for an empty close payload). Then, after
        replying with a close (as a client would, unless reply=False), the
        server must close TCP with nothing more sent. allow_reset accepts
        an RST instead of a FIN (fine when we had sent data the server
        never read). Returns the close frame."""
        if isinstance(codes, int) or codes is None:
            codes = [codes]
        codes = list(codes)
        what = "close %s" % "/".join("empty" if c is None else str(c)
                                    for c in codes)
        f = self.recv_frame(timeout, what)
        if f.opcode != OP_CLOSE:
            raise WSError("expected %s, got %r first" % (what, f))
        if f.close_code not in codes:
            raise WSError("expected %s, got %r" % (what, f))
        if reply:
            self.send_close(f.close_code, tolerate_closed=True)
        self.expect_tcp_closed(tcp_timeout, allow_reset=allow_reset)
        return f

    def expect_tcp_closed(self, timeout=2.0, allow_reset=False):
        """The server must close TCP within timeout, without sending any
        further frame."""
        deadline = time.monotonic() + timeout
        while True:
            f = self._parse()
            if f is not None:
                self.frames.append(f)
                raise WSError("server sent %r after its close frame" % f)
            if self.eof:
                break
            try:
                self._fill(deadline, "the server to close TCP")
            except Timeout:
                raise Timeout("server did not close TCP within %.1fs after "
                              "the close frame" % timeout)
        if self.buf:
            raise WSError("%d stray bytes after the close frame: %r" % (
                len(self.buf), bytes(self.buf[:40])))
        if self.reset and not allow_reset:
            raise WSError("server reset TCP instead of closing it cleanly")

    def expect_nothing(self, duration):
        """Nothing may arrive (no frame, no close) within duration."""
        f = self.try_recv_frame(duration)
        if f is not None:
            raise WSError("expected nothing for %.1fs, got %r"
                          % (duration, f))

    def close_handshake(self, code=1000, reason=b"", accept=None,
                        timeout=2.0, allow_reset=False):
        """Client-initiated close: sends close(code), expects the server's
        close (code 1000 or the same code; accept overrides) and TCP
        closed by the server."""
        if accept is None:
            accept = [1000] if code in (None, 1000) else [1000, code]
            if code is None:
                accept = [NO_CODE, 1000]
        self.send_close(code, reason)
        return self.expect_close(accept, timeout=timeout, reply=False,
                                 allow_reset=allow_reset)


def echo_roundtrip(port, path="/echo", timeout=DEFAULT_TIMEOUT):
    """A fresh connection: one text and one binary message echoed, then a
    clean close. Raises WSError on any deviation."""
    with WSConn(port, path=path, timeout=timeout) as c:
        c.send_frame(OP_TEXT, "fresh echo \u00e9\U0001F600")
        c.expect_message(OP_TEXT, "fresh echo \u00e9\U0001F600")
        c.send_frame(OP_BINARY, b"\x00\xff\x80")
        c.expect_message(OP_BINARY, b"\x00\xff\x80")
        c.close_handshake(1000)
