"""Turns compare.sh's raw results (one line per run, key=value fields) into the markdown
tables of benches/README.md: medians over rounds, each with its ratio to nginx."""
import os
import statistics
import sys
from collections import defaultdict

SCENARIOS = [
    ("keepalive", "HTTP/1.1 keep-alive, /small"),
    ("handshake", "full TLS handshake per request, /small"),
    ("h2", "HTTP/2, 16 conns x 16 streams, /small"),
    ("1m", "HTTP/1.1 keep-alive, /1m (1 MiB)"),
]
TARGETS = [
    ("portico", "Portico"),
    ("portico5", "Portico + 5 plugins"),
    ("alt", os.environ.get("ALT_LABEL") or "Portico (PORTICO_ALT)"),
    ("nginx", "nginx"),
    ("haproxy", "HAProxy"),
    ("direct", "direct to origin (ceiling)"),
]

runs = defaultdict(list)
memory = defaultdict(list)
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split())
    if f.get("kind") == "run":
        runs[(f["scenario"], f["target"])].append(f)
    elif f.get("kind") == "memory":
        memory[f["target"]].append(f)


def med(rows, key):
    vals = [float(r[key]) for r in rows if r.get(key) not in (None, "", "nan")]
    return statistics.median(vals) if vals else None


def fmt(v, digits=0):
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def ratio(v, base):
    if v is None or not base:
        return ""
    return f" ({v / base:.2f}×)"


out = []
out.append("| scenario | proxy | throughput | p50 ms | p99 ms | proxy CPU s | per CPU-second | runs ok |")
out.append("|---|---|---:|---:|---:|---:|---:|---|")
for sc, title in SCENARIOS:
    base = runs.get((sc, "nginx"), [])
    b_tp = med(base, "mibps" if sc == "1m" else "rps")
    b_p50, b_p99, b_cpu = med(base, "p50_ms"), med(base, "p99_ms"), med(base, "cpu_s")
    b_eff = med(base, "mib_per_cpu" if sc == "1m" else "req_per_cpu")
    for t, name in TARGETS:
        rows = runs.get((sc, t))
        if not rows:
            continue
        unit = " MiB/s" if sc == "1m" else " req/s"
        eunit = " MiB" if sc == "1m" else " req"
        tp = med(rows, "mibps" if sc == "1m" else "rps")
        eff = med(rows, "mib_per_cpu" if sc == "1m" else "req_per_cpu")
        p50, p99, cpu = med(rows, "p50_ms"), med(rows, "p99_ms"), med(rows, "cpu_s")
        ok = sum(1 for r in rows if r.get("check") == "ok")
        direct = t == "direct"
        out.append(
            f"| {title} | {name} | {fmt(tp, 1 if sc == '1m' else 0)}{unit}{'' if direct else ratio(tp, b_tp)} "
            f"| {fmt(p50, 2)}{'' if direct else ratio(p50, b_p50)} | {fmt(p99, 2)}{'' if direct else ratio(p99, b_p99)} "
            f"| {'—' if direct else fmt(cpu, 2) + ratio(cpu, b_cpu)} "
            f"| {'—' if direct else fmt(eff, 0) + eunit + ratio(eff, b_eff)} | {ok}/{len(rows)} |"
        )
if memory:
    out.append("")
    out.append("| 2,000 idle TLS connections | RSS before MiB | RSS with them open MiB | growth KiB per connection | connections open |")
    out.append("|---|---:|---:|---:|---:|")
    b = med(memory.get("nginx", []), "kib_per_conn")
    for t, name in TARGETS:
        rows = memory.get(t)
        if not rows:
            continue
        per = med(rows, "kib_per_conn")
        out.append(
            f"| {name} | {fmt(med(rows, 'rss_before_kib') / 1024, 1)} | {fmt(med(rows, 'rss_after_kib') / 1024, 1)} "
            f"| {fmt(per, 1)}{ratio(per, b)} | {fmt(med(rows, 'open'))} |"
        )
others = [float(r["other_cpu_pct"]) for rows in runs.values() for r in rows if "other_cpu_pct" in r]
if others:
    out.append("")
    out.append(
        f"CPU used by other processes during the runs (whole machine, % of 2 cores): median "
        f"{statistics.median(others):.1f}%, max {max(others):.1f}%."
    )
print("\n".join(out))
