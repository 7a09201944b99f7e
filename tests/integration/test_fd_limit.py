"""The open-file limit (RLIMIT_NOFILE), set low for chorusd in the test:
at start the soft limit is raised to the hard one and max_connections is
lowered to what the limit allows, with a log line. At the limit itself
(max_connections = 0), connections are not left hanging in the backlog:
each is accepted with the spare descriptor, answered 503 and closed, and
counted as chorus_connections_rejected_total{cause="fd_limit"}; the log
says so at most once a second, with the count of lines held back."""
import re
import resource
import select
import socket
import subprocess
import time

import pytest

from conftest import CHORUSD, Broker, http_request, sanitizer_report
from chorus_helpers import metrics_values

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def limited(workdir):
    """limited(soft, hard, **conf): a chorusd started with that
    RLIMIT_NOFILE; stopped by PID at the end."""
    started = []

    def start(soft, hard, **conf):
        b = Broker(workdir, **conf)
        cfg = b.write_config()
        b.log = open(b.log_path, "ab")

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

        b.proc = subprocess.Popen([CHORUSD, "-c", cfg], stdout=b.log,
                                  stderr=b.log, preexec_fn=limit)
        started.append(b)
        b.wait_healthy()
        return b

    yield start
    for b in started:
        code = b.stop()
        log = b.read_log()
        assert sanitizer_report(log) is None, log
        assert code == 0, log


def open_many(b, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", b.port), timeout=5)
        socks.append(s)
    return socks


def answers(socks, b, timeout=5):
    """For each socket: 503 (refused at once, then closed) or 200 (its
    /healthz answered: it was accepted). Nothing may hang."""
    # the 503s are out once the set of sockets with something to read
    # stops growing (bounded: an accepted one times out after 10 s)
    readable, stable_since = [], time.monotonic()
    deadline = stable_since + 5
    while time.monotonic() < deadline and \
            time.monotonic() - stable_since < 0.7:
        time.sleep(0.1)
        now, _, _ = select.select(socks, [], [], 0)
        if len(now) != len(readable):
            readable, stable_since = now, time.monotonic()
    for s in socks:
        if s not in readable:  # nothing came: it must have been accepted
            s.sendall(HEALTH)
    out = []
    for s in socks:
        s.settimeout(timeout)
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 "), (len(out), head, b.read_log())
        out.append(int(head.split()[1]))
    return out


def test_at_the_fd_limit_refused_with_503(limited):
    b = limited(48, 64, max_connections=0, threads=1)
    log = b.read_log()
    assert "open-file limit raised from 48 to 64" in log, log
    assert re.search(r"max_connections = 0: the open-file limit \(64\) "
                     r"allows about \d+ connections", log), log
    t0 = time.monotonic()
    socks = open_many(b, 90)
    got = answers(socks, b)
    refused = got.count(503)
    assert set(got) <= {200, 503}, got
    assert refused >= 90 - 64, got
    assert got.count(200) >= 10, got
    time.sleep(1.1)  # the next log line is due
    more = open_many(b, 3)
    got2 = answers(more, b)
    # Refused while every descriptor is taken. Once, under ThreadSanitizer,
    # a descriptor was free again by then and let one in: allow that one.
    late = got2.count(503)
    assert set(got2) <= {200, 503} and late >= 2, got2
    elapsed = time.monotonic() - t0
    for s in socks + more:
        s.close()
    time.sleep(0.3)
    m = metrics_values(b)
    assert m['chorus_connections_rejected_total{cause="fd_limit"}'] == \
        refused + late, m
    log = b.read_log()
    lines = [ln for ln in log.splitlines()
             if "open-file limit (64) reached: refusing connections with "
                "503" in ln]
    # At most a line a second, and no refusal lost: each line counts itself
    # plus those held back since the line before, however the refusals fell
    # across seconds on a loaded machine. The first late refusal is logged
    # (a second has passed) with every earlier one; the others may still
    # be held back.
    assert 2 <= len(lines) <= elapsed + 1, lines
    held = [re.search(r"\((\d+) similar suppressed\)", ln) for ln in lines]
    assert held[0] is None, lines
    accounted = len(lines) + sum(int(h.group(1)) for h in held if h)
    assert refused + 1 <= accounted <= refused + late, lines
    assert "Too many open files" not in log, log


def test_max_connections_lowered_to_the_fd_limit(limited):
    b = limited(64, 64, threads=1)  # max_connections: 10000 by default
    log = b.read_log()
    m = re.search(r"max_connections \(10000\) exceeds what the open-file "
                  r"limit \(64\) allows, \d+ descriptors being kept for the "
                  r"broker's own files: lowered to (\d+)", log)
    assert m, log
    allowed = int(m.group(1))
    socks = open_many(b, allowed + 5)
    got = answers(socks, b)
    assert got.count(200) == allowed and got.count(503) == 5, got
    for s in socks:
        s.close()
    time.sleep(0.3)
    values = metrics_values(b)
    assert values['chorus_connections_rejected_total'
                  '{cause="max_connections"}'] == 5, values
    assert values['chorus_connections_rejected_total'
                  '{cause="fd_limit"}'] == 0, values
