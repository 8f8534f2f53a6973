#!/usr/bin/python3
"""compare: trident's bench_network and the PyTorch reference (bench_reference.py) case by case in one invocation,
interleaved so that a noisy machine affects both alike, and a table of figure, trident, reference and the ratio
trident / reference (< 1: trident is faster or smaller, for times and memory). With --seqnet DIR, SeqNet's own model
(bench_seqnet.py, imported from the SeqNet checkout DIR) runs in the same rotation, with a column of its own and the
ratio trident / seqnet.

  /usr/bin/python3 benchmarks/reference/compare.py [--bench build/benchmarks/bench_network] [--rounds 2]
      [--threads N] [--repeat N] [--warmup N] [--device cpu|cuda] [--sizes ...] [--infer-batches ...]
      [--batches ...] [--train-size HxW] [--gallery ...] [--detections D] [--yardstick-batch B] [--top-k K]
      [--amp off|bf16|fp16] [--channels-last] [--tf32] [--seqnet DIR] [--seqnet-score-thresh F]
      [--only infer,train,search,resnet50] [--json OUT] [--markdown OUT]

Every case runs as a fresh process of each program (`--case NAME`), so each peak resident set is the case's own.
Round r runs, for every case, trident then the reference (r even) or the reference then trident (r odd): ABBA
over two rounds (with --seqnet: trident, reference, SeqNet, then SeqNet, reference, trident; SeqNet runs the infer
and train cases only). Each process reports medians of --repeat timed runs after --warmup; over rounds, the median
of the per-round figures is reported. Needs only Debian's python3-torch and python3-torchvision. --infer-batches,
--amp, --channels-last and --tf32 are passed on to every program only when given, so older builds keep working.
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
INFORMATIONAL = {"proposals", "kept_by_nms", "detect_detections", "loss", "first_stage_boxes"}

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

PASSED = ["threads", "repeat", "warmup", "device", "sizes", "batches", "train_size", "gallery", "detections",
          "yardstick_batch", "top_k", "infer_batches", "amp"]
FLAGS = ["channels_last", "tf32"]  # passed on as bare flags when given

# The cases bench_seqnet.py runs (the others are the reference's: search, the ResNet-50 yardstick).
SEQNET_CASES = ("infer-", "train-")


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
    for name in FLAGS:
        if getattr(a, name):
            out.append("--" + name.replace("_", "-"))
    return out


def run_one(command, case, path):
    """Runs one case in a fresh process; returns its record, or None if it failed."""
    started = time.perf_counter()
    proc = subprocess.run(command + ["--case", case, "--json", path], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0 or not os.path.exists(path):
        print(f"  FAILED ({proc.returncode}): {' '.join(command)} --case {case}\n{proc.stdout}", file=sys.stderr)
        return None
    with open(path) as f:
        data = json.load(f)
    os.remove(path)
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
    p.add_argument("--infer-batches", help="inference batch sizes (1: infer-HxW, B > 1: infer-bB-HxW); passed on")
    p.add_argument("--batches", default="2,4")
    p.add_argument("--train-size")
    p.add_argument("--gallery", default="10000,100000,1000000")
    p.add_argument("--detections", type=int)
    p.add_argument("--yardstick-batch", type=int)
    p.add_argument("--top-k", type=int)
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], help="CUDA autocast in every program; passed on")
    p.add_argument("--channels-last", action="store_true", help="channels-last in every program; passed on")
    p.add_argument("--tf32", action="store_true", help="TF32 in matmul and cuDNN in every program; passed on")
    p.add_argument("--seqnet", metavar="DIR",
                   help="also run SeqNet's own model (bench_seqnet.py) from this SeqNet checkout, with --python")
    p.add_argument("--seqnet-score-thresh", type=float,
                   help="SeqNet's ROI_HEAD.SCORE_THRESH_TEST for bench_seqnet.py (default: SeqNet's 0.5)")
    p.add_argument("--only", default="infer,train,search,resnet50")
    p.add_argument("--json", help="write the programs' records and the ratios here")
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
    seqnet = a.seqnet is not None
    seqnet_extra = []
    if seqnet:
        if not os.path.isfile(os.path.join(a.seqnet, "models", "seqnet.py")):
            sys.exit(f"compare: {a.seqnet} is not a SeqNet checkout (no models/seqnet.py)")
        seqnet_extra = ["--seqnet", os.path.abspath(a.seqnet)]
        if a.seqnet_score_thresh is not None:
            seqnet_extra += ["--score-thresh", str(a.seqnet_score_thresh)]
        programs["seqnet"] = [a.python, os.path.join(HERE, "bench_seqnet.py")] + args + seqnet_extra
    cases = selected_cases(a)
    lines = [
        "# trident vs the PyTorch reference" + (" and SeqNet" if seqnet else ""),
        "",
        f"- machine: {cpu_model()}, {os.cpu_count()} hardware threads, {platform.system()} {platform.release()}",
        f"- load average at start: {load_average()}",
        f"- threads: {a.threads}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; "
        f"rounds: {a.rounds} (ABBA); arguments to " + ("all three" if seqnet else "both") + f": `{' '.join(args)}`"
        + (f"; to SeqNet also: `{' '.join(seqnet_extra)}`" if seqnet else ""),
    ]
    print("\n".join(lines))
    sys.stdout.flush()

    results = {name: {case: [] for case in cases} for name in programs}
    notes = {}  # SeqNet's remarks per case (batched calls split, a second stage with no box, errors)
    with tempfile.TemporaryDirectory(prefix="trident_compare_") as tmp:
        for r in range(a.rounds):
            order = list(programs) if r % 2 == 0 else list(reversed(list(programs)))
            for case in cases:
                for name in order:
                    if name == "seqnet" and not case.startswith(SEQNET_CASES):
                        continue
                    record = run_one(programs[name], case, os.path.join(tmp, f"{name}.json"))
                    if record is None:
                        continue
                    if name == "seqnet":
                        for key in ("note", "error", "skipped"):
                            text = record.get(key) if key == "note" else f"{key}: {record.get(key)}"
                            if key in record and text not in notes.setdefault(case, []):
                                notes[case].append(text)
                    if name == "seqnet" and ("error" in record or "skipped" in record):
                        print(f"  round {r + 1}: {case:<18} {name:<9} {record.get('error', record.get('skipped'))}")
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

    def ratio_of(k, tv, rv):
        return tv / rv if k not in INFORMATIONAL and tv is not None and rv not in (None, 0) else None

    table = ["", f"- trident: {headers['trident']}", f"- reference: {headers['reference']}"]
    if seqnet:
        table.append(f"- seqnet: {headers['seqnet']}")
    table += [f"- load average at end: {load_average()}", ""]
    if seqnet:
        table += ["| case | figure | trident | reference | seqnet | trident / reference | trident / seqnet |",
                  "|---|---|---:|---:|---:|---:|---:|"]
    else:
        table += ["| case | figure | trident | reference | trident / reference |", "|---|---|---:|---:|---:|"]
    ratios = {}
    ratios_seqnet = {}
    for case in cases:
        t, ref = medians["trident"][case], medians["reference"][case]
        seq = medians["seqnet"][case] if seqnet else {}
        keys = list(t) + [k for k in ref if k not in t]
        keys += [k for k in seq if k not in keys]
        for k in keys:
            tv, rv, sv = t.get(k), ref.get(k), seq.get(k)
            ratio = ratio_of(k, tv, rv)
            ratios[f"{case}/{k}"] = ratio
            if seqnet:
                ratio_s = ratio_of(k, tv, sv)
                ratios_seqnet[f"{case}/{k}"] = ratio_s
                table.append(f"| {case} | {k} | {fmt(tv)} | {fmt(rv)} | {fmt(sv)} | {fmt(ratio)} | {fmt(ratio_s)} |")
            else:
                table.append(f"| {case} | {k} | {fmt(tv)} | {fmt(rv)} | {fmt(ratio)} |")
    if seqnet and any(notes.values()):
        table += ["", "SeqNet, per case:", ""]
        table += [f"- {case}: {text}" for case in cases for text in notes.get(case, [])]

    # Efficiency against the hardware: GFLOP/s as a fraction of each program's own ResNet-50 forward (SeqNet's: the
    # reference's, which runs on the same PyTorch).
    yard = {name: medians[name].get("resnet50-224", {}).get("gflops_per_s") for name in programs}
    eff = ["", "| case | trident GFLOP/s | % of its ResNet-50 | reference GFLOP/s | % of its ResNet-50 |",
           "|---|---:|---:|---:|---:|"]
    if seqnet:
        yard["seqnet"] = yard["reference"]
        eff[1] += " seqnet GFLOP/s | % of the reference's ResNet-50 |"
        eff[2] += "---:|---:|"
    for name in programs:
        if name != "seqnet":
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
        out = dict(arguments=args, rounds=a.rounds, headers=headers, medians=medians, ratios=ratios,
                   runs={n: {c: [r["figures"] for r in rs] for c, rs in v.items()} for n, v in results.items()})
        if seqnet:
            out.update(seqnet_arguments=seqnet_extra, ratios_seqnet=ratios_seqnet, seqnet_notes=notes)
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
