"""A blocking Server-Sent Events client for the /sse tests: a raw socket
(plain or TLS) that sends GET /sse/{topic} with chosen headers, reads the
response head, then parses the stream as the HTML standard's EventSource
does (lines ended by CR, LF or CRLF; `field: value`; a blank line
dispatches; comments kept apart), remembering the last event id."""
import json
import socket
import ssl
import time
import urllib.parse

from chorus_helpers import WAIT


class Event:
    def __init__(self, event, data, id):
        self.event = event
        self.data = data
        self.id = id

    def json(self):
        return json.loads(self.data)

    def __repr__(self):
        return f"Event({self.event!r}, {self.data[:200]!r}, id={self.id!r})"


class SSE:
    def __init__(self, port, topic, query="", headers=None, host="127.0.0.1",
                 tls_ca=None, rcvbuf=None, timeout=WAIT):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        raw.connect((host, port))
        if tls_ca:
            ctx = ssl.create_default_context(cafile=tls_ca)
            raw = ctx.wrap_socket(raw, server_hostname="localhost")
        self.sock = raw
        path = "/sse/" + urllib.parse.quote(topic, safe="")
        if query:
            path += "?" + query
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}",
                 "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        self.eof = False
        self.status, self.headers = self._read_head()
        self.body = b""  # what came after the head, for error replies
        self.comments = []
        self.retry = None
        self.last_id = ""
        self._event, self._data, self._id = "", [], None
        self._text = ""

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf += chunk

    def _read_head(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
            if self.eof:
                raise AssertionError(f"no response head: {self.buf!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        return status, headers

    def read_body(self):
        """The whole body of a non-stream reply (it carries a length)."""
        n = int(self.headers.get("content-length", "0"))
        while len(self.buf) < n and not self.eof:
            self._fill()
        return self.buf[:n]

    def _lines(self):
        """Complete lines in what was read (a CR at the very end waits, in
        case an LF follows)."""
        self._text += self.buf.decode("utf-8")
        self.buf = b""
        while True:
            cut = min((i for i in (self._text.find("\r"),
                                   self._text.find("\n")) if i >= 0),
                      default=-1)
            if cut < 0 or (self._text[cut] == "\r" and
                           cut + 1 == len(self._text) and not self.eof):
                return
            line = self._text[:cut]
            skip = 2 if self._text[cut:cut + 2] == "\r\n" else 1
            self._text = self._text[cut + skip:]
            yield line

    def _parse(self, line):
        """One line; returns an Event when it dispatches one."""
        if line == "":
            if self._id is not None:
                self.last_id = self._id
            ev = None
            if self._data:
                ev = Event(self._event or "message", "\n".join(self._data),
                           self.last_id)
            self._event, self._data, self._id = "", [], None
            return ev
        if line.startswith(":"):
            self.comments.append(line[1:].lstrip(" "))
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self._id = value
        elif field == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def next_event(self, timeout=WAIT):
        """The next dispatched event, or None at the end of the stream."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self._lines():
                ev = self._parse(line)
                if ev:
                    return ev
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no event within %.1fs" % timeout)
            self.sock.settimeout(left)
            try:
                self._fill()
            except socket.timeout:
                raise TimeoutError("no event within %.1fs" % timeout)

    def events_until(self, pred, timeout=WAIT):
        """Events up to and including the first for which pred is true."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next_event(max(0.01, deadline - time.monotonic()))
            if ev is None:
                raise AssertionError(f"stream ended after {out[-5:]!r}")
            out.append(ev)
            if pred(ev):
                return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def offset_of(ev):
    return int(ev.id.rsplit(":", 1)[1])


def messages_upto(stream, offset, timeout=WAIT):
    """The events until the message with that offset; returns the
    message events."""
    evs = stream.events_until(
        lambda e: e.event == "message" and e.json()["offset"] >= offset,
        timeout)
    return [e for e in evs if e.event == "message"]
