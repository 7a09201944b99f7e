"""contrib/grafana/chorus.json queries only what /metrics exports: every
metric name in its expressions (and the labels they group by) must appear
in the exposition of a real chorusd that has had some traffic, and the
dashboard must be well formed (unique panel ids, rows of 24 columns, a
query per target)."""
import json
import os
import re

from conftest import http_request, run_cli

DASHBOARD = os.path.join(os.path.dirname(__file__), "..", "..", "contrib",
                         "grafana", "chorus.json")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def load():
    with open(DASHBOARD) as f:
        return json.load(f)


def expressions(dash):
    for p in dash["panels"]:
        for t in p.get("targets", []):
            yield t["expr"]
    for v in dash["templating"]["list"]:
        yield v["query"]["query"]


def exported(text):
    """{metric name: set of label names} from a Prometheus exposition."""
    names = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.setdefault(name, set())
            if kind == "histogram":
                for s in HISTOGRAM_SUFFIXES:
                    names.setdefault(name + s, set()).add("le")
        elif line and not line.startswith("#"):
            m = re.match(r"([a-z_:]+)(?:\{([^}]*)\})? ", line)
            assert m, line
            labels = names.setdefault(m.group(1), set())
            for pair in filter(None, (m.group(2) or "").split(",")):
                labels.add(pair.split("=")[0])
    return names


def test_dashboard_is_well_formed():
    dash = load()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        assert all(t["expr"].strip() for t in p["targets"]), p["title"]
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("connections", "subscriptions", "publishes", "deliveries",
                  "commit latency", "slow consumer", "rejected", "replay"):
        assert topic in titles, topic


def test_queries_use_only_exported_metrics(broker):
    # Some traffic (a publish, so a commit; a history read). Labelled
    # families list every label value from the start, at 0.
    assert run_cli("pub", "--url", broker.url, "dash", '{"n":1}').returncode \
        == 0
    assert run_cli("history", "--url", broker.url, "dash").returncode == 0
    status, _, body = http_request(broker, "GET", "/metrics")
    assert status == 200
    have = exported(body.decode())
    for expr in expressions(load()):
        for name in re.findall(r"\bchorus_[a-z_]+", expr):
            assert name in have, f"{name} (in {expr}) is not exported"
            m = re.search(r"by \(([^)]*)\) \((?:rate\()?" + name, expr)
            if m:
                for label in (lb.strip() for lb in m.group(1).split(",")):
                    if label not in ("instance", "job"):
                        assert label in have[name], \
                            f"{name} has no label {label}"
