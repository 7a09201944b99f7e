"""Large reads from a pipelining publisher (conn_tcp.c, on_readable): reads
of up to 128 KiB, until 512 KiB are in for the turn.
Whatever the chunking, every frame is decoded whole and in order, the turn
budget hands the rest to the next turn, a frame cut at a read boundary is
completed, a close frame at the end of a burst comes after every publish,
and flow control still pauses reading in the middle of a burst."""
import threading

import pytest

import chorus_helpers
from chorus_helpers import RawWS, publish_frames, parse_close
from wsraw import OP_CLOSE, build_frame


def subscribed(port, topic):
    sub = RawWS(port)
    sub.send_json({"op": "subscribe", "topic": topic, "id": "s"})
    assert sub.recv_json()["op"] == "subscribed"
    return sub


def send_in_background(ws, data):
    t = threading.Thread(target=ws.sock.sendall, args=(data,))
    t.start()
    return t


def expect_acks(ws, count):
    acks = [ws.recv_json() for _ in range(count)]
    assert [a.get("op") for a in acks] == ["published"] * count, acks[:3]
    assert [a["id"] for a in acks] == list(range(1, count + 1))
    offsets = [a["offset"] for a in acks]
    assert offsets == list(range(offsets[0], offsets[0] + count))


def expect_messages(sub, count):
    seen = [sub.recv_json() for _ in range(count)]
    assert [m["data"]["n"] for m in seen] == list(range(1, count + 1))


@pytest.mark.parametrize("pad_len", [10, 700, 5000])
def test_burst_of_many_turns_is_read_whole_and_in_order(make_broker,
                                                        pad_len):
    """Several MB in one write: many turns of ~640 KiB, frames of every
    size relative to the 128 KiB reads."""
    b = make_broker(history_size=0)
    count = 3_000_000 // (pad_len + 60)
    sub = subscribed(b.port, "burst")
    pub = RawWS(b.port)
    sender = send_in_background(pub, publish_frames("burst", range(1, count
                                                                   + 1),
                                                    "p" * pad_len))
    reader = threading.Thread(target=expect_messages, args=(sub, count))
    reader.start()
    expect_acks(pub, count)
    sender.join(timeout=60)
    reader.join(timeout=60)
    assert not reader.is_alive()
    m = chorus_helpers.metrics_values(b)
    assert m["chorus_messages_published_total"] == count
    pub.close()
    sub.close()


def test_frame_larger_than_a_turn_is_completed(make_broker):
    """A 600 KB publish spans the read chunks and the turn budget."""
    b = make_broker()
    sub = subscribed(b.port, "big")
    pub = RawWS(b.port)
    big = publish_frames("big", [1], "B" * 600_000)
    small = publish_frames("big", [2, 3], "s")
    pub.sock.sendall(big + small)
    expect_acks(pub, 3)
    seen = [sub.recv_json() for _ in range(3)]
    assert [m["data"]["n"] for m in seen] == [1, 2, 3]
    assert seen[0]["data"]["pad"] == "B" * 600_000
    pub.close()
    sub.close()


def test_close_after_a_burst_comes_after_every_ack(make_broker):
    """The close frame read in the same turn as the publishes before it
    is answered only after all of their acks; nothing is dropped."""
    b = make_broker()
    count = 4000
    pub = RawWS(b.port)
    closing = build_frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"bye")
    pub.sock.sendall(publish_frames("eof", range(1, count + 1), "e" * 100)
                     + closing)
    expect_acks(pub, count)
    fin, op, payload = pub.recv_frame()
    assert op == OP_CLOSE and parse_close(payload)[0] == 1000, payload
    pub.close()
    h = chorus_helpers.metrics_values(b)
    assert h["chorus_messages_published_total"] == count


def test_flow_control_pauses_in_the_middle_of_a_long_read(make_broker):
    """With a 16 KB bound the broker stops reading inside a turn's read
    and resumes on acks; every publish is answered once, in order."""
    b = make_broker(max_unacked_bytes="16k")
    count = 3000
    sub = subscribed(b.port, "fcb")
    pub = RawWS(b.port)
    sender = send_in_background(pub, publish_frames("fcb", range(1, count
                                                                 + 1),
                                                    "f" * 300))
    expect_acks(pub, count)
    expect_messages(sub, count)
    sender.join(timeout=60)
    m = chorus_helpers.metrics_values(b)
    assert m["chorus_publish_read_pauses_total"] >= 1, m
    pub.close()
    sub.close()
