"""Error replies and error closes of /ws: every error code reachable without
auth, the connection surviving each error reply, and the close codes for
too-large messages (1009), invalid UTF-8 (1007) and binary frames (1003)."""
import asyncio
import json
import os
import socket
import struct

import pytest

from conftest import dumps, http_request

from chorus_helpers import RawWS, WAIT, connect, recv_json, run_simple, \
    wait_close_code


def run(coro, timeout=50):
    return run_simple(coro, timeout)


async def send_raw(ws, text, timeout=WAIT):
    await ws.send(text)
    return await recv_json(ws, timeout)


async def still_works(ws, tag="alive"):
    r = await send_raw(ws, dumps({"op": "ping", "id": tag}))
    assert r == {"op": "pong", "id": tag}, r


def check_error(r, code, id_=None, has_id=True):
    assert r.get("op") == "error", r
    assert r.get("code") == code, r
    assert isinstance(r.get("message"), str), r
    if has_id and id_ is not None:
        assert "id" in r and r["id"] == id_ and type(r["id"]) is type(id_), r
    else:
        assert "id" not in r, r


# --- bad_request ----------------------------------------------------------

NOT_OBJECTS = ["not json", "{", "", "   ", "[]", "[1,2]", "42", "\"str\"",
               "null", "true", "{\"op\":\"ping\"} trailing",
               "{\"op\":\"ping\",}"]


def test_bad_request_not_json_or_not_object(broker):
    async def main():
        ws = await connect(broker)
        for text in NOT_OBJECTS:
            r = await send_raw(ws, text)
            check_error(r, "bad_request", has_id=False)
            await still_works(ws)
        await ws.close()
    run(main())


def test_bad_request_op(broker):
    async def main():
        ws = await connect(broker)
        cases = [({"id": 1}, 1),
                 ({"id": "a", "topic": "t"}, "a"),
                 ({"op": 5, "id": 2}, 2),
                 ({"op": None, "id": 3}, 3),
                 ({"op": ["ping"], "id": "x"}, "x"),
                 ({"op": {"name": "ping"}, "id": 4}, 4),
                 ({"op": True}, None)]
        for msg, id_ in cases:
            r = await send_raw(ws, dumps(msg))
            check_error(r, "bad_request", id_)
            await still_works(ws)
        await ws.close()
    run(main())


BAD_IDS = [1.5, 1e3, True, False, None, {}, {"a": 1}, [], [1],
           "x" * 65, "\u00e9" * 33, "\u20ac" * 22]


@pytest.mark.parametrize("op", ["ping", "subscribe", "publish"])
def test_bad_request_id_not_echoed(broker, op):
    async def main():
        ws = await connect(broker)
        for bad in BAD_IDS:
            msg = {"op": op, "id": bad, "topic": "t", "data": 1}
            r = await send_raw(ws, dumps(msg))
            check_error(r, "bad_request", has_id=False)
            await still_works(ws)
        # boundary: 64 bytes is fine, whatever the character count
        for good in ["x" * 64, "\u00e9" * 32, "\u20ac" * 21 + "x"]:
            assert len(good.encode()) == 64
            r = await send_raw(ws, dumps({"op": "ping", "id": good}))
            assert r == {"op": "pong", "id": good}, r
        await ws.close()
    run(main())


def test_bad_request_topic(broker):
    async def main():
        ws = await connect(broker)
        for op in ("subscribe", "unsubscribe", "publish"):
            for i, topic in enumerate([5, None, ["a"], {"t": 1}, True, 1.5]):
                msg = {"op": op, "id": i, "topic": topic, "data": 1}
                r = await send_raw(ws, dumps(msg))
                check_error(r, "bad_request", i)
                await still_works(ws)
            r = await send_raw(ws, dumps({"op": op, "id": "m", "data": 1}))
            check_error(r, "bad_request", "m")
            await still_works(ws)
        await ws.close()
    run(main())


def test_bad_request_publish_without_data(broker):
    async def main():
        ws = await connect(broker)
        r = await send_raw(ws, dumps({"op": "publish", "topic": "t", "id": 1}))
        check_error(r, "bad_request", 1)
        await still_works(ws)
        # "data": null is a valid message
        r = await send_raw(ws, dumps({"op": "publish", "topic": "t", "id": 2,
                                      "data": None}))
        assert r == {"op": "published", "id": 2, "topic": "t", "offset": 1}, r
        await ws.close()
    run(main())


def test_bad_request_since(broker):
    async def main():
        ws = await connect(broker)
        r = await send_raw(ws, dumps({"op": "subscribe", "topic": "s"}))
        epoch = r["epoch"]
        bad = ["abc", 5, 0, True, [], [epoch, 0], {},
               {"epoch": epoch}, {"offset": 0},
               {"epoch": 5, "offset": 0}, {"epoch": None, "offset": 0},
               {"epoch": [epoch], "offset": 0},
               {"epoch": epoch, "offset": -1},
               {"epoch": epoch, "offset": "1"},
               {"epoch": epoch, "offset": 1.5},
               {"epoch": epoch, "offset": None},
               {"epoch": epoch, "offset": True}]
        for i, since in enumerate(bad):
            r = await send_raw(ws, dumps({"op": "subscribe", "topic": "s2",
                                          "id": i, "since": since}))
            check_error(r, "bad_request", i)
            await still_works(ws)
        # none of the refused requests subscribed to s2
        r = await send_raw(ws, dumps({"op": "unsubscribe", "topic": "s2",
                                      "id": "u"}))
        check_error(r, "not_subscribed", "u")
        # a well-formed since is accepted
        r = await send_raw(ws, dumps({"op": "subscribe", "topic": "s",
                                      "id": "ok",
                                      "since": {"epoch": epoch,
                                                "offset": 0}}))
        assert r["op"] == "subscribed" and r["id"] == "ok", r
        await ws.close()
    run(main())


# --- unknown_op / invalid_topic -------------------------------------------

def test_unknown_op(broker):
    async def main():
        ws = await connect(broker)
        for i, op in enumerate(["frobnicate", "Subscribe", "PING", "",
                                "pub", "subscribe ", "message", "pong"]):
            r = await send_raw(ws, dumps({"op": op, "id": i, "topic": "t"}))
            check_error(r, "unknown_op", i)
            await still_works(ws)
        r = await send_raw(ws, dumps({"op": "nope", "id": "sid"}))
        check_error(r, "unknown_op", "sid")
        r = await send_raw(ws, dumps({"op": "nope"}))
        check_error(r, "unknown_op", has_id=False)
        await ws.close()
    run(main())


INVALID_TOPICS = ["", "a" * 201, "a b", " a", "a\t", "caf\u00e9",
                  "\u4e2d", "a#b", "#", "a+b", "*", "a?b", "a%2Fb",
                  "a\\b", "a\"b", "a\nb", "a,b", "~"]


def test_invalid_topic(broker):
    async def main():
        ws = await connect(broker)
        for op in ("subscribe", "unsubscribe", "publish"):
            for i, topic in enumerate(INVALID_TOPICS):
                msg = {"op": op, "id": i, "topic": topic, "data": 1}
                r = await send_raw(ws, dumps(msg))
                check_error(r, "invalid_topic", i)
            await still_works(ws)
        # boundaries that are valid
        for topic in ["a" * 200, "a", "AZaz09._-:/@", "a/b:c@d.e_f-g"]:
            r = await send_raw(ws, dumps({"op": "subscribe", "topic": topic}))
            assert r["op"] == "subscribed" and r["topic"] == topic, r
        await ws.close()
    run(main())


def test_errors_do_not_affect_other_clients(broker):
    async def main():
        other = await connect(broker)
        r = await send_raw(other, dumps({"op": "subscribe", "topic": "o"}))
        assert r["op"] == "subscribed"
        bad = await connect(broker)
        texts = NOT_OBJECTS + [dumps({"op": "x"}), dumps({"id": 1.5}),
                               dumps({"op": "publish", "topic": "#"}),
                               dumps({"op": "publish", "topic": "o"})]
        for t in texts:
            r = await send_raw(bad, t)
            assert r["op"] == "error", r
        r = await send_raw(bad, dumps({"op": "publish", "topic": "o",
                                       "data": "after"}))
        assert r["op"] == "published" and r["offset"] == 1, r
        m = await recv_json(other)
        assert m["op"] == "message" and m["data"] == "after", m
        await still_works(other)
        await asyncio.gather(bad.close(), other.close())
    run(main())


# --- huge and deep inputs -------------------------------------------------

def test_huge_topic_name(broker):
    async def main():
        ws = await connect(broker)
        big = "a" * 1_000_000     # the request stays under the 1 MiB limit
        for op in ("subscribe", "publish"):
            r = await send_raw(ws, dumps({"op": op, "id": 1, "topic": big,
                                          "data": 1}), timeout=15)
            check_error(r, "invalid_topic", 1)
            await still_works(ws)
        await ws.close()
    run(main())


def test_deeply_nested_json(broker):
    async def main():
        ws = await connect(broker)
        for depth in (100_000, 10_000, 2_000):
            for open_, close in (("[", "]"), ("{\"a\":", "}")):
                data = open_ * depth + "1" + close * depth
                text = ('{"op":"publish","topic":"deep","id":1,"data":'
                        + data + "}")
                r = await send_raw(ws, text, timeout=15)
                # the broker may refuse it (a parser depth limit: then it
                # may not know the id) or store it, but must survive
                if r["op"] == "error":
                    assert r["code"] in ("bad_request", "too_large"), r
                    assert r.get("id", 1) == 1, r
                else:
                    assert r["op"] == "published" and r["id"] == 1, \
                        str(r)[:300]
                await still_works(ws)
        # a deep unknown field in a ping
        text = '{"op":"ping","id":2,"x":' + "[" * 50_000 + "]" * 50_000 + "}"
        r = await send_raw(ws, text, timeout=15)
        assert r["op"] in ("pong", "error") and r.get("id", 2) == 2, r
        await still_works(ws)
        await ws.close()
        assert http_request(broker, "GET", "/healthz")[0] == 200
    run(main())


# --- error closes ---------------------------------------------------------

def test_message_too_big_closes_1009(make_broker):
    b = make_broker(max_message_size="64k")

    async def main():
        other = await connect(b)
        r = await send_raw(other, dumps({"op": "subscribe", "topic": "big"}))
        assert r["op"] == "subscribed"

        # a single frame over the limit
        ws = await connect(b)
        await ws.send(dumps({"op": "publish", "topic": "big",
                             "data": "x" * 100_000}))
        assert await wait_close_code(ws) == 1009

        # fragments that are small but add up to more than the limit
        ws = await connect(b)
        head = '{"op":"publish","topic":"big","data":"'
        chunks = [head] + ["y" * 8192] * 10 + ['"}']
        await ws.send(iter(chunks))
        assert await wait_close_code(ws) == 1009

        # exactly at the limit is accepted
        ws = await connect(b)
        head = '{"op":"publish","topic":"big","id":1,"data":"'
        text = head + "z" * (65536 - len(head) - 2) + '"}'
        assert len(text.encode()) == 65536
        r = await send_raw(ws, text)
        assert r["op"] == "published" and r["offset"] == 1, r

        # nothing of the refused ones was published
        m = await recv_json(other)
        assert m["op"] == "message" and m["offset"] == 1, str(m)[:200]
        assert len(m["data"]) == 65536 - len(head) - 2
        await still_works(other)
        await asyncio.gather(ws.close(), other.close())
    run(main())


def _raw_ping_ok(port):
    r = RawWS(port)
    r.send_frame(1, b'{"op":"ping","id":"raw"}')
    _, op, payload = r.recv_frame()
    assert op == 1 and json.loads(payload) == {"op": "pong", "id": "raw"}
    r.close()


INVALID_UTF8 = [
    b'{"op":"ping","id":"\xff"}',
    b'{"op":"ping","id":"\xc0\xaf"}',            # overlong '/'
    b'{"op":"ping","id":"\xed\xa0\x80"}',        # UTF-16 surrogate
    b'{"op":"ping","id":"\xf4\x90\x80\x80"}',    # > U+10FFFF
    b'{"op":"ping","id":"\xe2\x82"}',            # truncated sequence
    b'\x80',
]


@pytest.mark.parametrize("payload", INVALID_UTF8)
def test_invalid_utf8_closes_1007(broker, payload):
    r = RawWS(broker.port)
    r.send_frame(1, payload)
    res = r.recv_close()
    r.close()
    assert res is not None and res[0] == 1007, res
    _raw_ping_ok(broker.port)


def test_invalid_utf8_across_fragments_closes_1007(broker):
    r = RawWS(broker.port)
    r.send_frame(1, b'{"op":"ping","id":"\xe2', fin=False)
    r.send_frame(0, b'\x28\xa1"}', fin=True)      # \xe2\x28: bad
    res = r.recv_close()
    r.close()
    assert res is not None and res[0] == 1007, res


def test_valid_utf8_split_across_fragments(broker):
    r = RawWS(broker.port)
    text = '{"op":"ping","id":"\u20ac\U0001F389"}'.encode()
    cut = text.index(b"\xe2") + 1                  # inside the euro sign
    cut2 = text.index(b"\xf0") + 2                 # inside the emoji
    r.send_frame(1, text[:cut], fin=False)
    r.send_frame(0, text[cut:cut2], fin=False)
    r.send_frame(0, text[cut2:], fin=True)
    _, op, payload = r.recv_frame()
    assert op == 1, (op, payload)
    assert json.loads(payload) == {"op": "pong",
                                   "id": "\u20ac\U0001F389"}, payload
    r.close()


def test_binary_frame_closes_1003(broker):
    async def main():
        ws = await connect(broker)
        await ws.send(b'{"op":"ping","id":1}')
        assert await wait_close_code(ws) == 1003
        ws = await connect(broker)
        await still_works(ws)
        await ws.close()
    run(main())


def test_truncated_frame_then_disconnect(broker):
    async def main():
        sub = await connect(broker)
        r = await send_raw(sub, dumps({"op": "subscribe", "topic": "tr"}))
        assert r["op"] == "subscribed"
        for _ in range(3):
            # header announcing 1000 bytes, then 10 of them, then gone
            r = RawWS(broker.port)
            r.sock.sendall(struct.pack("!BBH", 0x81, 0x80 | 126, 1000)
                           + os.urandom(4) + b"0123456789")
            r.close()
            # header cut in the middle
            r = RawWS(broker.port)
            r.sock.sendall(b"\x81\xfe\x03")
            r.close()
            # handshake cut in the middle
            s = socket.create_connection(("127.0.0.1", broker.port))
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgr")
            s.close()
            # reset instead of a FIN
            r = RawWS(broker.port)
            r.sock.sendall(b"\x81\x85abc")
            r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
            r.close()
        await asyncio.sleep(0.2)
        pub = await connect(broker)
        r = await send_raw(pub, dumps({"op": "publish", "topic": "tr",
                                       "data": "ok"}))
        assert r["op"] == "published", r
        m = await recv_json(sub)
        assert m["op"] == "message" and m["data"] == "ok", m
        await asyncio.gather(sub.close(), pub.close())
        assert http_request(broker, "GET", "/healthz")[0] == 200
    run(main())
