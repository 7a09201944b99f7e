"""Cluster-mode fixtures: a real redis-server (Debian's) on a free loopback
port with its own temp dir, and chorusd nodes with engine = redis pointed
at it. Everything is stopped by PID. Used by test_cluster*.py."""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import Broker, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """One redis-server process. persistence: extra arguments (default:
    none at all, `--save '' --appendonly no`)."""

    def __init__(self, workdir, persistence=None):
        self.dir = workdir
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.persistence = persistence or ["--save", "", "--appendonly", "no"]
        self.proc = None
        self.log_path = os.path.join(self.dir, "redis.log")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--daemonize", "no", "--logfile",
                self.log_path, *self.persistence]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited: " + self.read_log())
            try:
                if self.command("PING") == "PONG":
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start: " + self.read_log())

    def read_log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def command(self, *args, timeout=5):
        """One command over a fresh connection (RESP); returns the reply
        as str/int/list/None, raises RuntimeError on an error reply."""
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=timeout) as s:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            f = s.makefile("rb")
            return _read_reply(f)

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.send_signal(signal.SIGCONT)
        except ProcessLookupError:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill9(self):
        self.stop(signal.SIGKILL)


def _read_reply(f):
    line = f.readline()
    if not line:
        raise OSError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise OSError(f"bad reply {line!r}")


def cluster_node(workdir, name, redis_urls, **conf):
    """A Broker with engine = redis (not started); redis_urls is a list."""
    d = os.path.join(workdir, name)
    os.makedirs(d, exist_ok=True)
    b = Broker(d, engine="redis", **conf)
    del b.conf["db_path"]  # SQLite is not used (and refused) in this mode
    # The Broker writes "key = value" lines: several redis_url lines
    # need a list rendered by hand.
    b.redis_urls = list(redis_urls)
    orig = b.write_config

    def write_config():
        path = orig()
        with open(path, "a") as f:
            for u in b.redis_urls:
                f.write(f"redis_url = {u}\n")
        return path
    b.write_config = write_config
    return b


def check_stopped(b):
    code = b.stop()
    log = b.read_log()
    assert "ERROR: AddressSanitizer" not in log, log
    assert "runtime error:" not in log, log
    assert code in (0, -9, None), f"chorusd exit {code}\n{log}"


@pytest.fixture
def make_redis(workdir):
    """Factory: make_redis(persistence=None) starts a redis-server."""
    servers = []

    def make(persistence=None):
        r = RedisServer(os.path.join(workdir, f"redis{len(servers)}"),
                        persistence).start()
        servers.append(r)
        return r
    yield make
    for r in servers:
        r.stop()


@pytest.fixture
def make_cluster(workdir, make_redis):
    """Factory: make_cluster(n, redis=None, **conf) starts one redis-server
    (unless given one or a list) and n chorusd nodes; returns (redis
    list, nodes)."""
    nodes = []

    def make(n=3, redis=None, **conf):
        if redis is None:
            redis = [make_redis()]
        elif not isinstance(redis, list):
            redis = [redis]
        urls = [r.url for r in redis]
        made = []
        for _ in range(n):
            b = cluster_node(workdir, f"node{len(nodes)}", urls, **conf)
            nodes.append(b)
            made.append(b.start())
        return redis, made
    yield make
    for b in nodes:
        check_stopped(b)
