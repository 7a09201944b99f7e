"""Structured logs (issue 14, "Logs"): with log_format = json every line on
stderr is one JSON object with ts (RFC 3339, milliseconds, UTC), level and
msg, and conn / peer / topic / code where they apply, the conn id being the
one of the connection's debug lines and of its close line. Lines that
repeat per cause come at most once a second with the count of those left
out, in both formats."""
import asyncio
import json
import re
import time

import pytest

import chorus_helpers
from chorus_helpers import WAIT
from chorus_helpers import connect_aborting as connect
from chorus_helpers import recv_json_any as recv_json
from chorus_helpers import request_any as request
from chorus_helpers import run_aborting as run
from test_auth import raw_handshake

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def json_lines(broker):
    out = []
    for line in broker.read_log().splitlines():
        obj = json.loads(line)  # every line parses
        assert isinstance(obj, dict), line
        assert TS.match(obj["ts"]), line
        assert obj["level"] in ("error", "warn", "info", "debug"), line
        assert isinstance(obj["msg"], str) and obj["msg"], line
        out.append(obj)
    return out


async def flood(ws, n, topic):
    """n publishes at once; returns how many were refused."""
    for i in range(n):
        await ws.send(json.dumps({"op": "publish", "topic": topic,
                                  "data": i, "id": i}))
    refused = 0
    for _ in range(n):
        r = await recv_json(ws)
        refused += r["op"] == "error"
    return refused


def test_json_lines_and_fields(make_broker):
    b = make_broker(log_format="json", log_level="debug", threads=2,
                    publish_rate=1, publish_burst=1,
                    allowed_origins='"https://ok.example"')

    async def main():
        ws = await connect(b)
        r = await request(ws, {"op": "subscribe", "topic": "news"})
        assert r["op"] == "subscribed"
        assert await flood(ws, 5, "news/a:b@c") > 0
        await ws.close()
        assert raw_handshake(b, {"Origin": "https://evil.example"})[0] == 403
        await asyncio.sleep(0.2)
    run(main())
    b.stop()
    lines = json_lines(b)
    assert any(o["msg"].startswith("chorusd listening") for o in lines)
    # the rate-limited publish: its connection, peer, topic and code
    rate = [o for o in lines if "publish_rate" in o["msg"]]
    assert rate, lines
    assert rate[0]["topic"] == "news/a:b@c", rate
    assert rate[0]["code"] == "rate_limited", rate
    assert re.match(r"127\.0\.0\.1:\d+$", rate[0]["peer"]), rate
    conn = rate[0]["conn"]
    assert isinstance(conn, int) and conn > 0
    # the same id on the connection's debug lines, through its close
    mine = [o["msg"] for o in lines if o.get("conn") == conn]
    assert "accepted" in mine and "upgraded to /ws" in mine, mine
    assert any(m.startswith("closing with") for m in mine) or \
        "EOF from the peer" in mine, mine
    assert mine[-1] == "closed", mine
    assert all(o["peer"] == rate[0]["peer"] for o in lines
               if o.get("conn") == conn)
    origin = [o for o in lines if "Origin" in o["msg"]]
    assert origin and origin[0]["code"] == "forbidden", origin
    assert "peer" in origin[0] and "conn" in origin[0], origin
    # connection ids are unique across the loops
    accepted = [o["conn"] for o in lines if o["msg"] == "accepted"]
    assert len(accepted) == len(set(accepted)) >= 2, accepted


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_repeated_lines_once_a_second_with_count(make_broker, log_format):
    b = make_broker(log_format=log_format, log_level="info", threads=2,
                    publish_rate=1, publish_burst=1)
    since = len(b.read_log())

    async def main():
        conns = [await connect(b) for _ in range(2)]  # one per loop
        refused = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.5:
            for ws in conns:
                refused += await flood(ws, 20, "hot")
            await asyncio.sleep(0.05)
        # one more refusal a second later reports what the last second
        # left out
        await asyncio.sleep(1.1)
        refused += await flood(conns[0], 2, "hot")
        return refused, time.monotonic() - t0

    refused, elapsed = run(main())
    log = b.read_log()[since:]
    if log_format == "json":
        objs = [json.loads(ln) for ln in log.splitlines()]
        rate = [o for o in objs if "publish_rate" in o["msg"]]
        counts = [o.get("suppressed", 0) for o in rate]
    else:
        rate = [ln for ln in log.splitlines() if "publish_rate" in ln]
        counts = [int(m.group(1)) if m else 0 for m in
                  (re.search(r"\((\d+) similar suppressed\)$", ln)
                   for ln in rate)]
    # at most one a second for the whole broker, whatever the loops
    assert 2 <= len(rate) <= int(elapsed) + 2, rate
    assert counts[0] == 0 and all(c > 0 for c in counts[1:]), rate
    # every refusal is either a line or counted in the next one
    assert sum(counts) + len(rate) == refused, (counts, refused)
