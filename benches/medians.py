#!/usr/bin/env python3
"""Print criterion's medians (target/criterion/*/new/estimates.json) as a Markdown table:
benchmark id, bytes per op, median time per op, throughput (bytes / median).
Run from the repository root after `cargo bench`."""
import json, os, sys
root = "target/criterion"
rows = []
for dirpath, dirs, files in os.walk(root):
    if dirpath.endswith("/new") and "estimates.json" in files:
        bid = os.path.relpath(os.path.dirname(dirpath), root)
        est = json.load(open(os.path.join(dirpath, "estimates.json")))
        bm = json.load(open(os.path.join(dirpath, "benchmark.json")))
        med = est["median"]["point_estimate"]  # ns
        thr = bm.get("throughput") or {}
        b = thr.get("Bytes")
        rows.append((bm.get("full_id", bid), med, b))
def fmt_t(ns):
    if ns < 1e3: return f"{ns:.0f} ns"
    if ns < 1e6: return f"{ns/1e3:.2f} µs"
    return f"{ns/1e6:.2f} ms"
for fid, med, b in sorted(rows):
    tp = f"{b/(med/1e9)/2**20:.0f} MiB/s" if b else ""
    print(f"| `{fid}` | {b or ''} | {fmt_t(med)} | {tp} |")
