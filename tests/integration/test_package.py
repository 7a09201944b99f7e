"""The Debian package, as an operator meets it: built with CPack from a
build folder of its own (prefix /usr), installed with dpkg -i, checked
(files, the chorus user, the unit with systemd-analyze verify, the man
pages with man --warnings), started from the installed paths as the chorus
user on a loopback port, then removed with dpkg -r and purged.

Needs root (dpkg); CI runs as root. Runs in the plain pass only
(tests/CMakeLists.txt): a package of a sanitizer build says nothing more."""
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import free_port

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TMP_ROOT = os.environ.get("CHORUS_TMP", tempfile.gettempdir())


def sh(*args, check=True, timeout=600, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" %
                             (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def installed(pkg):
    r = sh("dpkg-query", "-W", "-f=${Status}", pkg, check=False)
    return "ok installed" in r.stdout


@pytest.fixture(scope="module")
def deb():
    assert os.geteuid() == 0, "the package test needs root (dpkg -i)"
    for tool in ("cpack", "dpkg-shlibdeps", "systemd-analyze", "man"):
        assert shutil.which(tool), \
            f"{tool} is missing: run scripts/deps.sh --test"
    assert not installed("chorus"), \
        "a chorus package is installed already; remove it first"
    os.makedirs(TMP_ROOT, exist_ok=True)
    build = tempfile.mkdtemp(prefix="pkg-", dir=TMP_ROOT)
    try:
        sh("cmake", "-S", SRC, "-B", build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
           "-DCMAKE_INSTALL_PREFIX=/usr")
        sh("cmake", "--build", build, "-j2", "--target", "chorusd", "chorus")
        sh("cpack", "-G", "DEB", cwd=build)
        debs = glob.glob(os.path.join(build, "chorus_*.deb"))
        assert len(debs) == 1, debs
        yield debs[0]
    finally:
        if installed("chorus"):
            sh("dpkg", "--purge", "chorus", check=False)
        shutil.rmtree(build, ignore_errors=True)


def test_install_run_remove(deb, workdir):
    info = sh("dpkg-deb", "-f", deb, "Depends").stdout
    # shlibdeps: the run-time libraries come from the binaries.
    for lib in ("libevent-2.1-7", "libjansson4", "libsqlite3-0", "libssl3"):
        assert lib in info, info

    sh("dpkg", "-i", deb)
    try:
        for path in ("/usr/bin/chorusd", "/usr/bin/chorus",
                     "/etc/chorus/chorusd.conf",
                     "/usr/lib/systemd/system/chorusd.service",
                     "/usr/share/man/man8/chorusd.8",
                     "/usr/share/man/man1/chorus.1",
                     "/usr/share/bash-completion/completions/chorus",
                     "/usr/share/bash-completion/completions/chorusd",
                     "/usr/share/doc/chorus/README.md",
                     "/usr/share/doc/chorus/PROTOCOL.md",
                     "/usr/share/doc/chorus/chorus.js"):
            assert os.path.exists(path), path
        user = pwd.getpwnam("chorus")
        st = os.stat("/var/lib/chorus")
        assert st.st_uid == user.pw_uid

        r = sh("/usr/bin/chorusd", "--check-config", "-c",
               "/etc/chorus/chorusd.conf")
        assert "valid" in r.stdout
        assert "chorusd " in sh("/usr/bin/chorusd", "--version").stdout

        r = sh("systemd-analyze", "verify",
               "/usr/lib/systemd/system/chorusd.service", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        for page in ("chorusd.8", "chorus.1"):
            path = glob.glob(f"/usr/share/man/man*/{page}*")[0]
            r = sh("man", "--warnings", "-l", path, check=False,
                   env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8"))
            assert r.returncode == 0 and not r.stderr.strip(), r.stderr

        run_as_chorus_user()
    finally:
        sh("dpkg", "-r", "chorus")
    assert not os.path.exists("/usr/bin/chorusd")
    # dpkg -r keeps the administrator's config and the data; purge drops
    # them.
    assert os.path.exists("/etc/chorus/chorusd.conf")
    sh("dpkg", "--purge", "chorus")
    assert not os.path.exists("/etc/chorus/chorusd.conf")
    assert not os.path.exists("/var/lib/chorus")


def run_as_chorus_user():
    """What the unit does: the installed config, /var/lib/chorus as the
    working directory, the chorus user."""
    port = free_port()
    user = pwd.getpwnam("chorus")

    def drop_to_chorus():
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    proc = subprocess.Popen(
        ["/usr/bin/chorusd", "-c", "/etc/chorus/chorusd.conf", "--listen",
         f"127.0.0.1:{port}"],
        cwd="/var/lib/chorus", preexec_fn=drop_to_chorus,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 10
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "chorusd did not become healthy"
            time.sleep(0.05)
        url = f"ws://127.0.0.1:{port}/ws"
        sh("/usr/bin/chorus", "pub", "--url", url, "pkg", '{"n":1}',
           timeout=20)
        out = sh("/usr/bin/chorus", "history", "--url", url, "pkg",
                 timeout=20).stdout
        assert '"n":1' in out.replace(" ", ""), out
        db = "/var/lib/chorus/chorus.db"
        assert os.stat(db).st_uid == user.pw_uid
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
