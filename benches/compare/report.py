"""Turns compare.sh's raw results (one line per run, key=value fields) into the markdown
tables of benches/README.md: medians over rounds, each with its ratio to nginx; then the work
per CPU-second side by side, with what Portico costs over the floor (bare Pingora)."""
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
    (
        "floor",
        "floor + Portico's timeouts"
        if os.environ.get("FLOOR_TIMEOUTS") == "1"
        else "floor (Pingora alone)",
    ),
    ("pingap", "pingap"),
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

# Work per proxy CPU-second side by side, and Portico's extra CPU per request over the floor:
# floor / Portico - 1 from the medians, and in brackets the median of that ratio over the
# rounds (each round runs the targets one after another, so pairing cancels drift between
# rounds).
def eff_key(sc):
    return "mib_per_cpu" if sc == "1m" else "req_per_cpu"


def paired(sc, a, b):
    ra = {r["round"]: float(r[eff_key(sc)]) for r in runs.get((sc, a), []) if r.get("check") == "ok"}
    rb = {r["round"]: float(r[eff_key(sc)]) for r in runs.get((sc, b), []) if r.get("check") == "ok"}
    vals = [ra[k] / rb[k] for k in ra if k in rb and rb[k] > 0]
    return statistics.median(vals) if vals else None


ORDER = ["floor", "portico", "portico5", "pingap", "nginx", "haproxy"]
names = dict(TARGETS)
side = [(t, names[t]) for t in ORDER if any(k[1] == t for k in runs)]
if any(t == "floor" for t, _ in side):
    over = [(t, name) for t, name in side if t in ("portico", "portico5", "pingap")]
    out.append("")
    out.append(
        "| per proxy CPU-second (medians; × nginx) | "
        + " | ".join(name for _, name in side)
        + " | "
        + " | ".join(f"{name} over the floor" for _, name in over)
        + (" | Portico ÷ pingap |" if any(t == "pingap" for t, _ in side) else " |")
    )
    out.append("|---|" + "---:|" * (len(side) + len(over) + (1 if any(t == "pingap" for t, _ in side) else 0)))
    for sc, title in SCENARIOS:
        if not any(runs.get((sc, t)) for t, _ in side):
            continue
        base = med(runs.get((sc, "nginx"), []), eff_key(sc))
        effs = {t: med(runs.get((sc, t), []), eff_key(sc)) for t, _ in side}
        unit = " MiB" if sc == "1m" else ""
        cells = [f"{fmt(effs[t])}{unit}{ratio(effs[t], base)}" for t, _ in side]
        floor = effs.get("floor")
        for t, _ in over:
            if floor and effs.get(t):
                p = paired(sc, "floor", t)
                cells.append(f"{100 * (floor / effs[t] - 1):+.0f}% [{100 * (p - 1):+.0f}%]" if p else f"{100 * (floor / effs[t] - 1):+.0f}%")
            else:
                cells.append("—")
        if any(t == "pingap" for t, _ in side):
            p, q = effs.get("portico"), effs.get("pingap")
            pr = paired(sc, "portico", "pingap")
            cells.append(f"{p / q:.2f}× [{pr:.2f}×]" if p and q and pr else "—")
        out.append(f"| {title} | " + " | ".join(cells) + " |")
    out.append("")
    out.append(
        "Over the floor: CPU per request beyond the floor's, floor ÷ target − 1 of the medians above; in "
        "brackets the median of the same ratio over the paired rounds. Portico ÷ pingap likewise."
    )

others = [float(r["other_cpu_pct"]) for rows in runs.values() for r in rows if "other_cpu_pct" in r]
if others:
    out.append("")
    out.append(
        f"CPU used by other processes during the runs (whole machine, % of 2 cores): median "
        f"{statistics.median(others):.1f}%, max {max(others):.1f}%."
    )
print("\n".join(out))
