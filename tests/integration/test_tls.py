"""TLS listener (issue 4, "TLS"): throwaway certificates made with the
openssl CLI; wss:// and https:// on the same routes; `chorus --cacert`;
a certificate chain; TLS 1.2 minimum, no compression, AEAD suites; a
plain-TCP client on the TLS port refused cleanly; bad cert/key files stop
startup with a message naming the file; SIGHUP reloads cert and key
without dropping connections, and keeps the old ones when the new are
broken."""
import asyncio
import hashlib
import http.client
import json
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest
import websockets

from conftest import CHORUSD, Broker, free_port, http_request, run_cli, \
    sanitizer_report

import chorus_helpers
from chorus_helpers import WAIT
from chorus_helpers import recv_json_any as recv_json
from chorus_helpers import request_any as request
from chorus_helpers import run_aborting as run


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    return r


def make_cert(workdir, name, key_type="ec", cn="localhost"):
    """Self-signed cert+key for localhost/127.0.0.1; returns the paths."""
    cert = os.path.join(workdir, name + ".crt")
    key = os.path.join(workdir, name + ".key")
    newkey = "rsa:2048" if key_type == "rsa" else "ec"
    extra = [] if key_type == "rsa" else ["-pkeyopt",
                                          "ec_paramgen_curve:prime256v1"]
    openssl("req", "-x509", "-newkey", newkey, *extra, "-nodes",
            "-keyout", key, "-out", cert, "-days", "2",
            "-subj", f"/CN={cn}",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            cwd=workdir)
    return cert, key


@pytest.fixture
def certs(workdir):
    cert, key = make_cert(workdir, "server")
    return cert, key


def tls_broker(make_broker, cert, key, **conf):
    port = free_port()
    b = make_broker(tls_listen=f"127.0.0.1:{port}", tls_cert=cert,
                    tls_key=key, **conf)
    b.tls_port = port
    b.wss = f"wss://127.0.0.1:{port}/ws"
    return b


def client_ctx(cafile, **kw):
    ctx = ssl.create_default_context(cafile=cafile)
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def fingerprint_of_file(cert):
    with open(cert) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return hashlib.sha256(der).hexdigest()


def peer_fingerprint(port, timeout=WAIT):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()


def https(b, cafile, method, path, body=None, headers=None):
    conn = http.client.HTTPSConnection("127.0.0.1", b.tls_port, timeout=WAIT,
                                       context=client_ctx(cafile))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


async def wss_connect(b, cafile, **kw):
    return await chorus_helpers.connect_aborting(
        b, b.wss, ssl=client_ctx(cafile), **kw)


async def roundtrip(sub, pub, topic, data):
    r = await request(pub, {"op": "publish", "topic": topic, "data": data})
    assert r["op"] == "published", r
    m = await recv_json(sub)
    assert m["op"] == "message" and m["data"] == data, m


metrics = chorus_helpers.metrics_values


# --- happy path -------------------------------------------------------------

def test_wss_and_https_happy_path(make_broker, certs):
    cert, key = certs
    b = tls_broker(make_broker, cert, key)

    async def main():
        sub = await wss_connect(b, cert)
        r = await request(sub, {"op": "subscribe", "topic": "secure"})
        assert r["op"] == "subscribed", r
        pub = await wss_connect(b, cert)
        await roundtrip(sub, pub, "secure", {"hello": "tls"})
        # plain ws:// on the other port shares the topics
        plain = await asyncio.wait_for(websockets.connect(b.url), WAIT)
        chorus_helpers.ABORTING.stack[-1].append(plain)
        await roundtrip(sub, plain, "secure", "from plain")
        # a big message crosses TLS records intact
        big = "z" * 300000
        await roundtrip(sub, pub, "secure", big)
        # https on the same routes
        loop = asyncio.get_running_loop()
        st, body = await loop.run_in_executor(
            None, https, b, cert, "GET", "/healthz")
        assert st == 200 and body.startswith(b"ok"), (st, body)
        st, body = await loop.run_in_executor(
            None, lambda: https(b, cert, "POST", "/api/publish/secure",
                                b'{"via":"https"}',
                                {"Content-Type": "application/json"}))
        assert st == 200, body
        assert json.loads(body)["topic"] == "secure"
        m = await recv_json(sub)
        assert m["data"] == {"via": "https"}, m
        st, body = await loop.run_in_executor(
            None, https, b, cert, "GET", "/api/history/secure")
        assert st == 200 and len(json.loads(body)["messages"]) == 4, body
        st, body = await loop.run_in_executor(
            None, https, b, cert, "GET", "/nope")
        assert st == 404
    run(main())


def test_tls_parameters(make_broker, certs):
    cert, key = certs
    b = tls_broker(make_broker, cert, key)
    # TLS 1.2: a forward-secret AEAD suite, no compression
    ctx = client_ctx(cert, maximum_version=ssl.TLSVersion.TLSv1_2)
    with socket.create_connection(("127.0.0.1", b.tls_port), WAIT) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            assert t.version() == "TLSv1.2"
            name, _, _ = t.cipher()
            assert name.startswith("ECDHE-") and \
                ("GCM" in name or "CHACHA20" in name), name
            assert t.compression() is None
    ctx = client_ctx(cert)
    with socket.create_connection(("127.0.0.1", b.tls_port), WAIT) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            assert t.version() == "TLSv1.3"
    # a non-AEAD TLS 1.2 suite is not offered
    ctx = client_ctx(cert, maximum_version=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:"
                    "AES128-SHA:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", b.tls_port), WAIT) as s:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            ctx.wrap_socket(s, server_hostname="localhost")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_tls_refused(make_broker, certs, version):
    cert, key = certs
    b = tls_broker(make_broker, cert, key)
    v = getattr(ssl.TLSVersion, version)
    ctx = client_ctx(cert, minimum_version=v, maximum_version=v)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the server be the one
    with socket.create_connection(("127.0.0.1", b.tls_port), WAIT) as s:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            ctx.wrap_socket(s, server_hostname="localhost")
    # still serving
    assert https(b, cert, "GET", "/healthz")[0] == 200


def test_untrusted_cert_refused_by_clients(make_broker, certs, workdir):
    cert, key = certs
    b = tls_broker(make_broker, cert, key)
    other, _ = make_cert(workdir, "other")

    async def main():
        with pytest.raises(ssl.SSLCertVerificationError):
            await websockets.connect(b.wss, ssl=client_ctx(other))
    run(main())
    r = run_cli("pub", "--url", b.wss, "--cacert", other, "t", "1")
    assert r.returncode != 0
    r = run_cli("pub", "--url", b.wss, "t", "1")  # system store only
    assert r.returncode != 0


def test_cli_over_wss(make_broker, certs):
    cert, key = certs
    b = tls_broker(make_broker, cert, key)
    r = run_cli("pub", "--url", b.wss, "--cacert", cert, "cli.t",
                '{"n":1}')
    assert r.returncode == 0, r.stderr
    r = run_cli("pub", "--url", b.wss, "--cacert", cert, "cli.t", "2")
    assert r.returncode == 0, r.stderr
    st, _, body = http_request(b, "GET", "/api/history/cli.t")
    assert [m["data"] for m in json.loads(body)["messages"]] == [{"n": 1}, 2]
    # chorus sub over wss receives a publish
    p = subprocess.Popen(
        [os.environ.get("CHORUS_CLI", "build/chorus"), "sub", "--url", b.wss,
         "--cacert", cert, "cli.live"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT
        line = b""
        while time.monotonic() < deadline and not line:
            st, _, _ = http_request(b, "POST", "/api/publish/cli.live",
                                    b'"hi"')
            assert st == 200
            ready, _, _ = select.select([p.stdout], [], [], 0.2)
            if ready:
                line = p.stdout.readline()
        assert line, "chorus sub over wss printed nothing"
        assert json.loads(line)["data"] == "hi", line
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_certificate_chain(make_broker, workdir):
    """tls_cert holds leaf + intermediate; the client trusts only the root."""
    def o(*a):
        openssl(*a, cwd=workdir)
    ext = os.path.join(workdir, "ext.cnf")
    with open(ext, "w") as f:
        f.write("[ca]\nbasicConstraints=critical,CA:TRUE\n"
                "keyUsage=critical,keyCertSign,cRLSign\n"
                "[leaf]\nbasicConstraints=CA:FALSE\n"
                "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    o("req", "-x509", "-newkey", "ec", "-pkeyopt",
      "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "root.key",
      "-out", "root.crt", "-days", "2", "-subj", "/CN=Test Root",
      "-addext", "basicConstraints=critical,CA:TRUE",
      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    o("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
      "-nodes", "-keyout", "int.key", "-out", "int.csr", "-subj",
      "/CN=Test Intermediate")
    o("x509", "-req", "-in", "int.csr", "-CA", "root.crt", "-CAkey",
      "root.key", "-CAcreateserial", "-out", "int.crt", "-days", "2",
      "-extfile", ext, "-extensions", "ca")
    o("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
      "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj",
      "/CN=localhost")
    o("x509", "-req", "-in", "leaf.csr", "-CA", "int.crt", "-CAkey",
      "int.key", "-CAcreateserial", "-out", "leaf.crt", "-days", "2",
      "-extfile", ext, "-extensions", "leaf")
    chain = os.path.join(workdir, "chain.pem")
    with open(chain, "w") as f:
        for n in ("leaf.crt", "int.crt"):
            with open(os.path.join(workdir, n)) as g:
                f.write(g.read())
    root = os.path.join(workdir, "root.crt")
    b = tls_broker(make_broker, chain, os.path.join(workdir, "leaf.key"))
    assert https(b, root, "GET", "/healthz")[0] == 200
    r = run_cli("pub", "--url", b.wss, "--cacert", root, "chain", "1")
    assert r.returncode == 0, r.stderr


# --- plain TCP on the TLS port ---------------------------------------------

def test_plain_tcp_on_tls_port_refused_cleanly(make_broker, certs):
    cert, key = certs
    b = tls_broker(make_broker, cert, key)
    before = metrics(b)

    async def main():
        sub = await wss_connect(b, cert)
        r = await request(sub, {"op": "subscribe", "topic": "keep"})
        assert r["op"] == "subscribed"
        for req in (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                    b"\x00" * 100, os.urandom(3000)):
            s = socket.create_connection(("127.0.0.1", b.tls_port), WAIT)
            s.sendall(req)
            got = b""
            t0 = time.monotonic()
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            except ConnectionResetError:
                pass
            except socket.timeout:
                raise AssertionError("TLS port kept a plain client open")
            finally:
                s.close()
            assert time.monotonic() - t0 < WAIT
            assert b"HTTP/1.1 200" not in got and b"101" not in got, got
        # a client that connects and says nothing is cut off by the
        # handshake timeout, not kept forever (checked elsewhere); the
        # broker keeps serving both ports
        pub = await wss_connect(b, cert)
        await roundtrip(sub, pub, "keep", 1)
    run(main())
    assert b.proc.poll() is None
    assert https(b, cert, "GET", "/healthz")[0] == 200
    after = metrics(b)
    key_ = 'chorus_connections_rejected_total{cause="tls"}'
    assert after.get(key_, 0) - before.get(key_, 0) >= 4, \
        f"failed TLS handshakes not counted in {key_}"


# --- startup failures ---------------------------------------------------------

def start_fails(workdir, **conf):
    b = Broker(workdir, tls_listen=f"127.0.0.1:{free_port()}", **conf)
    cfg = b.write_config()
    t0 = time.monotonic()
    r = subprocess.run([CHORUSD, "-c", cfg], capture_output=True, timeout=10)
    elapsed = time.monotonic() - t0
    assert r.returncode != 0, r
    assert sanitizer_report(r.stderr.decode()) is None, r.stderr.decode()
    assert elapsed < 3, elapsed
    # nothing listens
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", b.port), 0.5).close()
    return r.stderr.decode()


def test_startup_fails_on_bad_files(workdir, certs):
    cert, key = certs
    other_cert, other_key = make_cert(workdir, "other")
    garbage = os.path.join(workdir, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64 !!!\n"
                "-----END CERTIFICATE-----\n")
    empty = os.path.join(workdir, "empty.pem")
    open(empty, "w").close()
    missing = os.path.join(workdir, "missing.pem")
    unreadable = os.path.join(workdir, "unreadable.key")
    shutil.copy(key, unreadable)
    os.chmod(unreadable, 0)
    cases = [
        ({"tls_cert": missing, "tls_key": key}, missing),
        ({"tls_cert": cert, "tls_key": missing}, missing),
        ({"tls_cert": cert, "tls_key": other_key}, other_key),
        ({"tls_cert": garbage, "tls_key": key}, garbage),
        ({"tls_cert": empty, "tls_key": key}, empty),
        ({"tls_cert": cert, "tls_key": garbage}, garbage),
        ({"tls_cert": cert, "tls_key": cert}, cert),
        ({"tls_cert": workdir, "tls_key": key}, workdir),
        ({"tls_key": key}, "tls_cert"),
        ({"tls_cert": cert}, "tls_key"),
    ]
    if os.geteuid() != 0:
        cases.append(({"tls_cert": cert, "tls_key": unreadable}, unreadable))
    for conf, named in cases:
        err = start_fails(workdir, **conf)
        assert named in err, (conf, err)
        if conf.get("tls_key") == other_key:
            assert "match" in err.lower(), err


# --- SIGHUP reload -----------------------------------------------------------

def test_sighup_reloads_cert_keeping_connections(make_broker, workdir):
    cert, key = make_cert(workdir, "live", key_type="rsa")
    old_fp = fingerprint_of_file(cert)
    b = tls_broker(make_broker, cert, key)
    assert peer_fingerprint(b.tls_port) == old_fp
    ca_both = os.path.join(workdir, "both.pem")

    async def main():
        sub = await wss_connect(b, cert)
        r = await request(sub, {"op": "subscribe", "topic": "hup"})
        assert r["op"] == "subscribed"
        pub = await wss_connect(b, cert)
        # overwrite the files in place with a new cert and key
        new_cert, new_key = make_cert(workdir, "next")
        new_fp = fingerprint_of_file(new_cert)
        with open(ca_both, "w") as f:
            f.write(open(cert).read() + open(new_cert).read())
        shutil.copy(new_cert, cert)
        shutil.copy(new_key, key)
        since = len(b.read_log())
        os.kill(b.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + WAIT
        while peer_fingerprint(b.tls_port) != new_fp:
            assert time.monotonic() < deadline, "new cert never served"
            await asyncio.sleep(0.05)
        assert "reload" in b.read_log()[since:].lower()
        # open connections were not dropped and still work both ways
        await roundtrip(sub, pub, "hup", "after reload")
        # new connections verify against the new cert
        fresh = await wss_connect(b, new_cert)
        await roundtrip(sub, fresh, "hup", "fresh")
        await roundtrip(sub, pub, "hup", "still")

        # a broken cert on SIGHUP keeps the current one
        with open(cert, "w") as f:
            f.write("garbage\n")
        since = len(b.read_log())
        os.kill(b.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + WAIT
        while "keeping the old certificate" not in b.read_log()[since:]:
            assert time.monotonic() < deadline, b.read_log()[since:]
            await asyncio.sleep(0.05)
        assert cert in b.read_log()[since:]
        assert peer_fingerprint(b.tls_port) == new_fp
        await roundtrip(sub, pub, "hup", "after bad reload")
        # a key that does not match the cert is refused the same way
        third_cert, _ = make_cert(workdir, "third")
        shutil.copy(third_cert, cert)  # cert changes, key stays: mismatch
        since = len(b.read_log())
        os.kill(b.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + WAIT
        while "keeping the old certificate" not in b.read_log()[since:]:
            assert time.monotonic() < deadline, b.read_log()[since:]
            await asyncio.sleep(0.05)
        assert "match" in b.read_log()[since:]
        assert peer_fingerprint(b.tls_port) == new_fp
        fresh2 = await wss_connect(b, new_cert)
        await roundtrip(sub, fresh2, "hup", "end")
    run(main())
    assert b.proc.poll() is None


def test_sighup_without_tls_is_harmless(make_broker):
    b = make_broker()
    os.kill(b.proc.pid, signal.SIGHUP)
    time.sleep(0.2)
    assert b.proc.poll() is None
    assert http_request(b, "GET", "/healthz")[0] == 200
