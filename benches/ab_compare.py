#!/usr/bin/env python3
"""Medians of an interleaved A/B run by benches/ab.sh: python3 benches/ab_compare.py OUTDIR"""
import glob
import json
import statistics
import sys


def rounds(out, build):
    files = glob.glob(f"{out}/{build}-*.json")
    return sorted(files, key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0]))


def main():
    out = sys.argv[1]
    res = {}
    for build in ("main", "new"):
        for f in rounds(out, build):
            for name, fig in json.load(open(f)).items():
                res.setdefault(name, {}).setdefault(build, []).append(fig["mean"])
    for name, by in res.items():
        m, n = by.get("main", []), by.get("new", [])
        print(name, "main", [round(x) for x in m])
        print(name, "new ", [round(x) for x in n])
        if m and n:
            mm, nm = statistics.median(m), statistics.median(n)
            print(f"{name} medians {mm:,.0f} {nm:,.0f} ratio {nm / mm:.3f}")


if __name__ == "__main__":
    main()
