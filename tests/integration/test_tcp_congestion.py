"""tcp_congestion: the congestion control of the connections chorusd
accepts, on both listeners (README, "TCP congestion control"). What the
kernel gave each accepted socket is read back with `ss -ti` (iproute2),
which shows it from the broker's side; reno is used because every Linux
kernel has it built in and it is neither Debian's default (cubic) nor
the usual tuned one (bbr)."""
import os
import re
import socket
import subprocess
import time

import pytest

from chorus_helpers import WAIT
from conftest import Broker, http_request
from test_reload import reload
from test_startup import start_failing
from test_tls import make_cert

SYSTEM_CC = "/proc/sys/net/ipv4/tcp_congestion_control"


def accepted_cc(port):
    """The congestion control of each established socket whose local port
    is port (the broker's side of every connection to it)."""
    r = subprocess.run(["ss", "-Htni", "state", "established",
                        f"( sport = :{port} )"],
                       capture_output=True, text=True, timeout=10, check=True)
    # one line per socket, then its indented info line, which starts with
    # the algorithm's name
    return [m.group(1) for m in re.finditer(r"^\s+([a-z0-9_]+)\s",
                                            r.stdout, re.M)]


def open_connections(port, n=2):
    socks = [socket.create_connection(("127.0.0.1", port), timeout=WAIT)
             for _ in range(n)]
    deadline = time.monotonic() + WAIT
    while len(accepted_cc(port)) < n:
        assert time.monotonic() < deadline, accepted_cc(port)
        time.sleep(0.02)
    return socks


def close_all(socks):
    for s in socks:
        s.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_accepted_connections_use_it(make_broker, workdir, threads):
    cert, key = make_cert(workdir, "server")
    tls_port = Broker(workdir).port
    b = make_broker(tcp_congestion="reno", threads=threads,
                    tls_listen=f"127.0.0.1:{tls_port}", tls_cert=cert,
                    tls_key=key)
    for port in (b.port, tls_port):
        socks = open_connections(port)
        try:
            assert accepted_cc(port) == ["reno", "reno"]
        finally:
            close_all(socks)
    # and the connections serve as usual; the start line names it
    assert http_request(b, "GET", "/healthz")[0] == 200
    assert "thread" in b.read_log() and ", tcp_congestion reno)" in \
        b.read_log(), b.read_log()


def test_without_it_the_systems_default(make_broker):
    with open(SYSTEM_CC) as f:
        system = f.read().strip()
    b = make_broker()
    socks = open_connections(b.port, 1)
    try:
        assert accepted_cc(b.port) == [system]
    finally:
        close_all(socks)


@pytest.mark.parametrize("value,message", [
    ("no-such-cc", '"no-such-cc" is not available here (No such file or '
                   'directory); see '
                   '/proc/sys/net/ipv4/tcp_available_congestion_control'),
    ("renorenorenoreno", '"renorenorenoreno" is too long for a congestion '
                         'control name'),
])
def test_unknown_name_is_a_config_error(workdir, value, message):
    b = Broker(workdir, tcp_congestion=value)
    code, out = start_failing(b)
    assert code == 1, out
    cfg = os.path.join(workdir, "broker.conf")
    line = list(b.conf).index("tcp_congestion") + 1
    assert f"{cfg}:{line}: tcp_congestion: {message}" in out, out


def test_changed_by_reload_needs_a_restart(make_broker):
    b = make_broker(tcp_congestion="reno")
    log = reload(b, tcp_congestion="cubic")
    lines = [ln for ln in log.splitlines() if "restart" in ln]
    assert len(lines) == 1 and "tcp_congestion" in lines[0], log
    socks = open_connections(b.port, 1)
    try:
        assert accepted_cc(b.port) == ["reno"]
    finally:
        close_all(socks)
