"""The chorus CLI against the real broker: `chorus sub` prints one JSON line
per message event, `chorus pub` publishes an argument or stdin lines and
reports errors with a non-zero exit."""
import asyncio
import json
import os
import signal
import subprocess

from conftest import CHORUS_CLI, dumps, free_port, run_cli

from chorus_helpers import WAIT, connect, recv_json, request, run_simple


def run(coro, timeout=55):
    return run_simple(coro, timeout)


async def read_event(proc, timeout=WAIT):
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    assert line, "chorus sub ended its output"
    assert line.endswith(b"\n"), line
    return json.loads(line)


async def start_sub(broker, *topics):
    """Starts `chorus sub` and returns once it demonstrably receives
    messages on every topic: probes are published until each shows up."""
    proc = await asyncio.create_subprocess_exec(
        CHORUS_CLI, "sub", "--url", broker.url, *topics,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ws = await connect(broker)
    try:
        for t in topics:
            for attempt in range(100):
                r = await request(ws, {"op": "publish", "topic": t,
                                       "data": {"probe": attempt}})
                assert r["op"] == "published", r
                try:
                    ev = await read_event(proc, 0.1)
                except asyncio.TimeoutError:
                    continue
                assert ev["op"] == "message" and ev["topic"] == t, ev
                assert ev["data"] == {"probe": attempt}, ev
                break
            else:
                raise AssertionError("chorus sub never printed a message")
            # drain probes that were in flight
            while True:
                try:
                    ev = await read_event(proc, 0.3)
                except asyncio.TimeoutError:
                    break
                assert "probe" in ev["data"], ev
    finally:
        await ws.close()
    return proc


async def stop_sub(proc):
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), WAIT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError("chorus sub did not stop on SIGINT")
    return proc.returncode


async def cli(*args, input=None, timeout=20):
    proc = await asyncio.create_subprocess_exec(
        CHORUS_CLI, *args, stdin=subprocess.PIPE if input is not None
        else subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(input), timeout)
    return proc.returncode, out, err


def test_help():
    r = run_cli("--help")
    assert r.returncode == 0, r
    text = r.stdout + r.stderr
    assert b"pub" in text and b"sub" in text, text
    for cmd in ("pub", "sub"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0, r
        assert cmd.encode() in r.stdout + r.stderr


def test_sub_sees_pub(broker):
    async def main():
        proc = await start_sub(broker, "cli.a")
        cases = [("hello", "hello"),
                 ('{"a":1,"b":[true,null]}', {"a": 1, "b": [True, None]}),
                 ("[1,2]", [1, 2]),
                 ("h\u00e9llo", "h\u00e9llo")]
        offsets = []
        for arg, expected in cases:
            code, out, err = await cli("pub", "--url", broker.url,
                                       "cli.a", arg)
            assert code == 0, (arg, code, out, err)
            ev = await read_event(proc)
            assert ev["op"] == "message" and ev["topic"] == "cli.a", ev
            assert ev["data"] == expected, (arg, ev)
            assert type(ev["ts"]) is int
            offsets.append(ev["offset"])
        assert offsets == list(range(offsets[0], offsets[0] + len(cases)))
        assert await stop_sub(proc) == 0
    run(main())


def test_sub_several_topics(broker):
    async def main():
        proc = await start_sub(broker, "cli.x", "cli.y")
        for t in ("cli.y", "cli.x", "cli.z", "cli.y"):
            code, _, err = await cli("pub", "--url", broker.url, t, t)
            assert code == 0, err
        got = [(await read_event(proc))["data"] for _ in range(3)]
        assert got == ["cli.y", "cli.x", "cli.y"], got
        try:
            ev = await read_event(proc, 0.4)
            raise AssertionError(f"unexpected event {ev}")
        except asyncio.TimeoutError:
            pass
        assert await stop_sub(proc) == 0
    run(main())


def test_pub_invalid_topic(broker):
    r = run_cli("pub", "--url", broker.url, "bad topic", "x")
    assert r.returncode != 0, r
    assert b"invalid_topic" in r.stderr, r
    r = run_cli("pub", "--url", broker.url, "a#b", "x")
    assert r.returncode != 0, r
    assert b"invalid_topic" in r.stderr, r


def test_sub_invalid_topic(broker):
    r = run_cli("sub", "--url", broker.url, "bad topic", timeout=10)
    assert r.returncode != 0, r
    assert b"invalid_topic" in r.stderr, r


def test_pub_dead_port():
    port = free_port()
    r = run_cli("pub", "--url", f"ws://127.0.0.1:{port}/ws", "t", "x",
                timeout=20)
    assert r.returncode != 0, r
    assert r.stderr.strip(), r


def test_pub_wrong_path(broker):
    r = run_cli("pub", "--url", broker.url.replace("/ws", "/nope"), "t", "x")
    assert r.returncode != 0, r
    assert r.stderr.strip(), r


def test_pub_stdin_500_lines(broker):
    N = 500

    async def main():
        ws = await connect(broker)
        r = await request(ws, {"op": "subscribe", "topic": "lines"})
        assert r["op"] == "subscribed" and r["offset"] == 0, r
        lines = "".join(dumps({"i": i, "s": f"line {i}"}) + "\n"
                        for i in range(N)).encode()
        code, out, err = await cli("pub", "--url", broker.url, "lines", "-",
                                   input=lines)
        assert code == 0, (code, out, err)
        for i in range(N):
            m = await recv_json(ws, 10)
            assert m["op"] == "message" and m["offset"] == i + 1, m
            assert m["data"] == {"i": i, "s": f"line {i}"}, m
        await ws.close()
    run(main())


def test_pub_stdin_bare_words(broker):
    async def main():
        ws = await connect(broker)
        await request(ws, {"op": "subscribe", "topic": "words"})
        code, out, err = await cli("pub", "--url", broker.url, "words", "-",
                                   input=b"alpha\n42\n{\"k\":\"v\"}\nomega")
        assert code == 0, (code, out, err)
        got = [(await recv_json(ws))["data"] for _ in range(4)]
        assert got == ["alpha", 42, {"k": "v"}, "omega"], got
        await ws.close()
    run(main())


def test_pub_environment_url(broker):
    """$CHORUS_URL is the default --url."""
    env = dict(os.environ, CHORUS_URL=broker.url)
    r = subprocess.run([CHORUS_CLI, "pub", "envtopic", "x"], env=env,
                       capture_output=True, timeout=20)
    assert r.returncode == 0, r
