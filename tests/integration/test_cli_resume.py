"""chorus history, chorus sub --since, and chorus sub --resume/--reconnect
across broker restarts (graceful and kill -9) and CLI restarts: every
offset is printed exactly once, in order."""
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse

from chorus_helpers import metrics_values
from conftest import CHORUS_CLI, dumps, http_request, run_cli

WAIT = 10.0
FOREIGN_EPOCH = "0" * 32


def history(broker, topic, since=0, limit=None):
    q = f"?since={since}" + (f"&limit={limit}" if limit else "")
    status, _, body = http_request(
        broker, "GET",
        "/api/history/" + urllib.parse.quote(topic, safe="") + q)
    assert status == 200, (status, body)
    return json.loads(body)


def publish_lines(broker, topic, items):
    data = "".join(dumps(x) + "\n" for x in items).encode()
    r = run_cli("pub", "--url", broker.url, topic, "-", input=data,
                timeout=60)
    assert r.returncode == 0, r


def lines(out):
    return [json.loads(x) for x in out.decode().splitlines()]


def wait_for(pred, timeout=WAIT, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Sub:
    """A `chorus sub` process writing to files (never blocked on a pipe)."""

    def __init__(self, workdir, name, *args):
        self.out_path = os.path.join(workdir, name + ".out")
        self.err_path = os.path.join(workdir, name + ".err")
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([CHORUS_CLI, "sub", *args],
                                     stdout=self.out, stderr=self.err)

    def events(self):
        with open(self.out_path, "rb") as f:
            data = f.read()
        # only whole lines
        data = data[:data.rfind(b"\n") + 1]
        return lines(data)

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("chorus sub did not stop")
        self.out.close()
        self.err.close()
        return code


def read_state(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# ---- help ----

def test_help_mentions_new_options():
    r = run_cli("--help")
    assert r.returncode == 0 and b"history" in r.stdout, r
    r = run_cli("sub", "--help")
    assert r.returncode == 0, r
    for word in (b"--since", b"--resume", b"--reconnect", b"EPOCH:OFFSET"):
        assert word in r.stdout, (word, r.stdout)
    r = run_cli("history", "--help")
    assert r.returncode == 0, r
    for word in (b"--since", b"--limit", b"--all"):
        assert word in r.stdout, (word, r.stdout)


def test_usage_errors():
    assert run_cli("history").returncode == 2
    assert run_cli("history", "t", "--limit", "0").returncode == 2
    assert run_cli("history", "t", "--since", "x").returncode == 2
    assert run_cli("sub", "a", "b", "--since", "e:1").returncode == 2
    assert run_cli("sub", "a", "--since", "nocolon").returncode == 2
    assert run_cli("sub").returncode == 2


# ---- history ----

def test_history_output(broker):
    items = [{"i": i, "s": f"m {i}"} for i in range(1, 26)]
    items[3] = "plain string"
    items[4] = [1, 2.5, None, True]
    publish_lines(broker, "hist/a:b@c", items)
    r = run_cli("history", "--url", broker.url, "hist/a:b@c")
    assert r.returncode == 0, r
    got = lines(r.stdout)
    assert [m["offset"] for m in got] == list(range(1, 26))
    for m, want in zip(got, items):
        assert list(m) == ["topic", "offset", "ts", "data"], m
        assert m["topic"] == "hist/a:b@c" and m["data"] == want, m
        assert type(m["ts"]) is int and m["ts"] > 1.5e12, m
    # the same as the HTTP API says
    api = history(broker, "hist/a:b@c")
    assert [(m["offset"], m["ts"], m["data"]) for m in api["messages"]] == \
        [(m["offset"], m["ts"], m["data"]) for m in got]

    r = run_cli("history", "--url", broker.url, "hist/a:b@c", "--since",
                "10", "--limit", "5")
    assert r.returncode == 0, r
    assert [m["offset"] for m in lines(r.stdout)] == [11, 12, 13, 14, 15]

    r = run_cli("history", "--url", broker.url, "hist/a:b@c", "--since",
                "25")
    assert r.returncode == 0 and r.stdout == b"", r

    r = run_cli("history", "--url", broker.url, "nothing.here")
    assert r.returncode == 0 and r.stdout == b"", r


def test_history_paging(make_broker):
    broker = make_broker(history_size=0)  # default 1000 would trim
    N = 2345
    publish_lines(broker, "hist.page", [{"n": i} for i in range(1, N + 1)])
    # without --all: the broker's default page (100)
    r = run_cli("history", "--url", broker.url, "hist.page")
    assert r.returncode == 0, r
    assert [m["offset"] for m in lines(r.stdout)] == list(range(1, 101))
    for args in ([], ["--limit", "7"], ["--limit", "1000"],
                 ["--limit", "5000"], ["--since", "2000", "--limit", "50"]):
        r = run_cli("history", "--url", broker.url, "hist.page", "--all",
                    *args, timeout=60)
        assert r.returncode == 0, (args, r)
        got = lines(r.stdout)
        first = int(args[args.index("--since") + 1]) + 1 \
            if "--since" in args else 1
        assert [m["offset"] for m in got] == list(range(first, N + 1)), args
        assert all(m["data"] == {"n": m["offset"]} for m in got)


def test_history_errors(broker):
    r = run_cli("history", "--url", broker.url, "bad topic")
    assert r.returncode == 1, r
    assert b"400" in r.stderr and b"invalid_topic" in r.stderr, r
    r = run_cli("history", "--url", broker.url, "x" * 201)
    assert r.returncode == 1 and b"400" in r.stderr, r
    r = run_cli("history", "--url", f"ws://127.0.0.1:{broker.port}/x/ws",
                "t")
    assert r.returncode == 1 and b"404" in r.stderr, r
    b = broker.port
    broker.stop()
    r = run_cli("history", "--url", f"ws://127.0.0.1:{b}/ws", "t")
    assert r.returncode == 1 and r.stderr.strip(), r


# ---- sub --since ----

def test_sub_since_gets_exactly_the_missed_messages(broker, workdir):
    publish_lines(broker, "since.t", [{"n": i} for i in range(1, 11)])
    epoch = history(broker, "since.t", 10)["epoch"]
    s = Sub(workdir, "since", "--url", broker.url, "since.t", "--since",
            f"{epoch}:4")
    try:
        wait_for(lambda: len(s.events()) >= 6, what="replay")
        publish_lines(broker, "since.t", [{"n": 11}, {"n": 12}])
        wait_for(lambda: len(s.events()) >= 8, what="live messages")
        time.sleep(0.3)
    finally:
        assert s.stop(signal.SIGINT) == 0
    ev = s.events()
    assert [e["offset"] for e in ev] == list(range(5, 13)), ev
    for e in ev:
        assert e["op"] == "message" and e["topic"] == "since.t", e
        assert e["data"] == {"n": e["offset"]}, e
    assert "history gap" not in s.stderr(), s.stderr()


def test_sub_since_foreign_epoch_warns(broker, workdir):
    publish_lines(broker, "since.f", [1, 2, 3])
    s = Sub(workdir, "foreign", "--url", broker.url, "since.f", "--since",
            f"{FOREIGN_EPOCH}:2")
    try:
        wait_for(lambda: len(s.events()) >= 3, what="replay")
        wait_for(lambda: "history gap" in s.stderr(), what="warning")
        time.sleep(0.2)
    finally:
        assert s.stop() == 0
    assert [e["offset"] for e in s.events()] == [1, 2, 3]
    assert "chorus: topic since.f: history gap (recovered: false)" in \
        s.stderr(), s.stderr()


def test_sub_without_reconnect_exits_on_loss(broker, workdir):
    s = Sub(workdir, "plain", "--url", broker.url, "plain.t")
    # Stop the broker only once the CLI is subscribed (a fixed sleep lost
    # that race on a loaded machine).
    deadline = time.time() + WAIT
    while metrics_values(broker).get("chorus_subscriptions", 0) < 1:
        assert s.proc.poll() is None, s.stderr()
        assert time.time() < deadline, "chorus sub did not subscribe"
        time.sleep(0.05)
    broker.stop()
    assert s.proc.wait(WAIT) == 1
    s.out.close()
    s.err.close()
    assert "1001" in s.stderr(), s.stderr()


# ---- sub --resume / --reconnect ----

class Publisher(threading.Thread):
    """Publishes to the topics in turn, one `chorus pub` at a time, through
    broker restarts (failed attempts are retried)."""

    def __init__(self, broker, topics):
        super().__init__(daemon=True)
        self.broker, self.topics = broker, topics
        self.halt = threading.Event()
        self.acked = 0

    def run(self):
        i = 0
        while not self.halt.is_set():
            t = self.topics[i % len(self.topics)]
            r = subprocess.run([CHORUS_CLI, "pub", "--url", self.broker.url,
                                t, dumps({"i": i})], capture_output=True,
                               timeout=30)
            if r.returncode == 0:
                self.acked += 1
                i += 1
            else:
                time.sleep(0.02)

    def stop(self):
        self.halt.set()
        self.join(30)


def check_exactly_once(broker, events_by_run, topics, errs):
    """Every stored offset 1..N of every topic was printed once, in
    order, over all runs of the CLI."""
    for t in topics:
        newest = history(broker, t, 0, 1)["offset"]
        assert newest > 0, t
        got = [e["offset"] for run in events_by_run for e in run
               if e["topic"] == t]
        assert got == list(range(1, newest + 1)), (t, newest, got, errs)
        # the data printed is the stored data
        stored = {}
        since = 0
        while since < newest:
            page = history(broker, t, since, 1000)["messages"]
            for m in page:
                stored[m["offset"]] = m["data"]
            since = page[-1]["offset"]
        for run in events_by_run:
            for e in run:
                if e["topic"] == t:
                    assert e["data"] == stored[e["offset"]], e


def test_sub_resume_survives_restarts_and_kill9(broker, workdir):
    topics = ["res.a", "res/b"]
    state = os.path.join(workdir, "pos.json")
    s1 = Sub(workdir, "run1", "--url", broker.url, "--resume", state,
             *topics)
    pub = Publisher(broker, topics)
    runs, errs = [], []
    try:
        # subscribed to both: the file is written
        wait_for(lambda: set(read_state(state) or {}) == set(topics),
                 what="state file")
        pub.start()
        wait_for(lambda: len(s1.events()) >= 10, what="first messages")

        broker.stop()                    # graceful: 1001
        time.sleep(0.3)
        broker.start()
        n = len(s1.events())
        wait_for(lambda: len(s1.events()) >= n + 10, what="after restart")

        broker.kill9()                   # no close frame at all
        time.sleep(0.3)
        broker.start()
        n = len(s1.events())
        wait_for(lambda: len(s1.events()) >= n + 10, what="after kill -9")

        # stop the CLI while publishing goes on, then resume from the file
        assert s1.stop() == 0
        runs.append(s1.events())
        errs.append(s1.stderr())
        saved = read_state(state)
        for t in topics:
            last = max(e["offset"] for e in runs[0] if e["topic"] == t)
            assert saved[t]["offset"] == last, (saved, t, last)
        time.sleep(0.5)
        s2 = Sub(workdir, "run2", "--url", broker.url, "--resume", state)
        n = pub.acked
        wait_for(lambda: pub.acked >= n + 10, what="publishes")
        broker.kill9()
        time.sleep(0.2)
        broker.start()
        n = pub.acked
        wait_for(lambda: pub.acked >= n + 10, what="publishes")
    finally:
        pub.stop()
    try:
        newest = {t: history(broker, t, 0, 1)["offset"] for t in topics}

        def caught_up():
            last = {}
            for e in s2.events():
                last[e["topic"]] = e["offset"]
            return all(last.get(t) == newest[t] for t in topics)
        wait_for(caught_up, what="run 2 to catch up")
        time.sleep(0.3)
    finally:
        assert s2.stop() == 0
    runs.append(s2.events())
    errs.append(s2.stderr())
    for err in errs:
        assert "history gap" not in err and "missing" not in err, errs
    assert "reconnecting" in errs[0], errs
    check_exactly_once(broker, runs, topics, errs)
    saved = read_state(state)
    assert {t: saved[t]["offset"] for t in topics} == newest, saved


def test_sub_reconnect_in_memory(broker, workdir):
    """--reconnect without a file: same guarantee within one process."""
    topics = ["mem.x"]
    s = Sub(workdir, "mem", "--url", broker.url, "--reconnect", "-v",
            *topics)
    wait_for(lambda: "subscribed to mem.x" in s.stderr(), what="subscribed")
    pub = Publisher(broker, topics)
    pub.start()
    try:
        wait_for(lambda: len(s.events()) >= 5, what="messages")
        for _ in range(2):
            broker.kill9()
            time.sleep(0.4)  # publishes fail meanwhile; backoff grows
            broker.start()
            n = len(s.events())
            wait_for(lambda: len(s.events()) >= n + 5, what="resumed")
    finally:
        pub.stop()
    newest = history(broker, "mem.x", 0, 1)["offset"]
    wait_for(lambda: s.events() and s.events()[-1]["offset"] == newest,
             what="catch up")
    assert s.stop() == 0
    check_exactly_once(broker, [s.events()], topics, [s.stderr()])


def test_sub_resume_new_epoch(broker, workdir):
    """The database is lost: the epoch changes, sub warns and prints the
    new epoch's messages from its first one."""
    state = os.path.join(workdir, "pos.json")
    s = Sub(workdir, "epoch", "--url", broker.url, "--resume", state,
            "ep.t")
    try:
        wait_for(lambda: read_state(state), what="state file")
        publish_lines(broker, "ep.t", [1, 2, 3])
        wait_for(lambda: len(s.events()) == 3, what="messages")
        old_epoch = wait_for(lambda: (read_state(state) or {}).get(
            "ep.t", {}).get("offset") == 3 and read_state(state)["ep.t"],
            what="saved position")["epoch"]
        broker.stop()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(broker.db_path + suffix)
            except FileNotFoundError:
                pass
        broker.start()
        publish_lines(broker, "ep.t", ["a", "b"])
        wait_for(lambda: len(s.events()) == 5, what="new epoch")
        time.sleep(0.3)
    finally:
        assert s.stop() == 0
    ev = s.events()
    assert [(e["offset"], e["data"]) for e in ev] == \
        [(1, 1), (2, 2), (3, 3), (1, "a"), (2, "b")], ev
    assert "chorus: topic ep.t: history gap (recovered: false)" in \
        s.stderr(), s.stderr()
    saved = read_state(state)["ep.t"]
    assert saved["offset"] == 2 and saved["epoch"] != old_epoch, saved


def test_resume_file_keeps_other_topics_and_rejects_garbage(broker, workdir):
    state = os.path.join(workdir, "pos.json")
    other = {"other.topic": {"epoch": FOREIGN_EPOCH, "offset": 7}}
    with open(state, "w") as f:
        json.dump(other, f)
    publish_lines(broker, "keep.t", [1])
    s = Sub(workdir, "keep", "--url", broker.url, "--resume", state,
            "keep.t")
    try:
        wait_for(lambda: "keep.t" in (read_state(state) or {}),
                 what="state file")
        publish_lines(broker, "keep.t", [2])
        wait_for(lambda: len(s.events()) == 1, what="message")
    finally:
        assert s.stop() == 0
    saved = read_state(state)
    assert saved["other.topic"] == other["other.topic"], saved
    assert saved["keep.t"]["offset"] == 2, saved
    assert [e["offset"] for e in s.events()] == [2]
    assert not [f for f in os.listdir(workdir) if ".tmp." in f]

    with open(state, "w") as f:
        f.write("{not json")
    r = run_cli("sub", "--url", broker.url, "--resume", state, "keep.t",
                timeout=10)
    assert r.returncode == 1 and b"pos.json" in r.stderr, r
    with open(state) as f:
        assert f.read() == "{not json"


def test_sub_reconnect_after_slow_consumer_close(make_broker, workdir):
    """A stopped subscriber is closed with 1013; once it runs again it
    resumes with since and prints every message exactly once."""
    broker = make_broker(max_outbound_bytes="64k", history_size=0)
    s = Sub(workdir, "slow", "--url", broker.url, "--reconnect", "-v",
            "slow.t")
    wait_for(lambda: "subscribed to slow.t" in s.stderr(), what="subscribed")
    pad = "x" * 2000
    total = 0
    s.proc.send_signal(signal.SIGSTOP)
    try:
        for _ in range(20):
            publish_lines(broker, "slow.t",
                          [{"i": i, "p": pad}
                           for i in range(total + 1, total + 1001)])
            total += 1000
            if "slow consumer" in broker.read_log().lower():
                break
        else:
            raise AssertionError("the broker never closed the subscriber")
    finally:
        s.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: (s.events() or [{}])[-1].get("offset") == total,
             timeout=60, what="catch up")
    assert s.stop() == 0
    assert "1013" in s.stderr() and "reconnecting" in s.stderr(), s.stderr()
    check_exactly_once(broker, [s.events()], ["slow.t"], [s.stderr()])
