#!/usr/bin/env python3
"""Collect criterion results into one flat CSV that pandas reads.

Usage: python3 scripts/bench-records.py OUT.csv [GROUP_PREFIX ...]
Reads target/criterion/<group>/<function>/<size>/new/{benchmark,estimates}.json (written by
`cargo bench`) and writes one row per benchmark: group, function, size, median time and its 95%
interval (seconds), elements per call, elements per second, plus the machine (CPU model, cores,
GPU adapter from `collapse info --json`), the git revision and the date.
"""
import csv
import datetime
import json
import os
import subprocess
import sys

root = os.path.join(os.path.dirname(__file__), "..")
crit = os.path.join(root, "target", "criterion")


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=60).stdout.strip()
    except Exception:
        return ""


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def adapter():
    out = sh(os.path.join(root, "target", "release", "collapse"), "info", "--json")
    try:
        info = json.loads(out)
        return info["adapters"][info["chosen"]["index"]]["name"]
    except Exception:
        return "none"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    prefixes = sys.argv[2:]
    machine = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "adapter": adapter(),
        "git_rev": sh("git", "rev-parse", "--short", "HEAD"),
        "date": datetime.date.today().isoformat(),
    }
    rows = []
    for dirpath, _, files in os.walk(crit):
        if not dirpath.endswith(os.path.join("", "new")) or "benchmark.json" not in files:
            continue
        bench = json.load(open(os.path.join(dirpath, "benchmark.json")))
        est = json.load(open(os.path.join(dirpath, "estimates.json")))
        group = bench["group_id"]
        if prefixes and not any(group.startswith(p) for p in prefixes):
            continue
        med = est["median"]
        elems = (bench.get("throughput") or {}).get("Elements")
        secs = med["point_estimate"] * 1e-9
        rows.append({
            "group": group,
            "function": bench["function_id"],
            "size": bench.get("value_str") or "",
            "median_s": secs,
            "median_lo_s": med["confidence_interval"]["lower_bound"] * 1e-9,
            "median_hi_s": med["confidence_interval"]["upper_bound"] * 1e-9,
            "elements": elems or "",
            "elements_per_s": (elems / secs) if elems else "",
            **machine,
        })
    rows.sort(key=lambda r: (r["group"], str(r["size"]), r["function"]))
    if not rows:
        sys.exit("no criterion results found under target/criterion: run `cargo bench` first")
    with open(sys.argv[1], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} records to {sys.argv[1]}")


if __name__ == "__main__":
    main()
