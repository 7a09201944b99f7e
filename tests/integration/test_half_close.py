"""A client that half-closes (shutdown(SHUT_WR), a FIN with no WebSocket
close frame) after sending its publishes still gets every answer that is
due: the HTTP response of a publish waiting for its commit, and the
`published` ack of every WebSocket publish sent before the FIN. Then the
broker closes the connection."""
import json
import socket
import struct
import time

import chorus_helpers
from chorus_helpers import RawWS, publish_frames
from conftest import http_request

WAIT = chorus_helpers.WAIT


def read_to_eof(sock):
    """Everything the broker sends until it closes the connection."""
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk


def http_publish_then_fin(port, topic, n):
    body = json.dumps({"n": n}).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    try:
        s.sendall((f"POST /api/publish/{topic} HTTP/1.1\r\n"
                   f"Host: 127.0.0.1:{port}\r\n"
                   "Content-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        s.shutdown(socket.SHUT_WR)
        return read_to_eof(s)
    finally:
        s.close()


def test_http_publish_then_half_close_gets_its_response(make_broker):
    b = make_broker()
    for n in range(1, 6):
        reply = http_publish_then_fin(b.port, "hc.http", n)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), reply
        assert json.loads(body)["offset"] == n, reply
    st, _, body = http_request(b, "GET", "/api/history/hc.http")
    assert st == 200
    assert [m["data"]["n"] for m in json.loads(body)["messages"]] == \
        list(range(1, 6))


def test_pipelined_http_requests_before_fin_are_all_answered(make_broker):
    b = make_broker()
    body = b'{"x":1}'
    req = (f"POST /api/publish/hc.pipe HTTP/1.1\r\nHost: h\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    s = socket.create_connection(("127.0.0.1", b.port), timeout=WAIT)
    try:
        s.sendall(req * 3)
        s.shutdown(socket.SHUT_WR)
        reply = read_to_eof(s)
    finally:
        s.close()
    assert reply.count(b"HTTP/1.1 200") == 3, reply


def test_websocket_fin_without_close_frame_keeps_every_ack(make_broker):
    b = make_broker()
    count = 200
    ws = RawWS(b.port)
    try:
        ws.sock.sendall(publish_frames("hc.ws", range(1, count + 1), "p"))
        ws.sock.shutdown(socket.SHUT_WR)
        acks = []
        try:
            while True:
                fin, op, payload = ws.recv_frame()
                assert op == 1, (op, payload)
                acks.append(json.loads(payload))
        except EOFError:
            pass
    finally:
        ws.close()
    assert [(a["op"], a["id"], a["offset"]) for a in acks] == \
        [("published", i, i) for i in range(1, count + 1)]


def test_reset_is_an_error_not_an_eof(make_broker):
    """A TCP reset (ECONNRESET) drops the connection as a socket error;
    only a clean FIN counts as a half-close that still gets answers."""
    b = make_broker(log_level="debug")
    ws = RawWS(b.port)
    ws.send_json({"op": "ping", "id": 1})
    assert ws.recv_json() == {"op": "pong", "id": 1}
    ws.send_json({"op": "ping", "id": 2})  # its pong makes the reset sure
    time.sleep(0.2)
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                       struct.pack("ii", 1, 0))
    ws.sock.close()  # unread data + linger 0: RST
    deadline = time.monotonic() + WAIT
    while "socket error" not in b.read_log():
        assert time.monotonic() < deadline, b.read_log()[-2000:]
        time.sleep(0.05)
    log = b.read_log()
    assert "reset" in log.lower(), log[-2000:]
    assert "EOF from the peer" not in log, log[-2000:]
