"""Server-Sent Events in cluster mode (engine = redis, a real
redis-server): whatever serves /ws serves /sse. A stream on one node gets
what is published on another, beside a /ws subscriber; it resumes on
another node by Last-Event-ID with every offset once; and when Redis is
rolled back (kill -9, restart from a snapshot) the stream, still open,
gets `subscribed` and `gap` for the new epoch, then its messages."""
import json
import time

from conftest import http_request
from chorus_helpers import RawWS
from cluster_helpers import make_cluster, make_redis  # noqa: F401 fixtures
from sse_helpers import SSE, messages_upto


def publish(node, topic, data):
    status, _, body = http_request(node, "POST", "/api/publish/" + topic,
                                   json.dumps(data).encode())
    return status, json.loads(body)


def publish_ok(node, topic, data):
    status, body = publish(node, topic, data)
    assert status == 200, body
    return body


def offsets(events):
    return [e.json()["offset"] for e in events if e.event == "message"]


def test_sse_across_nodes_and_resume_elsewhere(make_cluster):
    _, (a, b) = make_cluster(2)
    ws = RawWS(a.port)
    s = SSE(a.port, "multi")
    try:
        ws.send_json({"op": "subscribe", "topic": "multi"})
        assert ws.recv_json()["op"] == "subscribed"
        sub = s.next_event()
        assert sub.event == "subscribed", sub
        epoch = sub.json()["epoch"]
        for i in range(1, 11):
            assert publish_ok(b, "multi", {"i": i})["epoch"] == epoch
        got = messages_upto(s, 10, timeout=20)
        assert offsets(got) == list(range(1, 11))
        assert [e.id for e in got] == [f"{epoch}:{i}" for i in range(1, 11)]
        for i in range(1, 11):  # the /ws subscriber is served as before
            m = ws.recv_json()
            assert m["op"] == "message" and m["offset"] == i, m
        s.close()
        for i in range(11, 21):
            publish_ok(a, "multi", {"i": i})
        s = SSE(b.port, "multi", headers={"Last-Event-ID": f"{epoch}:7"})
        sub = s.next_event()
        assert sub.json() == {"topic": "multi", "epoch": epoch,
                              "offset": 20, "recovered": True,
                              "ping_interval_ms": 30000}, sub
        publish_ok(a, "multi", {"i": 21})
        assert offsets(messages_upto(s, 21, timeout=20)) == \
            list(range(8, 22))
    finally:
        ws.close()
        s.close()


def test_sse_epoch_change_under_the_stream(make_cluster, make_redis):
    redis = make_redis(persistence=["--save", "", "--appendonly", "no",
                                    "--dbfilename", "dump.rdb"])
    _, (a, b) = make_cluster(2, redis=redis)
    s = SSE(a.port, "roll")
    try:
        old = s.next_event().json()["epoch"]
        for i in range(1, 11):
            publish_ok(b, "roll", {"i": i})
            if i == 5:
                assert redis.command("SAVE") == "OK"
        assert offsets(messages_upto(s, 10, timeout=20)) == \
            list(range(1, 11))
        redis.kill9()
        redis.start()  # the snapshot: offsets 1..5 of the old epoch
        deadline = time.time() + 30
        while True:
            status, body = publish(b, "roll", {"after": 1})
            if status == 200:
                break
            assert time.time() < deadline, body
            time.sleep(0.1)
        new = body["epoch"]
        assert new != old and body["offset"] == 1
        # the stream stays open and says what happened
        evs = s.events_until(lambda e: e.event == "message" and
                             e.id == f"{new}:1", timeout=30)
        kinds = [e.event for e in evs]
        i = len(kinds) - 1 - kinds[::-1].index("subscribed")  # the last
        assert kinds[i + 1] == "gap", kinds
        assert evs[i].id == f"{new}:0"
        assert evs[i].json()["epoch"] == new
        assert evs[i].json()["recovered"] is False
        assert evs[i + 1].json()["epoch"] == new
        after = evs[i + 2:]
        assert [e.id for e in after] == [f"{new}:1"], after
        assert after[0].json()["data"] == {"after": 1}
        # a resume from the old epoch is not a recovery
        s.close()
        # Each of b's loops has its own Redis connections: the one this
        # stream lands on may still be reconnecting (503), as a client
        # would see it; try again as a client would.
        deadline = time.time() + 30
        while True:
            s = SSE(b.port, "roll", headers={"Last-Event-ID": f"{old}:10"})
            if s.status != 503 or time.time() > deadline:
                break
            s.close()
            time.sleep(0.1)
        assert s.status == 200, (s.status, s.read_body())
        assert s.next_event().json()["recovered"] is False
        gap = s.next_event()
        assert gap.event == "gap" and gap.json()["epoch"] == new
        assert offsets(messages_upto(s, 1)) == [1]
    finally:
        s.close()
