#!/usr/bin/python3
"""Bytes and broker CPU that permessage-deflate saves (or costs) in chorusd.

Starts one chorusd (compression = on, threads = 1, history on) on
127.0.0.1, pinned to CPU 0 (this script pins itself to CPU 1), and runs
phases against the same broker process:

  deflate  N subscribers that offer permessage-deflate (websockets default)
  plain    N subscribers with compression=None
  mixed    N/2 of each

Each phase: N subscribers on one topic, then M publishes of ~2 KB
compressible JSON over one plain WebSocket publisher (at most WINDOW
unacknowledged), then wait until every subscriber has all M messages.
Reported per phase: delta of chorus_sent_bytes_total (GET /metrics) and of
the broker's utime+stime (/proc/PID/stat), both divided by deliveries.
The publisher's acks are in both figures, identical in every phase.

Needs Debian's python3-websockets (10.x). Bounded: every wait has a timeout;
the broker is stopped by its PID.

  bench/compression.py --chorusd /tmp/build-bench/chorusd [-n 200] [-m 500]
"""
import argparse, asyncio, json, os, random, shutil, signal, socket, subprocess
import sys, tempfile, time, urllib.request

import websockets


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sent_bytes(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("chorus_sent_bytes_total"):
                return int(float(line.split()[-1]))
    raise RuntimeError("chorus_sent_bytes_total not in /metrics")


def payload(i, rnd):
    """~2 KB of JSON that looks like an API event: repeated keys, small values."""
    items = [{"sku": f"SKU-{rnd.randrange(10000):05d}", "name": "widget",
              "qty": rnd.randrange(1, 9), "price": round(rnd.uniform(1, 99), 2),
              "currency": "EUR", "warehouse": rnd.choice(["ams", "fra", "par"])}
             for _ in range(19)]
    d = {"seq": i, "type": "order.updated", "status": "shipped", "items": items}
    return d


async def subscriber(port, topic, deflate, m, ready, done_cb, stats):
    kw = {} if deflate else {"compression": None}
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=2**22,
                                  max_queue=None, **kw) as ws:
        stats["ext"].append(",".join(str(type(e).__name__) for e in ws.extensions))
        await ws.send(json.dumps({"op": "subscribe", "id": 1, "topic": topic}))
        while True:
            r = json.loads(await ws.recv())
            if r.get("op") == "subscribed":
                break
        ready()
        got = 0
        while got < m:
            r = json.loads(await ws.recv())
            if r.get("op") == "message":
                got += 1
        done_cb()


async def phase(name, port, pid, n, m, ndeflate, window, payloads, timeout):
    topic = f"cmp_{name}"
    stats = {"ext": []}
    nready = 0
    ndone = 0
    all_ready = asyncio.Event()
    all_done = asyncio.Event()

    def ready():
        nonlocal nready
        nready += 1
        if nready == n:
            all_ready.set()

    def done():
        nonlocal ndone
        ndone += 1
        if ndone == n:
            all_done.set()

    tasks = [asyncio.create_task(subscriber(port, topic, i < ndeflate, m, ready,
                                            done, stats)) for i in range(n)]
    await asyncio.wait_for(all_ready.wait(), timeout)
    negotiated = sum(1 for e in stats["ext"] if "PerMessageDeflate" in e)

    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", compression=None) as pub:
        await asyncio.sleep(0.2)
        b0, c0, t0 = sent_bytes(port), cpu_s(pid), time.monotonic()
        inflight = 0
        acked = 0
        sent = 0

        async def reader():
            nonlocal inflight, acked
            while acked < m:
                r = json.loads(await pub.recv())
                if r.get("op") == "published":
                    acked += 1
                    inflight -= 1
                elif r.get("op") == "error":
                    raise RuntimeError(f"publish error: {r}")

        rt = asyncio.create_task(reader())
        while sent < m:
            if inflight >= window:
                await asyncio.sleep(0.001)
                continue
            await pub.send(json.dumps({"op": "publish", "id": sent + 10,
                                       "topic": topic, "data": payloads[sent]}))
            sent += 1
            inflight += 1
        await asyncio.wait_for(rt, timeout)
        await asyncio.wait_for(all_done.wait(), timeout)
        t1 = time.monotonic()
        await asyncio.sleep(0.1)
        b1, c1 = sent_bytes(port), cpu_s(pid)
    for t in tasks:
        await t
    deliv = n * m
    return {"phase": name, "subs": n, "offered_deflate": ndeflate,
            "negotiated_deflate": negotiated, "deliveries": deliv,
            "sent_bytes": b1 - b0, "bytes_per_delivery": (b1 - b0) / deliv,
            "broker_cpu_s": round(c1 - c0, 3),
            "broker_cpu_us_per_delivery": (c1 - c0) * 1e6 / deliv,
            "wall_s": round(t1 - t0, 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chorusd", default="build/chorusd")
    ap.add_argument("-n", type=int, default=200, help="subscribers per phase")
    ap.add_argument("-m", type=int, default=500, help="messages per phase")
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--phases", default="deflate,plain,mixed,deflate,plain")
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()

    rnd = random.Random(42)
    payloads = [payload(i, rnd) for i in range(a.m)]
    size = sum(len(json.dumps(p)) for p in payloads) / a.m

    d = tempfile.mkdtemp(prefix="chorus-compr.")
    port = free_port()
    with open(f"{d}/chorus.conf", "w") as f:
        f.write(f"listen = 127.0.0.1:{port}\ndb_path = {d}/chorus.db\n"
                "threads = 1\ncompression = on\nlog_level = warn\n"
                "ping_interval = 0\nidle_timeout = 0\nmax_connections = 0\n")
    log = open(f"{d}/chorusd.log", "w")
    proc = subprocess.Popen(["taskset", "-c", "0", a.chorusd, "-c", f"{d}/chorus.conf"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        os.sched_setaffinity(0, {1})
    except OSError:
        pass
    results = []
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("chorusd exited: " + open(f"{d}/chorusd.log").read())
                time.sleep(0.05)
        for i, ph in enumerate(a.phases.split(",")):
            nd = {"deflate": a.n, "plain": 0, "mixed": a.n // 2}[ph]
            r = asyncio.run(phase(f"{ph}{i}", port, proc.pid, a.n, a.m, nd,
                                  a.window, payloads, a.timeout))
            r["phase"] = ph
            results.append(r)
            print("RESULT " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else
                                       f"{k}={v}" for k, v in r.items()), flush=True)
        print(f"payload: {size:.0f} B of JSON data per message (the 'message' frame "
              f"adds topic/offset/ts); {a.n} subscribers x {a.m} messages per phase")
        print("| phase | subs (deflate negotiated) | broker bytes sent | bytes/delivery | "
              "broker CPU s | CPU us/delivery | wall s |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['phase']} | {r['subs']} ({r['negotiated_deflate']}) | "
                  f"{r['sent_bytes']} | {r['bytes_per_delivery']:.0f} | "
                  f"{r['broker_cpu_s']:.2f} | {r['broker_cpu_us_per_delivery']:.2f} | "
                  f"{r['wall_s']:.2f} |")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(d, ignore_errors=True)
        else:
            print(f"kept {d}", file=sys.stderr)


if __name__ == "__main__":
    main()
