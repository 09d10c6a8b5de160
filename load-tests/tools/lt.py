#!/usr/bin/env python3
"""Helpers of load-tests/run.sh.

lt.py brief-wrk        < WRKJSON payload   one log line
lt.py pick-oha         < oha JSON          the fields kept from an open-loop run (JSON)
lt.py report OUTDIR                        summary.md (markdown) from OUTDIR/results.jsonl
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

TARGETS = ["direct", "nginx", "bare", "prism"]
NAMES = {"direct": "direct", "nginx": "nginx", "bare": "bare Pingora", "prism": "Prism"}
# The issue's reference figures (same machine kind, proxy on one core, wrk 32 connections).
ISSUE_REF = {
    "chat32": {"direct": 65000, "nginx": 43000, "bare": 21000},
    "sse20": {"direct": 27000, "nginx": 17000, "bare": 7300},
}
SCENARIO_TEXT = {
    "chat32": "non-streaming chat, 32 connections",
    "chat256": "non-streaming chat, 256 connections",
    "sse20": "SSE stream, 20 chunks, 32 connections",
    "body64k": "64 KiB request body, 32 connections",
    "body1m": "1 MiB request body, 32 connections",
}
# Prism's targets from the issue: (scenario, numerator, denominator, minimum ratio)
RATIO_TARGETS = [
    ("chat32", "prism", "bare", 1.0),
    ("chat32", "prism", "nginx", 0.6),
    ("chat256", "prism", "bare", 1.0),
    ("chat256", "prism", "nginx", 0.6),
    ("sse20", "prism", "bare", 1.0),
    ("sse20", "prism", "nginx", 0.5),
]


def brief_wrk():
    d = json.load(sys.stdin)
    errors = sum(v for k, v in d.items() if k.startswith("err_"))
    print(
        f"{d.get('rps', 0):.0f} rps, p50 {d.get('p50_us', 0) / 1000:.2f} ms, "
        f"p99 {d.get('p99_us', 0) / 1000:.2f} ms, errors {errors}"
    )


def pick_oha():
    text = sys.stdin.read()
    if not text.strip():
        return
    d = json.loads(text)
    s = d.get("summary", {})
    pct = d.get("latencyPercentiles", {})
    codes = d.get("statusCodeDistribution", {})
    errs = d.get("errorDistribution", {})
    out = {
        "rps": s.get("requestsPerSec"),
        "success": s.get("successRate"),
        "p50_ms": None if pct.get("p50") is None else pct["p50"] * 1000,
        "p90_ms": None if pct.get("p90") is None else pct["p90"] * 1000,
        "p99_ms": None if pct.get("p99") is None else pct["p99"] * 1000,
        "p999_ms": None if pct.get("p99.9") is None else pct["p99.9"] * 1000,
        "max_ms": None if s.get("slowest") is None else s["slowest"] * 1000,
        "status": codes,
        "errors": sum(errs.values()) if isinstance(errs, dict) else errs,
        "error_kinds": errs if isinstance(errs, dict) else {},
    }
    print(json.dumps(out))


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_int(v):
    return "–" if v is None else f"{v:,.0f}"


def fmt_ratio(v):
    return "–" if v is None else f"{v:.2f}×"


def verdict(ok):
    return "–" if ok is None else ("met" if ok else "**missed**")


def report(outdir):
    out = Path(outdir)
    results = out / "results.jsonl"
    text = results.read_text() if results.exists() else ""
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    machine = (out / "machine.txt").read_text() if (out / "machine.txt").exists() else ""

    rps = defaultdict(list)  # (scenario, target) -> [rps]
    cpu_us = defaultdict(list)  # (scenario, target) -> [proxy CPU µs per request]
    p99 = defaultdict(list)
    errors = defaultdict(int)
    hwm_per_req = defaultdict(list)
    oha = defaultdict(lambda: defaultdict(list))
    memory = {}
    bodyhold = {}
    died = [r for r in rows if r.get("scenario") == "process-died"]
    busy = [r for r in rows if r.get("scenario") == "busy"]
    rows = [r for r in rows if r.get("scenario") != "busy"]
    logged = defaultdict(lambda: [0, 0])  # scenario -> [access-log lines, wrk requests] for Prism
    for r in rows:
        if r.get("scenario") == "process-died":
            continue
        if r.get("access_log_lines") is not None and "wrk" in r:
            logged[r["scenario"]][0] += r["access_log_lines"]
            logged[r["scenario"]][1] += r["wrk"].get("requests", 0)
        key = (r["scenario"], r["target"])
        if "wrk" in r:
            w = r["wrk"]
            rps[key].append(w.get("rps", 0))
            p99[key].append(w.get("p99_us"))
            errors[key] += sum(v for k, v in w.items() if k.startswith("err_"))
            if w.get("requests"):
                cpu_us[key].append(r["cpu_s"] * 1e6 / w["requests"])
            base = r.get("rss_scenario_start_kb", r.get("rss_before_kb"))
            if r.get("hwm_kb") and base is not None:
                hwm_per_req[key].append(max(0, r["hwm_kb"] - base) / 1024 / r["conns"])
        elif "oha" in r:
            for k, v in r["oha"].items():
                if isinstance(v, (int, float)):
                    oha[r["target"]][k].append(v)
        elif r["scenario"] == "memory":
            memory[(r["target"], r["streams"])] = r
        elif r["scenario"] == "bodyhold":
            bodyhold[r["target"]] = r

    def m(scen, target):
        return med(rps.get((scen, target), []))

    def ratio(scen, a, b):
        x, y = m(scen, a), m(scen, b)
        return None if not x or not y else x / y

    lines = ["# Load-test summary", "", "```", machine.strip(), "```", ""]
    if busy:
        lines += ["**Other heavy processes were seen during the run** (figures taken on a busy machine): "
                  + "; ".join(f"at {r['when']} before {r['during']}: {r['procs']}" for r in busy), ""]
    else:
        lines += ["No fuzzer or build was seen on the machine at any scenario's start.", ""]
    checks = []

    # ---- throughput
    lines += [
        "## Throughput (requests/s, median of the repetitions)",
        "",
        "| scenario | direct | nginx | bare Pingora | Prism | Prism / bare | Prism / nginx | bare / nginx | nginx / direct |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scen in ["chat32", "chat256", "sse20", "body64k", "body1m"]:
        if not any((scen, t) in rps for t in TARGETS):
            continue
        lines.append(
            f"| {SCENARIO_TEXT[scen]} | "
            + " | ".join(fmt_int(m(scen, t)) for t in TARGETS)
            + f" | {fmt_ratio(ratio(scen, 'prism', 'bare'))} | {fmt_ratio(ratio(scen, 'prism', 'nginx'))}"
            + f" | {fmt_ratio(ratio(scen, 'bare', 'nginx'))} | {fmt_ratio(ratio(scen, 'nginx', 'direct'))} |"
        )
    lines += [
        "",
        "CPU time of the process under test per request (µs; for `direct`, the mock's), and p99 latency (ms):",
        "",
        "| scenario | CPU µs/req: mock | nginx | bare Pingora | Prism | p99 ms: direct | nginx | bare Pingora | Prism |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scen in ["chat32", "chat256", "sse20", "body64k", "body1m", "anthropic"]:
        tg = TARGETS if scen != "anthropic" else ["prism", "prism-anthropic"]
        if not any((scen, t) in rps for t in tg):
            continue
        if scen == "anthropic":
            for t, label in (("prism", "anthropic: OpenAI pass-through stream"), ("prism-anthropic", "anthropic: translated stream")):
                c_p, q_p = med(cpu_us.get(("anthropic", t), [])), med(p99.get(("anthropic", t), []))
                lines.append(
                    f"| {label} | – | – | – | {'–' if c_p is None else f'{c_p:.1f}'} | – | – | – | "
                    f"{'–' if q_p is None else f'{q_p / 1000:.2f}'} |"
                )
            continue
        c = [med(cpu_us.get((scen, t), [])) for t in TARGETS]
        q = [med(p99.get((scen, t), [])) for t in TARGETS]
        lines.append(
            f"| {scen} | "
            + " | ".join("–" if v is None else f"{v:.1f}" for v in c)
            + " | "
            + " | ".join("–" if v is None else f"{v / 1000:.2f}" for v in q)
            + " |"
        )
    if logged:
        lines += ["", "Prism's access log was on (to a file): lines written / requests wrk completed: "
                  + ", ".join(f"{k} {a:,} / {b:,}" for k, (a, b) in logged.items()) + "."]
    if died:
        lines += ["", "**Processes that died during the run and were restarted:** "
                  + ", ".join(f"{r['target']} at {r['when']} (exit status {r['status']})" for r in died) + "."]
    bad = {k: v for k, v in errors.items() if v}
    if bad:
        lines += ["", "Errors counted by wrk (socket errors, including a server closing the connection after "
                  "a response, and non-2xx answers): "
                  + ", ".join(f"{s}/{t}: {n}" for (s, t), n in sorted(bad.items()))]
    else:
        lines += ["", "wrk counted no socket error and no non-2xx answer in any measurement."]
    refs = []
    for scen, ref in ISSUE_REF.items():
        for t, v in ref.items():
            got = m(scen, t)
            if got:
                refs.append(f"{scen} {NAMES[t]} {got:,.0f} (issue: ≈{v:,})")
    if refs:
        lines += ["", "Against the issue's reference figures: " + "; ".join(refs) + "."]

    for scen, a, b, want in RATIO_TARGETS:
        got = ratio(scen, a, b)
        checks.append((f"{scen}: Prism / {NAMES[b]} ≥ {want}", fmt_ratio(got), None if got is None else got >= want))

    # ---- translated stream
    pt, tr = m("anthropic", "prism"), m("anthropic", "prism-anthropic")
    if pt and tr:
        lines += [
            "",
            "## Translated Anthropic stream (Prism only, 20 chunks, 32 connections)",
            "",
            "| Prism OpenAI pass-through stream | Prism Anthropic → OpenAI translated stream | translated / pass-through |",
            "|---:|---:|---:|",
            f"| {fmt_int(pt)} | {fmt_int(tr)} | {fmt_ratio(tr / pt)} |",
        ]
        checks.append(("translated Anthropic stream ≥ 0.8× pass-through", fmt_ratio(tr / pt), tr / pt >= 0.8))

    # ---- open loop
    if oha:
        def om(t, k):
            return med(oha.get(t, {}).get(k, []))

        lines += [
            "",
            "## Open loop at a fixed rate (oha -q, latency corrected from the intended send time)",
            "",
            "| target | achieved rps | p50 ms | p99 ms | p99.9 ms | p50 added over direct | p99 added over direct |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        d50, d99 = om("direct", "p50_ms"), om("direct", "p99_ms")
        for t in TARGETS:
            if t not in oha:
                continue
            a50 = None if om(t, "p50_ms") is None or d50 is None else om(t, "p50_ms") - d50
            a99 = None if om(t, "p99_ms") is None or d99 is None else om(t, "p99_ms") - d99
            lines.append(
                f"| {NAMES[t]} | {fmt_int(om(t, 'rps'))} | {om(t, 'p50_ms') or 0:.3f} | {om(t, 'p99_ms') or 0:.3f} | "
                f"{om(t, 'p999_ms') or 0:.3f} | "
                + ("–" if t == "direct" or a50 is None else f"{a50:+.3f} ms")
                + " | "
                + ("–" if t == "direct" or a99 is None else f"{a99:+.3f} ms")
                + " |"
            )
        if d50 is not None and om("prism", "p50_ms") is not None:
            a50 = om("prism", "p50_ms") - d50
            checks.append(("open loop: Prism p50 added ≤ 0.5 ms", f"{a50:+.3f} ms", a50 <= 0.5))
        if d99 is not None and om("prism", "p99_ms") is not None and om("nginx", "p99_ms") is not None:
            ap, an = om("prism", "p99_ms") - d99, om("nginx", "p99_ms") - d99
            checks.append(
                ("open loop: Prism p99 added ≤ nginx's", f"{ap:+.3f} ms vs nginx {an:+.3f} ms", ap <= an)
            )

    # ---- memory
    if memory:
        lines += [
            "",
            "## Memory with concurrent slow streams (resident set of the proxy, all its processes)",
            "",
            "| target | streams | streams started / finished | idle MiB | with the streams open MiB | MiB per 1,000 streams |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        per_k = {}
        for (t, n), r in sorted(memory.items(), key=lambda kv: (kv[0][1], TARGETS.index(kv[0][0]))):
            h = r.get("holder", {})
            started = h.get("started", 0)
            per = (r["peak_kb"] - r["idle_kb"]) / 1024 / max(1, started) * 1000 if started else None
            per_k[(t, n)] = per
            lines.append(
                f"| {NAMES[t]} | {n:,} | {started:,} / {h.get('finished', 0):,} | {r['idle_kb'] / 1024:.1f} | "
                f"{r['peak_kb'] / 1024:.1f} | {'–' if per is None else f'{per:.1f}'} |"
            )
        for n in sorted({n for _, n in memory}):
            p, b = per_k.get(("prism", n)), per_k.get(("bare", n))
            if p is not None and b is not None:
                checks.append(
                    (f"memory per 1,000 streams at {n:,}: Prism ≤ bare Pingora", f"{p:.1f} vs {b:.1f} MiB", p <= b)
                )

    # ---- 1 MiB body
    if any(k[0] == "body1m" for k in hwm_per_req):
        lines += [
            "",
            "## Request bodies: peak resident memory added per in-flight request",
            "",
            "(peak RSS during each run minus RSS before the scenario's warm-up, divided by the 32 connections; "
            "the peak is reset with `/proc/PID/clear_refs` before each run. An upper bound on one side, a "
            "lower one on the other: not every connection has a request inside the proxy at every moment, and "
            "memory freed by earlier scenarios is reused)",
            "",
            "| body | nginx | bare Pingora | Prism |",
            "|---|---:|---:|---:|",
        ]
        for scen, size in (("body64k", 64 / 1024), ("body1m", 1.0)):
            vals = [med(hwm_per_req.get((scen, t), [])) for t in ("nginx", "bare", "prism")]
            lines.append(
                f"| {scen} | " + " | ".join("–" if v is None else f"{v:.2f} MiB ({v / size:.1f} bodies)" for v in vals) + " |"
            )
    if bodyhold:
        lines += [
            "",
            "## 1 MiB bodies held inside the proxy",
            "",
            "(a fresh proxy; K requests with a 1 MiB body sent at once, the mock delays its answer, RSS sampled "
            "while all K wait on the upstream)",
            "",
            "| target | held | idle MiB | holding MiB | MiB per held request | answered |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for t in ("nginx", "bare", "prism"):
            r = bodyhold.get(t)
            if not r:
                continue
            per = (r["peak_kb"] - r["idle_kb"]) / 1024 / r["held"]
            lines.append(
                f"| {NAMES[t]} | {r['held']} | {r['idle_kb'] / 1024:.1f} | {r['peak_kb'] / 1024:.1f} | {per:.2f} | "
                f"{r.get('holder', {}).get('finished', 0)} |"
            )
        # What the body costs is Prism's memory per request over bare Pingora's: bare Pingora
        # streams the body through and holds none of it, so its figure is the connection
        # buffers both proxies have.
        r, b = bodyhold.get("prism"), bodyhold.get("bare")
        if r and b:
            per = (r["peak_kb"] - r["idle_kb"]) / 1024 / r["held"]
            base = (b["peak_kb"] - b["idle_kb"]) / 1024 / b["held"]
            checks.append(("1 MiB body: ≤ one body copy held per request in Prism (over bare Pingora's buffers)",
                           f"{per:.2f} MiB per held request, bare Pingora {base:.2f}: {per - base:.2f} MiB for the body",
                           per - base <= 1.05))
    pv = med(hwm_per_req.get(("body1m", "prism"), []))
    bv = med(hwm_per_req.get(("body1m", "bare"), []))
    if pv is not None and bv is not None:
        checks.append(("1 MiB body under load (wrk, 32 connections): ≤ one body per connection in Prism (over bare Pingora's buffers)",
                       f"{pv:.2f} MiB per connection, bare Pingora {bv:.2f}: {pv - bv:.2f} MiB for the body",
                       pv - bv <= 1.05))

    lines += ["", "## Prism's targets", "", "| target | measured | verdict |", "|---|---|---|"]
    for name, got, ok in checks:
        lines.append(f"| {name} | {got} | {verdict(ok)} |")
    print("\n".join(lines))


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "brief-wrk":
        brief_wrk()
    elif cmd == "pick-oha":
        pick_oha()
    elif cmd == "report" and len(sys.argv) == 3:
        report(sys.argv[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
