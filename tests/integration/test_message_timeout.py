"""message_timeout bounds the time one WebSocket message may take to
arrive: a frame trickled a byte at a time (each byte resetting the idle
timer) is closed with 1008 "message too slow"; a connection that is merely
idle between messages, or sends at a normal pace, is not."""
import time

from chorus_helpers import RawWS, parse_close
from wsraw import OP_TEXT, build_frame
from conftest import dumps


def test_trickled_frame_is_closed_with_1008(make_broker):
    b = make_broker(message_timeout="1s", ping_interval="0",
                    idle_timeout="0")
    ws = RawWS(b.port)
    frame = build_frame(OP_TEXT, dumps({"op": "ping", "id": 1}).encode())
    t0 = time.monotonic()
    close = None
    try:
        for i in range(len(frame)):
            ws.sock.sendall(frame[i:i + 1])
            time.sleep(0.2)
            if time.monotonic() - t0 > 1.3:
                break
        _, op, payload = ws.recv_frame()
        assert op == 8, (op, payload)
        close = parse_close(payload)
    finally:
        ws.close()
    assert close == (1008, "message too slow"), close
    assert time.monotonic() - t0 < 3
    assert "message_timeout" in b.read_log()


def test_idle_between_messages_and_fragments_in_time_are_fine(make_broker):
    b = make_broker(message_timeout="1s")
    ws = RawWS(b.port)
    try:
        ws.send_json({"op": "ping", "id": 1})
        assert ws.recv_json() == {"op": "pong", "id": 1}
        time.sleep(1.5)  # idle, no message open: not this timeout's business
        text = dumps({"op": "ping", "id": 2}).encode()
        ws.sock.sendall(build_frame(OP_TEXT, text[:5], fin=False))
        time.sleep(0.4)
        ws.sock.sendall(build_frame(0, text[5:], fin=True))
        assert ws.recv_json() == {"op": "pong", "id": 2}
    finally:
        ws.close()
