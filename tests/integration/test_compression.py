"""permessage-deflate (RFC 7692) with compression = on: negotiation, shared
compressed fan-out, inflating compressed publishes, limits, and what it
saves on a compressible payload."""
import asyncio
import json
import socket
import zlib

import websockets

from conftest import http_request

BIG = {"text": "the quick brown fox jumps over the lazy dog " * 200}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def sent_bytes(broker):
    _, _, body = http_request(broker, "GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith("chorus_sent_bytes_total "):
            return int(line.split()[1])
    raise AssertionError("no chorus_sent_bytes_total")


async def subscribe(ws, topic):
    await ws.send(json.dumps({"op": "subscribe", "topic": topic}))
    r = json.loads(await ws.recv())
    assert r["op"] == "subscribed", r


def test_negotiated_only_when_on(make_broker):
    off = make_broker()
    on = make_broker(compression="on")

    async def main():
        async with websockets.connect(off.url) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response_headers
        async with websockets.connect(on.url) as ws:
            ext = ws.response_headers["Sec-WebSocket-Extensions"]
            assert ext.startswith("permessage-deflate"), ext
            assert "server_no_context_takeover" in ext, ext
        async with websockets.connect(on.url, compression=None) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response_headers
    run(main())


def test_compressed_and_plain_subscribers_get_the_same(make_broker):
    b = make_broker(compression="on")

    async def main():
        async with websockets.connect(b.url) as z, \
                websockets.connect(b.url, compression=None) as plain, \
                websockets.connect(b.url) as pub:
            await subscribe(z, "t")
            await subscribe(plain, "t")
            for i in range(30):
                # the publisher compresses too: the broker inflates it
                await pub.send(json.dumps({"op": "publish", "topic": "t",
                                           "data": BIG, "id": i}))
                r = json.loads(await pub.recv())
                assert r == {"op": "published", "id": i, "topic": "t",
                             "offset": i + 1}, r
            for ws in (z, plain):
                for i in range(30):
                    m = json.loads(await ws.recv())
                    assert m["offset"] == i + 1 and m["data"] == BIG
    run(main())


def test_saves_bytes_on_compressible_payloads(make_broker):
    b = make_broker(compression="on")

    async def deliver(compression):
        before = sent_bytes(b)
        async with websockets.connect(b.url, compression=compression) as s, \
                websockets.connect(b.url) as pub:
            await subscribe(s, "save")
            for i in range(20):
                await pub.send(json.dumps({"op": "publish", "topic": "save",
                                           "data": BIG}))
                await pub.recv()
            for i in range(20):
                await s.recv()
        return sent_bytes(b) - before

    plain = run(deliver(None))
    packed = run(deliver("deflate"))
    # 20 messages of ~9 KB of repetitive text: well under a quarter.
    assert packed * 4 < plain, (packed, plain)


def raw_compressed_frame(payload, opcode=0x1):
    """A masked frame with RSV1 set carrying payload as given."""
    mask = b"\x01\x02\x03\x04"
    head = bytes([0x80 | 0x40 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    body = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return head + mask + body


def raw_pmd_connection(broker):
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert b"101" in head.split(b"\r\n")[0] and b"permessage-deflate" in head
    return s


def deflate_raw(data):
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def close_code(sock):
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    i = data.find(b"\x88")
    assert i >= 0, data
    return int.from_bytes(data[i + 2:i + 4], "big")


def test_corrupt_compressed_data_closes_1007(make_broker):
    b = make_broker(compression="on")
    s = raw_pmd_connection(b)
    s.sendall(raw_compressed_frame(b"\xff\xfe\xfd not deflate"))
    assert close_code(s) == 1007
    s.close()


def test_invalid_utf8_inside_compressed_text_closes_1007(make_broker):
    b = make_broker(compression="on")
    s = raw_pmd_connection(b)
    s.sendall(raw_compressed_frame(deflate_raw(b'{"op":"ping","x":"\xc3\x28"}')))
    assert close_code(s) == 1007
    s.close()


def test_inflated_size_is_bounded_1009(make_broker):
    b = make_broker(compression="on", max_message_size="64k")
    s = raw_pmd_connection(b)
    bomb = deflate_raw(b'{"op":"ping","pad":"' + b"a" * 1_000_000 + b'"}')
    assert len(bomb) < 64 * 1024
    s.sendall(raw_compressed_frame(bomb))
    assert close_code(s) == 1009
    s.close()


def test_compressed_request_gets_a_reply(make_broker):
    b = make_broker(compression="on")
    s = raw_pmd_connection(b)
    s.sendall(raw_compressed_frame(deflate_raw(b'{"op":"ping","id":3}')))
    data = b""
    while b'"pong"' not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    # replies go uncompressed (RSV1 clear)
    assert data[0] == 0x81, data
    assert json.loads(data[2:]) == {"op": "pong", "id": 3}
    s.close()
