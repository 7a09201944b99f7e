"""Cluster mode behind a load balancer: Debian's nginx (nginx-light) on a
loopback port in front of two nodes, with README's configuration (the
WebSocket upgrade headers). A client through it subscribes, and resumes
after the node it was on stops."""
import asyncio
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

from conftest import free_port
from chorus_helpers import metrics_values, recv_json, request
import chorus_helpers
from cluster_helpers import make_cluster, make_redis  # noqa: F401 fixtures

RUNNER = chorus_helpers.AbortingRunner(timeout=60)
run = RUNNER.run
connect = RUNNER.connect

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def readme_nginx_conf():
    """The nginx example of README "Running a cluster"."""
    with open(README) as f:
        text = f.read()
    m = re.search(r"## Running a cluster.*?```nginx\n(.*?)```", text, re.S)
    assert m, "README has no nginx example under Running a cluster"
    return m.group(1)


def start_nginx(workdir, port, upstreams):
    site = readme_nginx_conf()
    servers = "".join(f"    server 127.0.0.1:{p};\n" for p in upstreams)
    site = re.sub(r"(upstream chorus \{\n)(?:\s*server [^\n]*\n)+",
                  lambda m: m.group(1) + servers, site)
    site = re.sub(r"listen \d+;", f"listen 127.0.0.1:{port};", site)
    prefix = os.path.join(workdir, "nginx")
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log {prefix}/logs/access.log;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
{site}
}}
""")
    proc = subprocess.Popen([NGINX, "-p", prefix, "-c", conf, "-g",
                             "daemon off;"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        assert proc.poll() is None, open(f"{prefix}/logs/error.log").read()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",
                                        timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("nginx did not start")


class Front:
    """What connect() needs of a broker, for the nginx address."""

    def __init__(self, port):
        self.url = f"ws://127.0.0.1:{port}/ws"


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx not installed")
def test_client_through_nginx_resumes_after_its_node_stops(make_cluster,
                                                           workdir):
    _, (a, b) = make_cluster(2)
    port = free_port()
    nginx = start_nginx(workdir, port, [a.port, b.port])
    front = Front(port)
    try:
        async def main():
            ws = await connect(front)
            r = await request(ws, {"op": "subscribe", "topic": "lb"})
            epoch = r["epoch"]
            pub = await connect(front)
            for i in range(5):
                await request(pub, {"op": "publish", "topic": "lb",
                                    "data": i})
            got = [await recv_json(ws) for _ in range(5)]
            assert [m["offset"] for m in got] == [1, 2, 3, 4, 5]
            on = a if metrics_values(a).get("chorus_subscriptions") else b
            other = b if on is a else a
            on.stop()  # closes its clients with 1001
            code = await chorus_helpers.wait_close_code(ws)
            assert code == 1001, code
            # published meanwhile through the node that is left
            other_ws = await connect(other)
            for i in range(5, 8):
                await request(other_ws, {"op": "publish", "topic": "lb",
                                         "data": i})
            ws = await connect(front)  # nginx sends it to the other node
            r = await request(ws, {"op": "subscribe", "topic": "lb",
                                   "since": {"epoch": epoch, "offset": 5}})
            assert r["op"] == "subscribed" and r["recovered"] is True, r
            got = [await recv_json(ws) for _ in range(3)]
            assert [m["data"] for m in got] == [5, 6, 7]
        run(main())
    finally:
        nginx.terminate()
        nginx.wait(10)
