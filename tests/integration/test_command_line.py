"""chorusd and chorus on the command line: --version prints the version
from CMakeLists.txt's project(VERSION) (plus the git commit in a
checkout), and chorusd --check-config validates without opening a port or
a database."""
import os
import re
import socket
import subprocess

from conftest import CHORUSD, CHORUS_CLI, free_port

SRC = os.path.join(os.path.dirname(__file__), "..", "..")


def project_version():
    with open(os.path.join(SRC, "CMakeLists.txt")) as f:
        m = re.search(r"project\(chorus VERSION ([0-9.]+)", f.read())
    assert m, "CMakeLists.txt has no project(chorus VERSION ...)"
    return m.group(1)


def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True,
                          timeout=10)


def test_version_of_both_programs():
    want = project_version()
    for prog, name in ((CHORUSD, "chorusd"), (CHORUS_CLI, "chorus")):
        r = run(prog, "--version")
        assert r.returncode == 0, r.stderr
        m = re.fullmatch(rf"{name} (\S+)(?: \(git ([0-9a-f]+(?:-dirty)?)\))?\n",
                         r.stdout)
        assert m, r.stdout
        assert m.group(1) == want
        if os.path.isdir(os.path.join(SRC, ".git")):
            assert m.group(2), "built from a checkout: the commit is missing"


def test_check_config_valid_opens_nothing(workdir):
    port = free_port()
    db = os.path.join(workdir, "never.db")
    conf = os.path.join(workdir, "ok.conf")
    with open(conf, "w") as f:
        f.write(f"listen = 127.0.0.1:{port}\ndb_path = {db}\n")
    r = run(CHORUSD, "--check-config", "-c", conf)
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout
    assert not os.path.exists(db)
    assert not os.path.exists(db + "-wal")
    # The port was never bound: we can bind it ourselves.
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_check_config_reports_file_and_line(workdir):
    conf = os.path.join(workdir, "bad.conf")
    with open(conf, "w") as f:
        f.write("# a comment\nthreads = 2\nmax_message_size = lots\n")
    r = run(CHORUSD, "-t", "-c", conf)
    assert r.returncode == 1
    assert f"{conf}:3: " in r.stderr, r.stderr
    assert "max_message_size" in r.stderr


def test_check_config_of_the_shipped_example():
    r = run(CHORUSD, "--check-config", "-c",
            os.path.join(SRC, "broker.conf.example"))
    assert r.returncode == 0, r.stderr


def test_check_config_missing_file(workdir):
    missing = os.path.join(workdir, "nope.conf")
    r = run(CHORUSD, "--check-config", "-c", missing)
    assert r.returncode == 1
    assert missing in r.stderr


def complete(line):
    """What bash's completion for the program line starts with (chorus or
    chorusd: contrib/bash-completion/PROGRAM) offers for line, whose last
    word is the one being completed."""
    words = line.split(" ")
    prog = words[0]
    script = (
        "source /usr/share/bash-completion/bash_completion\n"
        f"source {os.path.join(SRC, 'contrib/bash-completion', prog)}\n"
        f"COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        f"_{prog} {prog}\n"
        "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    assert os.path.exists("/usr/share/bash-completion/bash_completion"), \
        "bash-completion is missing: run scripts/deps.sh --test"
    r = subprocess.run(["bash", "-c", script], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_bash_completion():
    assert complete("chorus ") == {"sub", "pub", "history", "token",
                                   "--help", "--version"}
    assert complete("chorus hi") == {"history"}
    assert {"--since", "--resume", "--reconnect", "--url"} <= \
        complete("chorus sub --")
    assert "--all" in complete("chorus history --")
    assert "--all" not in complete("chorus sub --")
    assert complete("chorus token --s") == {"--secret", "--sub",
                                            "--subscribe"}
    assert complete("chorus sub --since ") == set()


def test_bash_completion_of_chorusd():
    assert complete("chorusd --") == {
        "--config", "--listen", "--log-level", "--check-config",
        "--new-epochs", "--version", "--help"}
    assert complete("chorusd --n") == {"--new-epochs"}
    assert complete("chorusd --new-epochs --c") == {"--config"}
    assert complete("chorusd --log-level d") == {"debug"}
    assert complete("chorusd --listen ") == set()
