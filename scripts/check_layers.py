#!/usr/bin/env python3
"""Checks the broker's one-way dependencies: which file calls (or names) a
function defined in which other file. Fails when a folder names a function
of a folder above it (core < net, store < pubsub < http < broker/*.c) or
when calls between modules form a cycle (a module is a header and the
files that implement it, like conn.h: conn.c, conn_out.c, conn_ws.c). Usage: check_layers.py [broker/]"""
import os
import re
import sys

RANK = {"core": 0, "net": 1, "store": 1, "pubsub": 2, "http": 3, "": 4}
# Upward edges accepted, each with its reason (they make no cycle).
ALLOWED = {
    ("core/metrics.c", "net/send_batch.c"):
        "the /metrics page reads each loop's io_uring state",
}
DEF = re.compile(r"^(?!static\b|typedef\b|extern\b)[A-Za-z_][\w \*]*?\b(\w+)\(")
IDENT = re.compile(r"\b([A-Za-z_]\w*)\b")
NOISE = re.compile(r"/\*.*?\*/|//[^\n]*|\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'",
                   re.S)


def layer(path, root):
    parts = os.path.relpath(path, root).split(os.sep)
    return parts[0] if len(parts) > 1 else ""


def sources(root):
    for d, _, files in os.walk(root):
        for f in sorted(files):
            if f.endswith(".c"):
                yield os.path.join(d, f)


def definitions(path):
    """Names of the non-static functions path defines."""
    lines = open(path).read().split("\n")
    names = set()
    for i, line in enumerate(lines):
        m = DEF.match(line)
        if not m or line.rstrip().endswith(";"):
            continue
        for nxt in lines[i:i + 8]:
            if nxt == "{":
                names.add(m.group(1))
                break
            if nxt.rstrip().endswith(";"):
                break
    return names


def module(path):
    """The header a file implements, found by name (conn_ws.c: conn.h),
    as a .c path; or the file itself. Modules are what is checked."""
    d, base = os.path.split(path[:-2])
    parts = base.split("_")
    for k in range(len(parts), 0, -1):
        name = "_".join(parts[:k])
        if os.path.exists(os.path.join(d, name + ".h")):
            return os.path.join(d, name + ".c")
    return path


def graph(root):
    files = list(sources(root))
    owner = {}
    for f in files:
        for name in definitions(f):
            owner[name] = module(f)
    edges = {module(f): {} for f in files}
    for f in files:
        text = NOISE.sub(" ", open(f).read())
        for name in set(IDENT.findall(text)):
            g = owner.get(name)
            if g and g != module(f):
                edges[module(f)].setdefault(g, name)
    return edges


def cycles(edges):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "broker")
    root = os.path.normpath(root)
    edges = graph(root)
    bad = 0
    for f, targets in sorted(edges.items()):
        for g, name in sorted(targets.items()):
            lf, lg = layer(f, root), layer(g, root)
            pair = (os.path.relpath(f, root), os.path.relpath(g, root))
            if RANK[lg] > RANK[lf] and pair not in ALLOWED:
                print(f"upward: {os.path.relpath(f, root)} names {name}() "
                      f"of {os.path.relpath(g, root)}")
                bad += 1
    for comp in cycles(edges):
        print("cycle: " + " ".join(os.path.relpath(c, root) for c in comp))
        bad += 1
    if bad:
        return 1
    print("layers ok: no upward names, no cycles among "
          f"{len(edges)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
