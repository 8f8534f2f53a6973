#!/usr/bin/env python3
"""The ablation study's table (benchmarks/ablation/run.sh): per row and metric the mean, the sample standard
deviation and the range over seeds, then each row's paired differences against the full method (same seed: same
data order, same initialisation of the layers the rows share), with a paired t statistic.

  table.py --out out/ablation [--rows "small small-without-part ..."] [--seeds "0 1 2"] [--baseline small]

Reads OUT/<row>/seed<S>/evaluation.json (03_evaluate --json); prints Markdown. Standard library only.
"""
import argparse
import json
import math
import os
import sys

METRICS = [("detection AP", lambda d: d["detection"]["all"]["ap"]),
           ("recall", lambda d: d["detection"]["all"]["recall"]),
           ("AP labeled", lambda d: d["detection"]["labeled"]["ap"]),
           ("mAP", lambda d: d["search"][0]["mAP"]),
           ("top-1", lambda d: d["search"][0]["top_k"]["1"])]
# Two-sided 5% critical values of Student's t by degrees of freedom.
T_CRITICAL = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def mean(xs):
    return sum(xs) / len(xs)


def sd(xs):
    if len(xs) < 2:
        return float("nan")
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--rows", default="small small-without-part small-without-agwf small-without-agwf-and-part "
                                      "small-without-bin-and-un")
    p.add_argument("--seeds", default="0 1 2")
    p.add_argument("--baseline", default="small")
    a = p.parse_args()
    rows, seeds = a.rows.split(), a.seeds.split()
    values = {}  # (row, metric) -> {seed: value}
    missing = []
    for row in rows:
        for seed in seeds:
            path = os.path.join(a.out, row, "seed" + seed, "evaluation.json")
            if not os.path.exists(path):
                missing.append(path)
                continue
            with open(path) as f:
                d = json.load(f)
            for name, get in METRICS:
                values.setdefault((row, name), {})[seed] = 100.0 * get(d)
    if missing:
        print("table.py: missing (not counted): " + ", ".join(missing), file=sys.stderr)

    print("Per row: mean +- sample standard deviation over the seeds [lowest, highest], in %; gallery 50.\n")
    print("| row | seeds | " + " | ".join(name for name, _ in METRICS) + " |")
    print("|---|---:|" + "---:|" * len(METRICS))
    for row in rows:
        cells = []
        n = 0
        for name, _ in METRICS:
            xs = list(values.get((row, name), {}).values())
            n = len(xs)
            cells.append("-" if not xs else "{:.2f} +- {:.2f} [{:.2f}, {:.2f}]".format(mean(xs), sd(xs), min(xs),
                                                                                    max(xs)))
        print("| {} | {} | {} |".format(row, n, " | ".join(cells)))

    print("\nPaired differences row - {} (same seed), in points: mean +- standard deviation, the paired t "
          "statistic (* where |t| exceeds the two-sided 5% critical value for n - 1 degrees of freedom), and for how "
          "many seeds the row scored lower.\n".format(a.baseline))
    print("| row | pairs | " + " | ".join(name for name, _ in METRICS) + " |")
    print("|---|---:|" + "---:|" * len(METRICS))
    for row in rows:
        if row == a.baseline:
            continue
        cells = []
        pairs = 0
        for name, _ in METRICS:
            mine, base = values.get((row, name), {}), values.get((a.baseline, name), {})
            diffs = [mine[s] - base[s] for s in seeds if s in mine and s in base]
            pairs = len(diffs)
            if len(diffs) < 2:
                cells.append("-")
                continue
            m, s = mean(diffs), sd(diffs)
            if s == 0:  # the same difference for every seed (a count-based metric can do that): no t
                cells.append("{:+.2f} +- 0.00 ({}/{} lower)".format(m, len(diffs) if m < 0 else 0, len(diffs)))
                continue
            t = m / (s / math.sqrt(len(diffs)))
            star = "*" if abs(t) > T_CRITICAL.get(len(diffs) - 1, 1.96) else ""
            lower = sum(1 for d in diffs if d < 0)
            cells.append("{:+.2f} +- {:.2f} (t {:+.1f}{}, {}/{} lower)".format(m, s, t, star, lower, len(diffs)))
        print("| {} | {} | {} |".format(row, pairs, " | ".join(cells)))


if __name__ == "__main__":
    main()
