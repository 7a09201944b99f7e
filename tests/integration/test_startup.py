"""Start-up failures name their real cause: a database directory the
broker cannot write (a read-only file system, or permissions that keep
the broker's user out) is reported as such, not as SQLite's "unable to
open database file (No such file or directory)". Tests run as root, whom
permission bits do not stop: the read-only case uses a read-only bind
mount in a private mount namespace (unshare), the permission case drops
to the user nobody before exec."""
import os
import pwd
import shutil
import subprocess

import pytest

from conftest import CHORUSD, Broker

NOBODY = pwd.getpwnam("nobody")


def can_unshare():
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    return subprocess.run(["unshare", "-m", "true"],
                          capture_output=True).returncode == 0


def start_failing(b, argv_prefix=(), preexec_fn=None, timeout=10):
    """Runs chorusd for b's config; returns (exit code, output)."""
    cfg = b.write_config()
    r = subprocess.run([*argv_prefix, CHORUSD, "-c", cfg], capture_output=True,
                       timeout=timeout, preexec_fn=preexec_fn)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")


def read_only_mount(path):
    """argv prefix: run the rest with path bind-mounted read-only (in a
    mount namespace of its own, so nothing outlives the process)."""
    script = ('mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && '
              'exec "$@"')
    return ["unshare", "-m", "sh", "-c", script, path]


@pytest.mark.skipif(not can_unshare(), reason="needs root and unshare -m")
@pytest.mark.parametrize("existing", [False, True])
def test_read_only_directory_named(workdir, existing):
    d = os.path.join(workdir, "data")
    os.mkdir(d)
    b = Broker(workdir, db_path=os.path.join(d, "chorus.db"))
    if existing:  # a database made earlier, then the disk went read-only
        b.start()
        assert b.stop() == 0
    code, out = start_failing(b, read_only_mount(d))
    assert code == 1, out
    if existing:
        want = f"file {d}/chorus.db is not writable (Read-only file system)"
    else:
        want = f"directory {d} is not writable (Read-only file system)"
    assert want in out, out
    assert "No such file or directory" not in out, out


def drop_to_nobody():
    os.setgroups([])
    os.setgid(NOBODY.pw_gid)
    os.setuid(NOBODY.pw_uid)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody")
def test_directory_without_write_permission_named(workdir):
    d = os.path.join(workdir, "data")
    os.mkdir(d, 0o555)
    os.chmod(d, 0o555)  # whatever the umask
    os.chmod(workdir, 0o755)
    b = Broker(workdir, db_path=os.path.join(d, "chorus.db"))
    b.conf.pop("log_level")
    cfg = b.write_config()
    os.chmod(cfg, 0o644)
    # nobody must reach the binary, the config and the directory
    probe = subprocess.run(["test", "-r", cfg], preexec_fn=drop_to_nobody)
    if probe.returncode != 0:
        pytest.skip("nobody cannot reach the test directory")
    code, out = start_failing(b, preexec_fn=drop_to_nobody)
    assert code == 1, out
    assert f"directory {d} is not writable (Permission denied)" in out, out
