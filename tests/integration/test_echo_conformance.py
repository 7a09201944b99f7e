"""Autobahn-style conformance run against chorusd's GET /echo endpoint.

The Autobahn testsuite (wstest) cannot be installed here, so this file
re-creates its case groups 1-7 and 9 with a raw-socket client (wsraw.py).
Case ids follow Autobahn's numbering; every case is judged STRICT, i.e. only
Autobahn's "OK" behaviour passes (NON_STRICT outcomes fail):

  1  framing            2  pings/pongs          3  reserved bits
  4  opcodes            5  fragmentation        6  UTF-8 (incl. fail-fast)
  7  close handling     9  limited performance (64 KiB .. 1 MiB)

plus: unmasked client frames, and max_message_size (1009 as soon as the
frame header shows the limit is exceeded).

For every close the broker sends we check its code, that the broker's
frames are unmasked (wsraw checks every frame it reads), and that the
broker then closes TCP. After each case a fresh connection must still get a
correct echo. Autobahn waits 1 s where a case pauses; we wait less to keep
the run short.

The brokers are started once per module (one per config) rather than per
test, to keep ~500 cases well under a minute; a broker that dies during a
test fails that test and is replaced for the next one.
"""
import os
import tempfile
import time

import pytest

import wsraw
from conftest import Broker, TMP_ROOT, sanitizer_report
from wsraw import (NO_CODE, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG,
                   OP_TEXT, WSConn, build_fragmented, build_frame,
                   close_payload)

PAUSE = 0.5         # Autobahn's 1 s waits (continueLater), shortened
FRAME_PAUSE = 0.05  # between frames sent in "frame-wise chops"
CHOP_PAUSE = 0.001  # between octet-wise chops
FAIL_FAST = 0.5     # a close must arrive this soon after an offending byte

CONFIGS = {
    "default": {"echo_endpoint": "on"},
    "big": {"echo_endpoint": "on", "max_message_size": "16m"},
    "small": {"echo_endpoint": "on", "max_message_size": "64k"},
}


# ------------------------------------------------------------ brokers

class EchoServer:
    """A chorusd with /echo enabled, shared by the tests of this module."""

    def __init__(self, name, conf):
        self.name = name
        self.conf = conf
        self.dirs = []
        self.dead = []       # (exit code, log) of brokers that died
        self.broker = None
        self.start()

    def start(self):
        os.makedirs(TMP_ROOT, exist_ok=True)
        d = tempfile.TemporaryDirectory(dir=TMP_ROOT)
        self.dirs.append(d)
        self.broker = Broker(d.name, **self.conf).start()

    @property
    def port(self):
        return self.broker.port

    def connect(self, **kw):
        return WSConn(self.broker.port, **kw)

    def assert_alive(self):
        """A fresh connection must still be served correctly."""
        try:
            wsraw.echo_roundtrip(self.broker.port)
        except (wsraw.WSError, OSError) as e:
            pytest.fail("broker no longer serves a fresh /echo connection: "
                        "%s: %s%s" % (type(e).__name__, e, self.crash_info()))

    def crash_info(self):
        code = self.broker.proc.poll()
        if code is None:
            return ""
        return "\nchorusd exited with %s; log tail:\n%s" % (
            code, self.broker.read_log()[-3000:])

    def check_crash(self):
        """Called after each test: a broker that died fails the test and
        is replaced so that later tests still run."""
        code = self.broker.proc.poll()
        if code is None:
            return None
        log = self.broker.read_log()
        self.dead.append((code, log))
        self.start()
        return "chorusd (%s config) died during this test, exit %s:\n%s" % (
            self.name, code, log[-3000:])

    def shutdown(self):
        problems = []
        code = self.broker.stop()
        log = self.broker.read_log()
        for c, lg in self.dead + [(code, log)]:
            if sanitizer_report(lg):
                problems.append("sanitizer report in chorusd log:\n" + lg)
            if c not in (0, -9, None):
                problems.append("chorusd exit %s\n%s" % (c, lg[-3000:]))
        for d in self.dirs:
            d.cleanup()
        return problems


@pytest.fixture(scope="module")
def servers():
    made = {}

    def get(name):
        if name not in made:
            made[name] = EchoServer(name, CONFIGS[name])
        return made[name]

    yield get
    problems = []
    for srv in made.values():
        problems += srv.shutdown()
    assert not problems, "\n".join(problems)


def _server_fixture(name):
    @pytest.fixture
    def fx(servers):
        srv = servers(name)
        yield srv
        msg = srv.check_crash()
        if msg:
            pytest.fail(msg)
    return fx


echo = _server_fixture("default")
echo_big = _server_fixture("big")
echo_small = _server_fixture("small")


# ------------------------------------------------------------ case machinery

def F(opcode, payload=b"", fin=True, rsv=0, mask=True):
    return build_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask)


def send_frames(c, frames, mode="chop", tolerate_closed=False):
    """Autobahn's send modes: all frames in one write ("chop"), one write
    per frame with a pause between ("frame"), or octet-wise ("octet")."""
    if mode == "chop":
        return c.send(b"".join(frames), tolerate_closed=tolerate_closed)
    if mode == "frame":
        for i, f in enumerate(frames):
            if i:
                time.sleep(FRAME_PAUSE)
            if not c.send(f, tolerate_closed=tolerate_closed):
                return False
        return True
    if mode == "octet":
        return c.send(b"".join(frames), chop=1, pause=CHOP_PAUSE,
                      tolerate_closed=tolerate_closed)
    raise ValueError(mode)


def msg(opcode, payload):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return ("message", opcode, payload)


def pong(payload):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return ("pong", payload)


def expect_events(c, events, timeout=None):
    for ev in events:
        if ev[0] == "message":
            c.expect_message(ev[1], ev[2], timeout=timeout)
        else:
            c.expect_pong(ev[1], timeout=timeout)


def case(cid, frames, expect=(), fail=None, mode="chop"):
    """One Autobahn-style case: send frames; the broker must answer with
    exactly the events in expect, then (fail=None) complete a close
    handshake that we start, or (fail=code) close with that code itself."""
    return pytest.param(frames, list(expect), fail, mode, id=cid)


def run_case(srv, frames, expect, fail, mode, timeout=None):
    with srv.connect() as c:
        send_frames(c, frames, mode, tolerate_closed=fail is not None)
        expect_events(c, expect, timeout=timeout)
        if fail is None:
            c.close_handshake(1000)
        else:
            c.expect_close(fail)
    srv.assert_alive()


CASE_ARGS = "frames,expect,fail,mode"


# ------------------------------------------------------------ 1 framing

def _framing_cases():
    sizes = [0, 125, 126, 127, 128, 65535, 65536]
    out = []
    for grp, op, fill in (("1.1", OP_TEXT, b"*"), ("1.2", OP_BINARY, b"\xfe")):
        for i, n in enumerate(sizes, 1):
            out.append(pytest.param(op, fill * n, None,
                                    id="%s.%d-%d" % (grp, i, n)))
        out.append(pytest.param(op, fill * 65536, 997,
                                id="%s.8-65536-chops997" % grp))
    return out


@pytest.mark.parametrize("opcode,payload,chop", _framing_cases())
def test_1_framing(echo, opcode, payload, chop):
    with echo.connect() as c:
        c.send_frame(opcode, payload, chop=chop,
                     pause=CHOP_PAUSE if chop else 0)
        c.expect_message(opcode, payload)
        c.close_handshake(1000)
    echo.assert_alive()


# ------------------------------------------------------------ 2 pings/pongs

BIN8 = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"
PINGS10 = ["payload-%d" % i for i in range(10)]

PING_CASES = [
    case("2.1-ping-empty", [F(OP_PING)], [pong(b"")]),
    case("2.2-ping-text", [F(OP_PING, "Hello, world!")],
         [pong("Hello, world!")]),
    case("2.3-ping-binary", [F(OP_PING, BIN8)], [pong(BIN8)]),
    case("2.4-ping-125", [F(OP_PING, b"\xfe" * 125)], [pong(b"\xfe" * 125)]),
    case("2.5-ping-126", [F(OP_PING, b"\xfe" * 126)], [], fail=1002),
    case("2.6-ping-125-octets", [F(OP_PING, b"\xfe" * 125)],
         [pong(b"\xfe" * 125)], mode="octet"),
    case("2.7-unsolicited-pong-empty", [F(OP_PONG)], []),
    case("2.8-unsolicited-pong", [F(OP_PONG, "unsolicited pong payload")],
         []),
    case("2.9-pong-then-ping", [F(OP_PONG, "unsolicited pong payload"),
                                F(OP_PING, "ping payload")],
         [pong("ping payload")]),
    case("2.10-10-pings", [F(OP_PING, p) for p in PINGS10],
         [pong(p) for p in PINGS10]),
    case("2.11-10-pings-octets", [F(OP_PING, p) for p in PINGS10],
         [pong(p) for p in PINGS10], mode="octet"),
]


@pytest.mark.parametrize(CASE_ARGS, PING_CASES)
def test_2_pings(echo, frames, expect, fail, mode):
    run_case(echo, frames, expect, fail, mode)


# ------------------------------------------------------------ 3 reserved bits

HW = "Hello, world!"

RSV_CASES = [
    case("3.1-text-rsv1", [F(OP_TEXT, HW, rsv=1)], [], fail=1002),
    case("3.2-text-rsv2-after-valid", [F(OP_TEXT, HW), F(OP_TEXT, HW, rsv=2),
                                       F(OP_PING)],
         [msg(OP_TEXT, HW)], fail=1002),
    case("3.3-text-rsv3-framewise", [F(OP_TEXT, HW), F(OP_TEXT, HW, rsv=3),
                                     F(OP_PING)],
         [msg(OP_TEXT, HW)], fail=1002, mode="frame"),
    case("3.4-text-rsv4-octetwise", [F(OP_TEXT, HW), F(OP_TEXT, HW, rsv=4),
                                     F(OP_PING)],
         [msg(OP_TEXT, HW)], fail=1002, mode="octet"),
    case("3.5-binary-rsv5", [F(OP_BINARY, BIN8, rsv=5)], [], fail=1002),
    case("3.6-ping-rsv6", [F(OP_PING, HW, rsv=6)], [], fail=1002),
    case("3.7-close-rsv7", [F(OP_CLOSE, rsv=7)], [], fail=1002),
]


@pytest.mark.parametrize(CASE_ARGS, RSV_CASES)
def test_3_reserved_bits(echo, frames, expect, fail, mode):
    run_case(echo, frames, expect, fail, mode)


# ------------------------------------------------------------ 4 opcodes

def _opcode_cases():
    out = []
    for grp, ops in (("4.1", (3, 4, 5, 6, 7)), ("4.2", (11, 12, 13, 14, 15))):
        for i, op in enumerate(ops, 1):
            cid = "%s.%d-opcode-%d" % (grp, i, op)
            if i == 1:
                out.append(case(cid, [F(op)], [], fail=1002))
            elif i == 2:
                out.append(case(cid + "-payload", [F(op, "reserved opcode")],
                                [], fail=1002))
            else:
                payload = HW if i > 3 else b""
                out.append(case(cid + "-after-valid",
                                [F(OP_TEXT, HW), F(op, payload), F(OP_PING)],
                                [msg(OP_TEXT, HW)], fail=1002))
    return out


@pytest.mark.parametrize(CASE_ARGS, _opcode_cases())
def test_4_opcodes(echo, frames, expect, fail, mode):
    run_case(echo, frames, expect, fail, mode)


# ------------------------------------------------------------ 5 fragmentation

def _frag_cases():
    f1, f2 = "fragment1", "fragment2"
    two = [F(OP_TEXT, f1, fin=False), F(OP_CONT, f2)]
    with_ping = [F(OP_TEXT, f1, fin=False), F(OP_PING, "ping payload"),
                 F(OP_CONT, f2)]
    nothing_fin = [F(OP_CONT, "non-continuation payload"), F(OP_TEXT, HW)]
    nothing_nofin = [F(OP_CONT, "non-continuation payload", fin=False),
                     F(OP_TEXT, HW)]
    out = [
        case("5.1-ping-fragmented", [F(OP_PING, f1, fin=False),
                                     F(OP_CONT, f2)], [], fail=1002),
        case("5.2-pong-fragmented", [F(OP_PONG, f1, fin=False),
                                     F(OP_CONT, f2)], [], fail=1002),
        case("5.3-text-2-fragments", two, [msg(OP_TEXT, f1 + f2)]),
        case("5.4-text-2-fragments-framewise", two, [msg(OP_TEXT, f1 + f2)],
             mode="frame"),
        case("5.5-text-2-fragments-octetwise", two, [msg(OP_TEXT, f1 + f2)],
             mode="octet"),
        case("5.6-ping-between-fragments", with_ping,
             [pong("ping payload"), msg(OP_TEXT, f1 + f2)]),
        case("5.7-ping-between-fragments-framewise", with_ping,
             [pong("ping payload"), msg(OP_TEXT, f1 + f2)], mode="frame"),
        case("5.8-ping-between-fragments-octetwise", with_ping,
             [pong("ping payload"), msg(OP_TEXT, f1 + f2)], mode="octet"),
        case("5.9-cont-fin-nothing-to-continue", nothing_fin, [], fail=1002),
        case("5.10-cont-fin-nothing-framewise", nothing_fin, [], fail=1002,
             mode="frame"),
        case("5.11-cont-fin-nothing-octetwise", nothing_fin, [], fail=1002,
             mode="octet"),
        case("5.12-cont-nofin-nothing-to-continue", nothing_nofin, [],
             fail=1002),
        case("5.13-cont-nofin-nothing-framewise", nothing_nofin, [],
             fail=1002, mode="frame"),
        case("5.14-cont-nofin-nothing-octetwise", nothing_nofin, [],
             fail=1002, mode="octet"),
        case("5.15-message-then-stray-cont",
             [F(OP_TEXT, "fragment1", fin=False), F(OP_CONT, "fragment2"),
              F(OP_CONT, "fragment3", fin=False), F(OP_TEXT, "fragment4")],
             [msg(OP_TEXT, "fragment1fragment2")], fail=1002),
        case("5.16-stray-cont-nofin-x2",
             [F(OP_CONT, "fragment1", fin=False),
              F(OP_TEXT, "fragment2", fin=False),
              F(OP_CONT, "fragment3")] * 2, [], fail=1002),
        case("5.17-stray-cont-fin-x2",
             [F(OP_CONT, "fragment1"), F(OP_TEXT, "fragment2", fin=False),
              F(OP_CONT, "fragment3")] * 2, [], fail=1002),
        case("5.18-text-while-text-open",
             [F(OP_TEXT, f1, fin=False), F(OP_TEXT, f2)], [], fail=1002),
        # not in Autobahn: a binary frame starting while a text is open
        case("5.x-binary-while-text-open",
             [F(OP_TEXT, f1, fin=False), F(OP_BINARY, f2)], [], fail=1002),
        # not in Autobahn: a close frame sent fragmented
        case("5.x-close-fragmented",
             [F(OP_CLOSE, close_payload(1000), fin=False), F(OP_CONT, b"")],
             [], fail=1002),
    ]
    return out


@pytest.mark.parametrize(CASE_ARGS, _frag_cases())
def test_5_fragmentation(echo, frames, expect, fail, mode):
    run_case(echo, frames, expect, fail, mode)


@pytest.mark.parametrize("mode", [
    pytest.param("chop", id="5.19-pings-between-fragments-with-pause"),
    pytest.param("frame", id="5.20-same-framewise"),
])
def test_5_19_20_pings_during_paused_message(echo, mode):
    frags = ["fragment%d" % i for i in range(1, 6)]
    pings = ["pongme 1!", "pongme 2!"]
    with echo.connect() as c:
        send_frames(c, [F(OP_TEXT, frags[0], fin=False),
                        F(OP_CONT, frags[1], fin=False),
                        F(OP_PING, pings[0])], mode)
        # the first pong must come while the message is still incomplete
        c.expect_pong(pings[0], timeout=PAUSE)
        time.sleep(PAUSE)
        send_frames(c, [F(OP_CONT, frags[2], fin=False),
                        F(OP_CONT, frags[3], fin=False),
                        F(OP_PING, pings[1]),
                        F(OP_CONT, frags[4])], mode)
        c.expect_pong(pings[1])
        c.expect_message(OP_TEXT, "".join(frags))
        c.close_handshake(1000)
    echo.assert_alive()


# ------------------------------------------------------------ 6 UTF-8

KOSME = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"   # "κόσμε"
HELLO_UTF8 = "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!"
INVALID_631 = KOSME + b"\xed\xa0\x80" + b"edited"


def _frag1(op, payload):
    """A message in fragments of one octet each."""
    return [F(op if i == 0 else OP_CONT, payload[i:i + 1],
              fin=(i == len(payload) - 1)) for i in range(len(payload))]


UTF8_BASIC_CASES = [
    case("6.1.1-empty-text", [F(OP_TEXT, b"")], [msg(OP_TEXT, b"")]),
    case("6.1.2-3-empty-fragments",
         [F(OP_TEXT, b"", fin=False), F(OP_CONT, b"", fin=False),
          F(OP_CONT, b"")], [msg(OP_TEXT, b"")]),
    case("6.1.3-empty-middle-empty",
         [F(OP_TEXT, b"", fin=False),
          F(OP_CONT, "middle frame payload", fin=False), F(OP_CONT, b"")],
         [msg(OP_TEXT, "middle frame payload")]),
    case("6.2.1-valid-one-frame", [F(OP_TEXT, HELLO_UTF8)],
         [msg(OP_TEXT, HELLO_UTF8)]),
    case("6.2.2-valid-2-fragments-on-boundary",
         [F(OP_TEXT, "Hello-\u00b5@\u00df\u00f6\u00e4", fin=False),
          F(OP_CONT, "\u00fc\u00e0\u00e1-UTF-8!!")],
         [msg(OP_TEXT, HELLO_UTF8)]),
    case("6.2.3-valid-octetwise-chops", [F(OP_TEXT, KOSME)],
         [msg(OP_TEXT, KOSME)], mode="octet"),
    case("6.2.4-valid-1-octet-fragments", _frag1(OP_TEXT, KOSME),
         [msg(OP_TEXT, KOSME)]),
    case("6.3.1-invalid-one-frame", [F(OP_TEXT, INVALID_631)], [],
         fail=1007),
    case("6.3.2-invalid-1-octet-fragments", _frag1(OP_TEXT, INVALID_631),
         [], fail=1007),
]


@pytest.mark.parametrize(CASE_ARGS, UTF8_BASIC_CASES)
def test_6_1_to_6_3_utf8(echo, frames, expect, fail, mode):
    run_case(echo, frames, expect, fail, mode)


# 6.4.x: fail fast. The message is sent in three parts with pauses; part 2
# makes it invalid. The broker must NOT have closed after part 1 (still a
# valid prefix) and MUST have closed with 1007 within FAIL_FAST of part 2,
# i.e. before we would send part 3.
P641 = (KOSME, b"\xf4\x90\x80\x80", b"edited")
P642 = (KOSME + b"\xf4", b"\x90", b"\x80\x80edited")


@pytest.mark.parametrize("parts,as_frames", [
    pytest.param(P641, True, id="6.4.1-3-frames-F4908080"),
    pytest.param(P642, True, id="6.4.2-3-frames-split-at-0x90"),
    pytest.param(P641, False, id="6.4.3-3-chops-of-one-frame"),
    pytest.param(P642, False, id="6.4.4-3-chops-split-at-0x90"),
])
def test_6_4_fail_fast(echo, parts, as_frames):
    p1, p2, p3 = parts
    if as_frames:
        chunks = [F(OP_TEXT, p1, fin=False), F(OP_CONT, p2, fin=False),
                  F(OP_CONT, p3)]
    else:
        whole = F(OP_TEXT, p1 + p2 + p3)
        hdr = len(whole) - len(p1 + p2 + p3)
        cut1, cut2 = hdr + len(p1), hdr + len(p1) + len(p2)
        chunks = [whole[:cut1], whole[cut1:cut2], whole[cut2:]]
    with echo.connect() as c:
        c.send(chunks[0])
        c.expect_nothing(PAUSE)        # a valid prefix: no reaction yet
        c.send(chunks[1])
        f = c.try_recv_frame(FAIL_FAST)
        if f is None:
            # not fail-fast; find out whether it fails at all, for the report
            c.send(chunks[2], tolerate_closed=True)
            late = c.try_recv_frame(1.0)
            pytest.fail("no close within %.1fs of the invalid byte (not fail-"
                        "fast); after the rest of the message: %r"
                        % (FAIL_FAST, late))
        assert f.opcode == OP_CLOSE and f.close_code == 1007, \
            "expected close 1007 right after the invalid part, got %r" % f
        c.send_close(1007, tolerate_closed=True)
        c.expect_tcp_closed(2.0, allow_reset=True)
    echo.assert_alive()


# Further fail-fast checks (not in Autobahn): one frame whose header
# announces more than is sent; the invalid bytes alone must trigger 1007,
# without the rest of the frame (or the end of the message) ever arriving.
FAIL_FAST_SEQS = [
    ("surrogate-EDA080", b"\xed\xa0\x80"),
    ("above-10FFFF-F4908080", b"\xf4\x90\x80\x80"),
    ("overlong-C0AF", b"\xc0\xaf"),
    ("overlong-E080AF", b"\xe0\x80\xaf"),
    ("lone-continuation-80", b"\x80"),
    ("5-byte-F888808080", b"\xf8\x88\x80\x80\x80"),
    ("impossible-FE", b"\xfe"),
    ("impossible-FF", b"\xff"),
]


@pytest.mark.parametrize("seq", [pytest.param(s, id="6.x-fail-fast-" + n)
                                 for n, s in FAIL_FAST_SEQS])
@pytest.mark.parametrize("framing", ["open-frame", "open-message"])
def test_6_fail_fast_more(echo, seq, framing):
    body = KOSME + seq
    with echo.connect() as c:
        if framing == "open-frame":
            # the frame announces 100 more bytes that are never sent
            c.send(build_frame(OP_TEXT, body, length=len(body) + 100))
        else:
            # a complete first fragment; the message's end never comes
            c.send(F(OP_TEXT, body, fin=False))
        c.expect_close(1007, timeout=FAIL_FAST, allow_reset=True)
    echo.assert_alive()


def _utf8_sequences():
    """Autobahn's 6.5-6.23 test sequences (from Markus Kuhn's UTF-8 decoder
    capability and stress test), as (category, valid, bytes)."""
    def cat(name, items):
        return [name, list(items)]

    def v(b):
        try:
            b.decode("utf-8")
            return True
        except UnicodeDecodeError:
            return False

    out = []
    vss = KOSME
    out.append(cat("some valid sequences", [
        (True, b"hello\x24world"), (True, b"hello\xc2\xa2world"),
        (True, b"hello\xe2\x82\xacworld"), (True, b"hello\xf0\xa4\xad\xa2world"),
        (True, vss)]))
    out.append(cat("all prefixes of a valid string",
                   [(v(vss[:i]), vss[:i]) for i in range(1, len(vss) + 1)]))
    out.append(cat("first possible sequence of a length", [
        (True, b"\x00"), (True, b"\xc2\x80"), (True, b"\xe0\xa0\x80"),
        (True, b"\xf0\x90\x80\x80")]))
    out.append(cat("first possible sequence length 5/6", [
        (False, b"\xf8\x88\x80\x80\x80"), (False, b"\xfc\x84\x80\x80\x80\x80")]))
    out.append(cat("last possible sequence of a length", [
        (True, b"\x7f"), (True, b"\xdf\xbf"), (True, b"\xef\xbf\xbf"),
        (True, b"\xf4\x8f\xbf\xbf")]))
    out.append(cat("last possible sequence length 4/5/6", [
        (False, b"\xf7\xbf\xbf\xbf"), (False, b"\xfb\xbf\xbf\xbf\xbf"),
        (False, b"\xfd\xbf\xbf\xbf\xbf\xbf")]))
    out.append(cat("other boundary conditions", [
        (True, b"\xed\x9f\xbf"), (True, b"\xee\x80\x80"),
        (True, b"\xef\xbf\xbd"), (True, b"\xf4\x8f\xbf\xbf"),
        (False, b"\xf4\x90\x80\x80")]))
    out.append(cat("unexpected continuation bytes", [
        (False, b"\x80"), (False, b"\xbf"), (False, b"\x80\xbf"),
        (False, b"\x80\xbf\x80"), (False, b"\x80\xbf\x80\xbf"),
        (False, b"\x80\xbf\x80\xbf\x80"), (False, b"\x80\xbf\x80\xbf\x80\xbf"),
        (False, bytes(range(0x80, 0xbf)))]))
    lonely = []
    for lo, hi in ((0xc0, 0xdf), (0xe0, 0xef), (0xf0, 0xf7), (0xf8, 0xfb),
                   (0xfc, 0xfd)):
        lonely.append((False, b"".join(bytes([i, 0x20])
                                      for i in range(lo, hi))))
    out.append(cat("lonely start characters", lonely))
    k = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80",
         b"\xfc\x80\x80\x80\x80", b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf",
         b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    out.append(cat("last continuation byte missing", [(False, x) for x in k]))
    out.append(cat("concatenation of incomplete sequences",
                   [(False, b"".join(k))]))
    out.append(cat("impossible bytes", [
        (False, b"\xfe"), (False, b"\xff"), (False, b"\xfe\xfe\xff\xff")]))
    out.append(cat("overlong ASCII", [
        (False, b"\xc0\xaf"), (False, b"\xe0\x80\xaf"),
        (False, b"\xf0\x80\x80\xaf"), (False, b"\xf8\x80\x80\x80\xaf"),
        (False, b"\xfc\x80\x80\x80\x80\xaf")]))
    out.append(cat("maximum overlong", [
        (False, b"\xc1\xbf"), (False, b"\xe0\x9f\xbf"),
        (False, b"\xf0\x8f\xbf\xbf"), (False, b"\xf8\x87\xbf\xbf\xbf"),
        (False, b"\xfc\x83\xbf\xbf\xbf\xbf")]))
    out.append(cat("overlong NUL", [
        (False, b"\xc0\x80"), (False, b"\xe0\x80\x80"),
        (False, b"\xf0\x80\x80\x80"), (False, b"\xf8\x80\x80\x80\x80"),
        (False, b"\xfc\x80\x80\x80\x80\x80")]))
    out.append(cat("single UTF-16 surrogates", [(False, x) for x in (
        b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf",
        b"\xed\xb0\x80", b"\xed\xbe\x80", b"\xed\xbf\xbf")]))
    out.append(cat("paired UTF-16 surrogates", [(False, a + b) for a, b in (
        (b"\xed\xa0\x80", b"\xed\xb0\x80"), (b"\xed\xa0\x80", b"\xed\xbf\xbf"),
        (b"\xed\xad\xbf", b"\xed\xb0\x80"), (b"\xed\xad\xbf", b"\xed\xbf\xbf"),
        (b"\xed\xae\x80", b"\xed\xb0\x80"), (b"\xed\xae\x80", b"\xed\xbf\xbf"),
        (b"\xed\xaf\xbf", b"\xed\xb0\x80"), (b"\xed\xaf\xbf", b"\xed\xbf\xbf"))]))
    nonchars = [(True, b"\xef\xbf\xbe"), (True, b"\xef\xbf\xbf")]
    for z1 in b"\xf0\xf1\xf2\xf3\xf4":
        for z2 in b"\x8f\x9f\xaf\xbf":
            if z1 == 0xf4 and z2 != 0x8f:
                continue
            for z3 in b"\xbe\xbf":
                zz = bytes([z1, z2, 0xbf, z3])
                if zz not in (b"\xf0\x8f\xbf\xbe", b"\xf0\x8f\xbf\xbf"):
                    nonchars.append((True, zz))
    out.append(cat("non-character code points (valid)", nonchars))
    out.append(cat("Unicode specials", [(True, bytes([0xef, 0xbf, b]))
                                        for b in range(0xb9, 0xc0)]))
    seqs = []
    for i, (name, items) in enumerate(out, 5):
        for j, (valid, b) in enumerate(items, 1):
            # Autobahn's verdicts must agree with a strict decoder
            assert valid == v(b), ("6.%d.%d" % (i, j), b)
            seqs.append(("6.%d.%d" % (i, j), name, valid, b))
    return seqs


UTF8_SEQS = _utf8_sequences()


def _utf8_params():
    out = []
    for cid, name, valid, b in UTF8_SEQS:
        for mode in ("one-frame", "1-octet-fragments"):
            out.append(pytest.param(
                valid, b, mode, id="%s-%s-%s-%s" % (
                    cid, "valid" if valid else "invalid", b[:8].hex(), mode)))
    return out


@pytest.mark.parametrize("valid,payload,mode", _utf8_params())
def test_6_5_to_6_23_utf8_sequences(echo, valid, payload, mode):
    if mode == "one-frame":
        frames = [F(OP_TEXT, payload)]
    else:
        frames = _frag1(OP_TEXT, payload)
    if valid:
        run_case(echo, frames, [msg(OP_TEXT, payload)], None, "chop")
    else:
        run_case(echo, frames, [], 1007, "chop")


def test_6_x_valid_extremes(echo):
    """Valid text at the edges: U+FFFF, U+10000, U+10FFFF, NUL, 4-byte
    characters split over fragments and over chops."""
    text = ("\x00\u007f\u0080\u07ff\u0800\uffff\U00010000\U0010ffff"
            "\U0001F600 end").encode("utf-8")
    with echo.connect() as c:
        c.send_frame(OP_TEXT, text)
        c.expect_message(OP_TEXT, text)
        send_frames(c, _frag1(OP_TEXT, text))
        c.expect_message(OP_TEXT, text)
        c.send_frame(OP_TEXT, text, chop=1, pause=CHOP_PAUSE)
        c.expect_message(OP_TEXT, text)
        c.close_handshake(1000)
    echo.assert_alive()


def test_6_x_binary_is_not_utf8_checked(echo):
    payload = INVALID_631 + b"\xff\xfe\xc0\x80"
    with echo.connect() as c:
        send_frames(c, [F(OP_BINARY, payload),
                        build_fragmented(OP_BINARY, payload, 3)])
        c.expect_message(OP_BINARY, payload)
        c.expect_message(OP_BINARY, payload)
        c.close_handshake(1000)
    echo.assert_alive()


# ------------------------------------------------------------ 7 close handling

INVALID_REASON = close_payload(1000, KOSME + b"\xed\xa0\x80edited")

def test_7_1_1_message_then_close(echo):
    with echo.connect() as c:
        c.send_frame(OP_TEXT, "Hello World!")
        c.expect_message(OP_TEXT, "Hello World!")
        c.close_handshake(1000)
    echo.assert_alive()


@pytest.mark.parametrize("before,after", [
    pytest.param([], [F(OP_CLOSE, close_payload(1000))],
                 id="7.1.2-close-twice"),
    pytest.param([], [F(OP_PING, "Hello World!")],
                 id="7.1.3-ping-after-close"),
    pytest.param([], [F(OP_TEXT, "Hello World!")],
                 id="7.1.4-text-after-close"),
    pytest.param([F(OP_TEXT, "fragment1", fin=False)],
                 [F(OP_CONT, "fragment2")],
                 id="7.1.5-fragment-close-fragment"),
])
def test_7_1_data_after_close(echo, before, after):
    """Whatever follows our close is ignored: one close reply (1000), no
    pong, no echo, then TCP closed by the broker."""
    with echo.connect() as c:
        c.send(b"".join(before + [F(OP_CLOSE, close_payload(1000))] + after))
        c.expect_close(1000, reply=False, allow_reset=True)
    echo.assert_alive()


def test_7_1_6_large_message_then_close_then_ping(echo):
    big = (b"BAsd7&jh23" * (256 * 1024 // 10 + 1))[:256 * 1024]
    with echo.connect() as c:
        c.send(F(OP_TEXT, big) + F(OP_TEXT, "Hello World!") +
               F(OP_CLOSE, close_payload(1000)) + F(OP_PING))
        c.expect_message(OP_TEXT, big)
        c.expect_message(OP_TEXT, "Hello World!")
        c.expect_close(1000, reply=False, allow_reset=True)
    echo.assert_alive()


@pytest.mark.parametrize("payload,want", [
    pytest.param(b"", [NO_CODE, 1000], id="7.3.1-close-empty"),
    pytest.param(b"a", 1002, id="7.3.2-close-1-byte"),
    pytest.param(close_payload(1000), 1000, id="7.3.3-close-1000"),
    pytest.param(close_payload(1000, "Hello World!"), 1000,
                 id="7.3.4-close-1000-reason"),
    pytest.param(close_payload(1000, "*" * 123), 1000,
                 id="7.3.5-close-reason-123"),
    pytest.param(close_payload(1000, "*" * 124), 1002,
                 id="7.3.6-close-reason-124-too-long"),
    pytest.param(INVALID_REASON, 1007, id="7.5.1-close-reason-invalid-utf8"),
    pytest.param(close_payload(1000, "\u00b5@\u00df\U0010ffff"), 1000,
                 id="7.x-close-reason-valid-utf8"),
])
def test_7_3_close_payloads(echo, payload, want):
    with echo.connect() as c:
        c.send_close(payload=payload)
        if want in (1002, 1007):
            c.expect_close(want)
        else:
            c.expect_close(want, reply=False, allow_reset=False)
    echo.assert_alive()


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
               3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999]


@pytest.mark.parametrize("code", [
    pytest.param(c, id="7.7.%d-valid-code-%d" % (i, c))
    for i, c in enumerate(VALID_CODES, 1)])
def test_7_7_valid_close_codes(echo, code):
    """Clean close, with 1000 or the code echoed (Autobahn accepts both)."""
    with echo.connect() as c:
        c.send_close(code)
        c.expect_close([1000, code], reply=False, allow_reset=False)
    echo.assert_alive()


@pytest.mark.parametrize("code", [
    pytest.param(c, id="7.9.%d-invalid-code-%d" % (i, c))
    for i, c in enumerate(INVALID_CODES, 1)] + [
    pytest.param(5000, id="7.13.1-code-5000"),
    pytest.param(65535, id="7.13.2-code-65535"),
])
def test_7_9_invalid_close_codes(echo, code):
    with echo.connect() as c:
        c.send_close(code)
        c.expect_close(1002)
    echo.assert_alive()


# ------------------------------------------------------------ extras

@pytest.mark.parametrize("opcode,payload", [
    pytest.param(OP_TEXT, HW, id="unmasked-text"),
    pytest.param(OP_BINARY, BIN8, id="unmasked-binary"),
    pytest.param(OP_PING, HW, id="unmasked-ping"),
    pytest.param(OP_CLOSE, close_payload(1000), id="unmasked-close"),
])
def test_unmasked_client_frame(echo, opcode, payload):
    with echo.connect() as c:
        c.send(F(opcode, payload, mask=False))
        c.expect_close(1002, allow_reset=True)
    echo.assert_alive()


@pytest.mark.parametrize("frames,code", [
    pytest.param([F(3)], 1002, id="reserved-opcode"),
    pytest.param([F(OP_TEXT, INVALID_631)], 1007, id="invalid-utf8"),
    pytest.param([F(OP_CLOSE, b"a")], 1002, id="close-1-byte"),
])
def test_failed_connection_closed_without_client_reply(echo, frames, code):
    """Failing the connection closes TCP at once: the broker must not wait
    for our close reply (we never send one)."""
    with echo.connect() as c:
        c.send(b"".join(frames))
        c.expect_close(code, reply=False, allow_reset=False)
    echo.assert_alive()


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_max_message_size_exact_limit_ok(echo_small, opcode):
    payload = b"x" * 65536
    with echo_small.connect() as c:
        c.send_frame(opcode, payload)
        c.expect_message(opcode, payload)
        c.send(build_fragmented(opcode, payload, 16384))
        c.expect_message(opcode, payload)
        c.close_handshake(1000)
    echo_small.assert_alive()


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
@pytest.mark.parametrize("shape", [
    "one-frame-65537", "one-frame-70000", "one-frame-2^40",
    "second-fragment-crosses-limit", "third-fragment-crosses-limit"])
def test_max_message_size_1009_on_header(echo_small, opcode, shape):
    """Only the header that shows the limit is exceeded is sent; the 1009
    close must come without waiting for any payload of that frame."""
    with echo_small.connect() as c:
        if shape.startswith("one-frame"):
            n = {"one-frame-65537": 65537, "one-frame-70000": 70000,
                 "one-frame-2^40": 1 << 40}[shape]
            c.send(build_frame(opcode, b"", length=n))
        elif shape == "second-fragment-crosses-limit":
            c.send(F(opcode, b"a" * 40000, fin=False) +
                   build_frame(OP_CONT, b"", length=30000))
        else:
            c.send(F(opcode, b"a" * 30000, fin=False) +
                   F(OP_CONT, b"b" * 30000, fin=False) +
                   build_frame(OP_CONT, b"", fin=True, length=6000))
        c.expect_close(1009, timeout=FAIL_FAST, allow_reset=True)
    echo_small.assert_alive()


# ------------------------------------------------------------ 9 performance

SIZES_9 = [("64KiB", 64 << 10), ("256KiB", 256 << 10), ("1MiB", 1 << 20)]


def _payload(opcode, n):
    if opcode == OP_TEXT:
        unit = "BAsd7&jh23-\u00e9\u20ac\U0001F600".encode("utf-8")
        data = unit * (n // len(unit) + 1)
        data = data[:n]
        while True:          # cut on a character boundary
            try:
                data.decode("utf-8")
                break
            except UnicodeDecodeError:
                data = data[:-1]
        return data + b"*" * (n - len(data))
    unit = bytes(range(256))
    return (unit * (n // 256 + 1))[:n]


@pytest.mark.parametrize("frag", [None, 65536, 4096],
                         ids=["one-frame", "frags-64KiB", "frags-4KiB"])
@pytest.mark.parametrize("size", [s for _, s in SIZES_9],
                         ids=[n for n, _ in SIZES_9])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["9-text", "9-binary"])
def test_9_large_messages(echo_big, opcode, size, frag):
    payload = _payload(opcode, size)
    with echo_big.connect(timeout=20) as c:
        t0 = time.monotonic()
        if frag is None:
            c.send_frame(opcode, payload)
        else:
            c.send(build_fragmented(opcode, payload, frag))
        c.expect_message(opcode, payload, timeout=20)
        elapsed = time.monotonic() - t0
        c.close_handshake(1000)
    assert elapsed < 10, "echo of %d bytes took %.1fs" % (size, elapsed)
    echo_big.assert_alive()


@pytest.mark.parametrize("size", [0, 16, 4096])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["9.7-text", "9.8-binary"])
def test_9_7_9_8_round_trips(echo_big, opcode, size):
    """1000 messages, each sent after the previous echo came back."""
    payload = _payload(opcode, size)
    frame = F(opcode, payload)
    with echo_big.connect() as c:
        for _ in range(1000):
            c.send(frame)
            c.expect_message(opcode, payload)
        c.close_handshake(1000)
    echo_big.assert_alive()
