#!/usr/bin/python3
"""compare: trident's bench_network and the PyTorch reference (bench_reference.py) case by case in one invocation,
interleaved so that a noisy machine affects both alike, and a table of figure, trident, reference and the ratio
trident / reference (< 1: trident is faster or smaller, for times and memory).

  /usr/bin/python3 benchmarks/reference/compare.py [--bench build/benchmarks/bench_network] [--rounds 2]
      [--threads N] [--repeat N] [--warmup N] [--device cpu|cuda] [--sizes ...] [--batches ...]
      [--train-size HxW] [--gallery ...] [--detections D] [--yardstick-batch B] [--top-k K]
      [--only infer,train,search,resnet50] [--json OUT] [--markdown OUT]

Every case runs as a fresh process of each program (`--case NAME`), so each peak resident set is the case's own.
Round r runs, for every case, trident then the reference (r even) or the reference then trident (r odd): ABBA
over two rounds. Each process reports medians of --repeat timed runs after --warmup; over rounds, the median of the
per-round figures is reported. Needs only Debian's python3-torch and python3-torchvision.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from cases import selected_cases

# Figures that depend on the random weights (how many boxes the untrained RPN and detector keep, the loss): shown,
# but no ratio. The timed stages themselves do not depend on them (fixed RoI and box counts).
INFORMATIONAL = {"proposals", "kept_by_nms", "detect_detections", "loss"}

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

PASSED = ["threads", "repeat", "warmup", "device", "sizes", "batches", "train_size", "gallery", "detections",
          "yardstick_batch", "top_k"]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"




def common_args(a):
    out = []
    for name in PASSED:
        value = getattr(a, name)
        if value is not None:
            out += ["--" + name.replace("_", "-"), str(value)]
    return out


def run_one(command, case, path):
    """Runs one case in a fresh process; returns its record, or None if it failed."""
    started = time.perf_counter()
    proc = subprocess.run(command + ["--case", case, "--json", path], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        print(f"  FAILED ({proc.returncode}): {' '.join(command)} --case {case}\n{proc.stdout}", file=sys.stderr)
        return None
    with open(path) as f:
        data = json.load(f)
    record = data["cases"][0]
    record["header"] = {k: v for k, v in data.items() if k != "cases"}
    record["log"] = proc.stdout
    record["wall_s"] = elapsed
    return record


def fmt(v):
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", default=os.path.join(REPO, "build", "benchmarks", "bench_network"))
    p.add_argument("--python", default="/usr/bin/python3", help="the Python with torch and torchvision")
    p.add_argument("--rounds", type=int, default=2, help="ABBA rounds: 2 gives trident-reference, reference-trident")
    p.add_argument("--threads", type=int)
    p.add_argument("--repeat", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--device")
    p.add_argument("--sizes", default="900x1500,600x1000")
    p.add_argument("--batches", default="2,4")
    p.add_argument("--train-size")
    p.add_argument("--gallery", default="10000,100000,1000000")
    p.add_argument("--detections", type=int)
    p.add_argument("--yardstick-batch", type=int)
    p.add_argument("--top-k", type=int)
    p.add_argument("--only", default="infer,train,search,resnet50")
    p.add_argument("--json", help="write both programs' records and the ratios here")
    p.add_argument("--markdown", help="also write the table here")
    p.add_argument("--verbose", action="store_true", help="print each program's own output")
    a = p.parse_args()

    if not os.access(a.bench, os.X_OK):
        sys.exit(f"compare: {a.bench} is not built (cmake --build build --target bench_network), or pass --bench")
    if a.threads is None:
        env = os.environ.get("TRIDENT_NUM_THREADS", "")
        a.threads = int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)
    args = common_args(a)
    programs = {
        "trident": [a.bench] + args,
        "reference": [a.python, os.path.join(HERE, "bench_reference.py")] + args,
    }
    cases = selected_cases(a)
    lines = [
        "# trident vs the PyTorch reference",
        "",
        f"- machine: {cpu_model()}, {os.cpu_count()} hardware threads, {platform.system()} {platform.release()}",
        f"- load average at start: {load_average()}",
        f"- threads: {a.threads}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; "
        f"rounds: {a.rounds} (ABBA); arguments to both: `{' '.join(args)}`",
    ]
    print("\n".join(lines))
    sys.stdout.flush()

    results = {name: {case: [] for case in cases} for name in programs}
    with tempfile.TemporaryDirectory(prefix="trident_compare_") as tmp:
        for r in range(a.rounds):
            order = list(programs) if r % 2 == 0 else list(reversed(list(programs)))
            for case in cases:
                for name in order:
                    record = run_one(programs[name], case, os.path.join(tmp, f"{name}.json"))
                    if record is None:
                        continue
                    results[name][case].append(record)
                    if a.verbose:
                        print(record["log"])
                    total = record["figures"].get("total_ms", record["figures"].get("forward_ms"))
                    print(f"  round {r + 1}: {case:<18} {name:<9} {fmt(total):>10} ms  ({record['wall_s']:.0f} s)")
                    sys.stdout.flush()

    def figures(name, case):
        recs = results[name][case]
        if not recs:
            return {}
        keys = list(recs[0]["figures"])
        return {k: statistics.median(r["figures"][k] for r in recs if k in r["figures"]) for k in keys}

    medians = {name: {case: figures(name, case) for case in cases} for name in programs}
    headers = {name: next((recs[0]["header"] for recs in results[name].values() if recs), {}) for name in programs}
    table = ["", f"- trident: {headers['trident']}", f"- reference: {headers['reference']}",
             f"- load average at end: {load_average()}", "",
             "| case | figure | trident | reference | trident / reference |", "|---|---|---:|---:|---:|"]
    ratios = {}
    for case in cases:
        t, ref = medians["trident"][case], medians["reference"][case]
        keys = list(t) + [k for k in ref if k not in t]
        for k in keys:
            tv, rv = t.get(k), ref.get(k)
            comparable = k not in INFORMATIONAL
            ratio = tv / rv if comparable and tv is not None and rv not in (None, 0) else None
            ratios[f"{case}/{k}"] = ratio
            table.append(f"| {case} | {k} | {fmt(tv)} | {fmt(rv)} | {fmt(ratio)} |")

    # Efficiency against the hardware: GFLOP/s as a fraction of each program's own ResNet-50 forward.
    eff = ["", "| case | trident GFLOP/s | % of its ResNet-50 | reference GFLOP/s | % of its ResNet-50 |",
           "|---|---:|---:|---:|---:|"]
    yard = {name: medians[name].get("resnet50-224", {}).get("gflops_per_s") for name in programs}
    for name in programs:
        eff[0] += f"{name} ResNet-50 224x224: {fmt(yard[name])} GFLOP/s; " if yard[name] else ""
    eff[0] = ("Efficiency — " + eff[0]) if eff[0] else "Efficiency — no resnet50-224 case"
    eff.insert(1, "")
    for case in cases:
        if not case.startswith(("infer-", "train-")):
            continue
        row = [case]
        for name in programs:
            rate = medians[name][case].get("gflops_per_s")
            row += [fmt(rate), fmt(100 * rate / yard[name]) + "%" if rate and yard[name] else "—"]
        eff.append("| " + " | ".join(row) + " |")
    text = "\n".join(table + [""] + eff)
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("\n".join(lines) + "\n" + text + "\n")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(arguments=args, rounds=a.rounds, headers=headers, medians=medians, ratios=ratios,
                           runs={n: {c: [r["figures"] for r in rs] for c, rs in v.items()} for n, v in results.items()}),
                      f, indent=1)


if __name__ == "__main__":
    main()
