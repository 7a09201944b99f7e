"""Shared fixtures: start the real chorusd on a free loopback port with a
generated config and a fresh SQLite file, and stop it by PID."""
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

CHORUSD = os.environ.get("CHORUSD", "build/chorusd")
CHORUS_CLI = os.environ.get("CHORUS_CLI", "build/chorus")
TMP_ROOT = os.environ.get("CHORUS_TMP", tempfile.gettempdir())

# What a sanitizer prints when it finds something: ASan, LeakSanitizer and
# TSan headers, and UBSan's "runtime error:" lines.
SANITIZER_REPORT = re.compile(
    r"(ERROR|WARNING|FATAL): (Address|Leak|Thread)Sanitizer|runtime error:")


def sanitizer_report(log):
    """The first sanitizer report in a chorusd log or stderr, or None."""
    m = SANITIZER_REPORT.search(log)
    return log[max(0, m.start() - 200):] if m else None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listens_on(pid, port):
    """Whether process pid has a TCP socket listening on port (Linux)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            col = row.split()
            if (col[3] == "0A" and int(col[1].rsplit(":", 1)[1], 16) == port
                    and col[9] in inodes):
                return True
    return False


class Broker:
    """One chorusd process. Config keys come from **conf; the database
    lives in a per-test directory so restarts keep their history. Unless a
    test says otherwise it runs two event loops, whatever the machine's
    core count (the default, threads = 0, is one per core): connections
    then alternate between loops, so that every test also crosses them
    (forwarded publishes, blocks and acks between loops, GET /metrics
    summing another loop's counters), which the TSan pass checks."""

    def __init__(self, workdir, **conf):
        self.workdir = workdir
        self.port = free_port()
        self.conf = {
            "listen": f"127.0.0.1:{self.port}",
            "db_path": os.path.join(workdir, "chorus.db"),
            "log_level": "debug",
            "threads": 2,
        }
        self.conf.update({k: v for k, v in conf.items()})
        self.proc = None
        self.log_path = os.path.join(workdir, "chorusd.log")

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self):
        return self.conf["db_path"]

    def write_config(self):
        path = os.path.join(self.workdir, "broker.conf")
        with open(path, "w") as f:
            for k, v in self.conf.items():
                f.write(f"{k} = {v}\n")
        return path

    def start(self, wait=True):
        # free_port() can race with another test taking the same port
        # before chorusd binds it: then pick another and try again (only
        # on a first start; a restart must keep its port).
        for attempt in range(5):
            cfg = self.write_config()
            self.log = open(self.log_path, "ab")
            self.proc = subprocess.Popen([CHORUSD, "-c", cfg],
                                         stdout=self.log, stderr=self.log)
            if not wait:
                return self
            try:
                self.wait_healthy()
                return self
            except RuntimeError:
                if (self.started or attempt == 4 or
                        "Address already in use" not in self.read_log()):
                    raise
                self.port = free_port()
                self.conf["listen"] = f"127.0.0.1:{self.port}"
        return self

    @property
    def started(self):
        return getattr(self, "_started", False)

    def wait_healthy(self, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("chorusd exited with %s:\n%s" %
                                   (self.proc.returncode, self.read_log()))
            try:
                with urllib.request.urlopen(self.http + "/healthz",
                                            timeout=1) as r:
                    # The answer must come from this process: another
                    # test's broker may hold the port while this one is
                    # still starting (it then fails to bind, and retries).
                    if r.status == 200 and listens_on(self.proc.pid,
                                                      self.port):
                        self._started = True
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("chorusd did not become healthy:\n" +
                           self.read_log())

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Stops the broker by its PID and returns its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()


@pytest.fixture
def workdir():
    os.makedirs(TMP_ROOT, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=TMP_ROOT) as d:
        yield d


@pytest.fixture
def make_broker(workdir):
    """Factory: make_broker(**conf) starts a broker; all are stopped at the
    end of the test, and a broker that died with a sanitizer report or a
    crash fails the test."""
    brokers = []

    def make(**conf):
        b = Broker(workdir, **conf).start()
        brokers.append(b)
        return b

    yield make
    for b in brokers:
        code = b.stop()
        log = b.read_log()
        assert sanitizer_report(log) is None, log
        assert code in (0, -9, None), f"chorusd exit {code}\n{log}"


@pytest.fixture
def broker(make_broker):
    return make_broker()


def http_request(broker, method, path, body=None, headers=None, timeout=5):
    """Returns (status, headers, body bytes) without raising on 4xx/5xx."""
    req = urllib.request.Request(broker.http + path, data=body,
                                 method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def run_cli(*args, input=None, timeout=20):
    return subprocess.run([CHORUS_CLI, *args], input=input,
                          capture_output=True, timeout=timeout)


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"))
