"""WAL checkpoints run on the writer thread while the broker is up: the
committed pages reach the database file itself, not only its WAL, without
waiting for a restart."""
import json
import os
import time

from chorus_helpers import RawWS
from wsraw import OP_TEXT


def test_writer_copies_the_wal_into_the_database(make_broker):
    b = make_broker()
    pub = RawWS(b.port)
    size0 = os.path.getsize(b.db_path)
    count, pad = 2000, "c" * 400   # ~1 MB of history, far past one page
    for i in range(1, count + 1):
        pub.send_json({"op": "publish", "topic": f"ck{i % 7}", "id": i,
                       "data": {"n": i, "pad": pad}})
    for _ in range(count):
        fin, op, payload = pub.recv_frame()
        assert op == OP_TEXT and json.loads(payload)["op"] == "published"
    deadline = time.time() + 10
    while time.time() < deadline and \
            os.path.getsize(b.db_path) < size0 + 500_000:
        time.sleep(0.1)
    assert os.path.getsize(b.db_path) >= size0 + 500_000, \
        (size0, os.path.getsize(b.db_path),
         os.path.getsize(b.db_path + "-wal"))
    assert b.proc.poll() is None
    pub.close()


def thread_policies(pid):
    """comm -> scheduling policy (field 41 of /proc/PID/task/TID/stat)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            stat = f.read()
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        out[comm] = int(stat[stat.rindex(")") + 2:].split()[38])
    return out


def test_writer_thread_never_preempts_the_loops(make_broker):
    """SCHED_BATCH (3): waking the writer lets the loop finish its turn.
    The writer is the only thread besides the loops: it checkpoints too."""
    b = make_broker(threads=2)
    policies = thread_policies(b.proc.pid)
    assert policies.get("chorus-writer") == 3, policies
    assert "chorus-ckpt" not in policies, policies
    assert policies.get("chorus-loop1") == 0, policies
