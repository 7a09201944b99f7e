"""SIGHUP re-reads the config file (issue 14, "Reload without dropping
anyone"): live keys (publish_rate, allowed_origins, auth_secret, log_level,
log_format, max_connections, history_size) change for new connections while
open ones keep going; a file that does not parse or validate keeps the old
config whole (checked by behaviour, not only the log); a key that needs a
restart (listen) is named in one line and the old listener keeps serving.
Several event loops, so that the new config reaches every loop's inbox."""
import asyncio
import json
import os
import re
import signal
import socket
import time

import pytest

from conftest import free_port, http_request

import chorus_helpers
from chorus_helpers import WAIT
from chorus_helpers import request_any as request
from chorus_helpers import run_aborting as run
from test_auth import bearer, claims, make_jwt, raw_handshake

SECRET_A = "reload-secret-A-0123456789abcdef-LEAK"
SECRET_B = "reload-secret-B-0123456789abcdef-LEAK"
LOOPS = 3


async def connect(broker, headers=None, origin=None):
    return await chorus_helpers.connect_aborting(
        broker, broker.url, extra_headers=headers or {}, origin=origin)


async def still_open(ws):
    r = await request(ws, {"op": "ping", "id": "alive"})
    assert r == {"op": "pong", "id": "alive"}, r


def reload(b, expect="SIGHUP: reloaded", **changes):
    """Rewrites the config with changes (None removes a key), sends SIGHUP
    and waits for the line that says how it went; returns the log since."""
    for k, v in changes.items():
        if v is None:
            b.conf.pop(k, None)
        else:
            b.conf[k] = v
    b.write_config()
    return hup(b, expect)


def hup(b, expect):
    since = len(b.read_log())
    os.kill(b.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + WAIT
    while True:
        log = b.read_log()[since:]
        # the last line of a reload: it worked, or nothing changed
        if re.search(r"SIGHUP: reloaded|keeping the (configuration|old "
                     r"certificate)", log):
            break
        assert time.monotonic() < deadline, "no reload line:\n" + log
        time.sleep(0.02)
    assert expect in log, log
    return log


async def publish_burst(ws, n, topic="rate"):
    """Sends n publishes at once; returns how many were accepted."""
    for i in range(n):
        await ws.send(json.dumps({"op": "publish", "topic": topic, "id": i,
                                  "data": i}))
    ok = 0
    for _ in range(n):
        r = await chorus_helpers.recv_json_any(ws)
        assert r["op"] in ("published", "error"), r
        if r["op"] == "error":
            assert r["code"] == "rate_limited", r
        ok += r["op"] == "published"
    return ok


def test_reload_publish_rate(make_broker):
    b = make_broker(threads=LOOPS)

    async def main():
        old = await connect(b)
        assert await publish_burst(old, 20) == 20
        log = reload(b, publish_rate=2, publish_burst=2)
        assert "publish_rate" in log and "publish_burst" in log, log
        # a connection on every loop gets the new bucket
        fresh = [await connect(b) for _ in range(LOOPS)]
        for ws in fresh:
            assert await publish_burst(ws, 10) == 2
        # the open one was not dropped; it is held to the new rate too
        await still_open(old)
        assert await publish_burst(old, 10) == 2
        reload(b, publish_rate=0, publish_burst=0)
        again = [await connect(b) for _ in range(LOOPS)]
        for ws in again + fresh + [old]:
            assert await publish_burst(ws, 20) == 20
    run(main())


def test_reload_allowed_origins(make_broker):
    b = make_broker(threads=LOOPS)
    good, bad = "https://good.example", "https://bad.example"

    async def main():
        old = await connect(b, origin=bad)
        reload(b, allowed_origins=f'"{good}"')
        for _ in range(LOOPS):
            assert raw_handshake(b, {"Origin": bad})[0] == 403
            assert raw_handshake(b, {"Origin": good})[0] == 101
        await still_open(old)  # admitted before: not dropped
        reload(b, allowed_origins=None)
        for _ in range(LOOPS):
            assert raw_handshake(b, {"Origin": bad})[0] == 101
        await still_open(old)
    run(main())


def test_reload_auth_secret(make_broker):
    b = make_broker(threads=LOOPS, auth_secret=SECRET_A, log_level="debug")
    tok_a = make_jwt(claims(), SECRET_A)
    tok_b = make_jwt(claims(), SECRET_B)

    async def main():
        olds = [await connect(b, bearer(tok_a)) for _ in range(LOOPS)]
        assert raw_handshake(b, bearer(tok_b))[0] == 401
        log = reload(b, auth_secret=SECRET_B)
        assert "auth_secret" in log, log
        for _ in range(LOOPS):
            assert raw_handshake(b, bearer(tok_a))[0] == 401
            assert raw_handshake(b, bearer(tok_b))[0] == 101
        # connections authenticated under the old secret keep going
        for ws in olds:
            await still_open(ws)
            r = await request(ws, {"op": "publish", "topic": "t", "data": 1})
            assert r["op"] == "published", r
        # anonymous access switched on live
        assert raw_handshake(b)[0] == 401
        reload(b, allow_anonymous="on")
        assert raw_handshake(b)[0] == 101
    run(main())
    b.stop()
    log = b.read_log()
    for s in (SECRET_A, SECRET_B, tok_a, tok_b, tok_a.split(".")[2]):
        assert s not in log, "secret leaked into the log"


def test_reload_broken_file_keeps_old_config(make_broker):
    b = make_broker(threads=LOOPS, allowed_origins='"https://good.example"')
    path = b.write_config()
    good_conf = open(path).read()

    async def main():
        ws = await connect(b)
        # a valid key before a bad one: neither may take effect
        with open(path, "w") as f:
            f.write(good_conf + "publish_rate = 1\nmax_connections = lots\n")
        bad_line = good_conf.count("\n") + 2
        log = hup(b, "keeping the configuration in use")
        assert f"broker.conf:{bad_line}: max_connections" in log, log
        # cross-key validation failures are refused the same way
        with open(path, "w") as f:
            f.write(good_conf + "publish_rate = 1\nping_interval = 10s\n"
                    "idle_timeout = 5s\n")
        log = hup(b, "keeping the configuration in use")
        assert "idle_timeout" in log, log
        # and so is a file that is gone
        os.unlink(path)
        log = hup(b, "keeping the configuration in use")
        assert "No such file" in log, log
        # the old config is whole: no rate limit, the same origins
        fresh = await connect(b)
        assert await publish_burst(fresh, 10) == 10
        assert await publish_burst(ws, 10) == 10
        assert raw_handshake(b, {"Origin": "https://bad.example"})[0] == 403
        assert raw_handshake(b, {"Origin": "https://good.example"})[0] == 101
    run(main())


def test_reload_listen_needs_restart(make_broker):
    b = make_broker(threads=LOOPS)
    old_port, new_port = b.port, free_port()

    async def main():
        ws = await connect(b)
        log = reload(b, listen=f"127.0.0.1:{new_port}", db_path="/nowhere.db",
                     publish_rate=1)
        lines = [ln for ln in log.splitlines() if "restart" in ln]
        assert len(lines) == 1, log
        assert "listen" in lines[0] and "db_path" in lines[0], lines
        # the live key in the same file was applied
        assert await publish_burst(ws, 5) == 1
        await still_open(ws)
        # the old listener still serves; nothing listens on the new port
        assert http_request(b, "GET", "/healthz")[0] == 200
        assert raw_handshake(b)[0] == 101
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", new_port), timeout=2)
    b.port = old_port
    run(main())
    # a reload that changes no restart key says nothing about restarts
    b.conf["listen"] = f"127.0.0.1:{old_port}"
    b.conf["db_path"] = os.path.join(b.workdir, "chorus.db")
    log = reload(b)
    assert "restart" not in log, log


def test_reload_log_level_and_format(make_broker):
    b = make_broker(threads=LOOPS, log_level="info")
    quiet = len(b.read_log())

    async def main():
        ws = await connect(b)
        await still_open(ws)
        assert "accepted from" not in b.read_log()[quiet:]
        reload(b, log_level="debug")
        ws2 = await connect(b)
        await still_open(ws2)
        assert re.search(r"debug conn \d+ \(127\.0\.0\.1:\d+\): accepted",
                         b.read_log()), b.read_log()[-1500:]
        since = len(b.read_log())
        reload(b, log_format="json", expect="")
        ws3 = await connect(b)
        await still_open(ws3)
        await ws3.close()
        await asyncio.sleep(0.2)
        lines = b.read_log()[since:].splitlines()
        assert lines
        objs = [json.loads(ln) for ln in lines]  # every line is JSON
        assert any("SIGHUP: reloaded" in o["msg"] for o in objs), objs
        assert any("conn" in o and "peer" in o for o in objs), objs
        await still_open(ws)
    run(main())


def test_reload_max_connections(make_broker):
    b = make_broker(threads=LOOPS)

    async def main():
        open_ = [await connect(b) for _ in range(3)]
        reload(b, max_connections=3)
        assert raw_handshake(b)[0] == 503
        for ws in open_:
            await still_open(ws)
        reload(b, max_connections=0)
        assert raw_handshake(b)[0] == 101
    run(main())


def test_reload_history_size(make_broker):
    b = make_broker(threads=LOOPS, history_size=100)
    for i in range(10):
        st, _, _ = http_request(b, "POST", "/api/publish/keep",
                                json.dumps(i).encode(),
                                {"Content-Type": "application/json"})
        assert st == 200
    reload(b, history_size=3)
    deadline = time.monotonic() + WAIT
    while True:
        st, _, body = http_request(b, "GET", "/api/history/keep?since=0")
        assert st == 200, body
        got = [m["data"] for m in json.loads(body)["messages"]]
        if got == [7, 8, 9]:
            break
        assert time.monotonic() < deadline, got
        time.sleep(0.1)


def test_reload_bad_certificate_keeps_everything(make_broker, workdir):
    """A certificate that does not load fails the whole reload: the other
    changes in the same file are not applied either."""
    from test_tls import make_cert, peer_fingerprint, fingerprint_of_file
    from test_tls import tls_broker, wss_connect
    cert, key = make_cert(workdir, "live")
    b = tls_broker(make_broker, cert, key, threads=LOOPS)
    fp = fingerprint_of_file(cert)

    async def main():
        wss = await wss_connect(b, cert)
        with open(cert, "w") as f:
            f.write("garbage\n")
        log = reload(b, expect="keeping the old certificate and the "
                     "configuration in use", publish_rate=1,
                     allowed_origins='"https://only.example"')
        assert cert in log, log
        ws = await connect(b, origin="https://other.example")
        assert await publish_burst(ws, 10) == 10
        assert await publish_burst(wss, 10) == 10
        assert peer_fingerprint(b.tls_port) == fp
    run(main())
