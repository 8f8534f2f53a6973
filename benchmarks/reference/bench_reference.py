#!/usr/bin/python3
"""bench_reference: the cases of trident's benchmarks/bench_network for the PyTorch reference of the same network
(reference_net.py: torchvision's resnet50, RPN, RoIHeads sampling, MultiScaleRoIAlign), with the same options and
the same JSON keys, so that benchmarks/reference/compare.py can put the two side by side.

  /usr/bin/python3 benchmarks/reference/bench_reference.py [--threads N] [--repeat N] [--warmup N]
      [--device cpu|cuda] [--sizes 900x1500,600x1000] [--batches 2,4] [--train-size 900x1500]
      [--gallery 10000,100000,1000000] [--detections 20] [--yardstick-batch 1] [--top-k 100]
      [--only infer,train,search,resnet50] [--case NAME] [--json OUT]

Without --case every selected case runs in a child process of its own (so that each peak resident set, VmHWM, is
the case's own); with --case the case runs in this process. Needs only Debian's python3-torch and
python3-torchvision (torch 1.13, torchvision 0.14).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

from cases import selected_cases

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_net import BACKGROUND, UNLABELED, FlopCounter, ReferenceNet, Settings  # noqa: E402,F401


def proc_status_mb(field):
    """A field of /proc/self/status in MiB (VmHWM: peak resident set, VmRSS: current); -1 if unreadable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return -1.0


def pad32(v):
    return (v + 31) // 32 * 32


def parse_size(text):
    h, w = text.split("x")
    return int(h), int(w)


def size_str(size):
    return f"{size[0]}x{size[1]}"


class Bench:
    def __init__(self, args):
        self.args = args
        self.device = torch.device("cuda:0" if args.device == "cuda" else "cpu")
        self.base_rss_mb = proc_status_mb("VmRSS")

    # --- clocks and memory -----------------------------------------------------------------------------------------
    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def reset_peak(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def memory(self, figures):
        figures["peak_rss_mb"] = proc_status_mb("VmHWM")
        figures["base_rss_mb"] = self.base_rss_mb
        if self.device.type == "cuda":
            figures["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
            figures["cuda_peak_reserved_mb"] = torch.cuda.max_memory_reserved(self.device) / 2**20

    @staticmethod
    def proposal_info(record, s):
        record.update(rpn_pre_nms_top_n_test=s.rpn_pre_nms_top_n["testing"],
                      rpn_post_nms_top_n_test=s.rpn_post_nms_top_n["testing"],
                      rpn_pre_nms_top_n_train=s.rpn_pre_nms_top_n["training"],
                      rpn_post_nms_top_n_train=s.rpn_post_nms_top_n["training"],
                      rpn_nms_threshold=s.rpn_nms_threshold, roi_batch_size_per_image=s.roi_batch_size_per_image,
                      detection_score_threshold=s.score_threshold, detection_nms_threshold=s.nms_threshold)

    def images(self, batch, size):
        images = torch.randn(batch, 3, pad32(size[0]), pad32(size[1])).to(self.device)
        return images, [tuple(size)] * batch

    def targets(self, batch, size):
        out = []
        people = 5
        for _ in range(batch):
            heights = (torch.rand(people) * 0.45 + 0.15) * size[0]
            widths = heights * 0.4
            x1 = torch.rand(people) * (size[1] - widths)
            y1 = torch.rand(people) * (size[0] - heights)
            pids = torch.randint(0, Settings.identities, (people,))
            pids[people // 2 + 1:] = UNLABELED
            out.append(dict(boxes=torch.stack([x1, y1, x1 + widths, y1 + heights], 1).to(self.device),
                            labels=torch.ones(people, dtype=torch.long, device=self.device),
                            pids=pids.to(self.device)))
        return out

    @staticmethod
    def cycle_to(boxes, n):
        have = boxes.shape[0]
        if have >= n:
            return boxes[:n]
        if have == 0:
            return boxes.new_zeros(n, 4)
        return boxes.repeat((n + have - 1) // have, 1)[:n]

    def print_record(self, record, header, details=()):
        print(f"\n## {record['case']} — {header}")
        for line in details:
            print("  " + line)
        for k, v in record["figures"].items():
            print(f"  {k:<28} {v:>12.4g}")
        sys.stdout.flush()

    # --- cases -----------------------------------------------------------------------------------------------------
    def infer(self, size):
        a = self.args
        s = Settings()
        model = ReferenceNet(s).to(self.device).eval()
        rh = model.roi_heads
        images, sizes = self.images(1, size)
        from torchvision.models.detection.image_list import ImageList
        image_list = ImageList(images, sizes)
        rois_per_image = s.rpn_post_nms_top_n["testing"]
        runs = {}
        counts = {}

        def pipeline(timed):
            laps = []
            self.sync()
            start = t = time.perf_counter()

            def lap(name):
                nonlocal t
                self.sync()
                now = time.perf_counter()
                laps.append((name, (now - t) * 1e3))
                t = now

            features = model.backbone(images)
            lap("stem")
            proposals, _ = model.rpn(image_list, {"feat_res4": features})
            lap("rpn")
            found = proposals[0].shape[0]
            rois = self.cycle_to(proposals[0], rois_per_image)
            pooled = rh.pool(features, [rois], sizes)
            lap("roi_align")
            g_hat, _, g = rh.run_head(pooled)
            lap("head")
            _, alpha, deltas = rh.detect(g_hat, g)
            lap("branches")
            boxes, scores = rh.postprocess(deltas, alpha, rois, sizes[0], None, rois_per_image)
            kept = boxes.shape[0]
            detected = self.cycle_to(boxes, a.detections)
            lap("postprocess")
            rh.describe(features, [detected], sizes)
            lap("describe")
            total = (time.perf_counter() - start) * 1e3
            if timed:
                for name, ms in laps + [("total", total)]:
                    runs.setdefault(name, []).append(ms)
                counts.update(proposals=found, kept_by_nms=kept)

        with torch.no_grad():
            for _ in range(a.warmup):
                pipeline(False)
            self.reset_peak()
            for _ in range(a.repeat):
                pipeline(True)
            detect_runs = []
            detections = 0
            for _ in range(a.warmup):
                model.detect(images, sizes)
            for _ in range(a.repeat):
                self.sync()
                t0 = time.perf_counter()
                kept, _ = model.detect(images, sizes)
                self.sync()
                detect_runs.append((time.perf_counter() - t0) * 1e3)
                detections = kept[0][0].shape[0]
            counter = FlopCounter(model)
            rh.flop_counter = counter
            pipeline(False)
            counter.remove()
            rh.flop_counter = None

        fh, fw = features_size(size)
        record = dict(case=f"infer-{size_str(size)}", kind="infer", image=size_str(size),
                      padded=f"{pad32(size[0])}x{pad32(size[1])}", features=f"{fh}x{fw}", batch=1)
        self.proposal_info(record, s)
        fig = {f"{k}_ms": statistics.median(v) for k, v in runs.items()}
        fig.update(detect_ms=statistics.median(detect_runs), proposals=counts["proposals"], rois=rois_per_image,
                   kept_by_nms=counts["kept_by_nms"], described=a.detections, detect_detections=detections,
                   gflop=counter.forward / 1e9,
                   gflops_per_s=counter.forward / 1e9 / (statistics.median(runs["total"]) / 1e3))
        self.memory(fig)
        record["figures"] = fig
        details = [
            f"RPN: pre-NMS top {s.rpn_pre_nms_top_n['testing']} / post-NMS top {rois_per_image} (test), NMS "
            f"{s.rpn_nms_threshold}; detections: score >= {s.score_threshold}, NMS {s.nms_threshold}, at most "
            f"{s.detections_per_image}; 15 anchors per cell",
            f"stage breakdown: RPN kept {counts['proposals']} proposals, the first pass takes {rois_per_image} "
            f"(repeated to the post-NMS top-N); NMS {s.nms_threshold} kept {counts['kept_by_nms']}; describe pass on "
            f"{a.detections} boxes",
            f"model.detect(): {detections} detections (random weights); medians of {a.repeat} runs after {a.warmup} "
            f"warm-up"]
        self.print_record(record, f"{torch.get_num_threads()} thread(s), device {self.device}, image "
                                  f"{size_str(size)} (padded {record['padded']}, conv4 {fh}x{fw}), batch 1", details)
        return record

    def train(self, batch):
        a = self.args
        s = Settings()
        size = parse_size(a.train_size)
        model = ReferenceNet(s).to(self.device).train()
        params = [p for p in model.parameters() if p.requires_grad]
        sgd = torch.optim.SGD(params, lr=0.003, momentum=0.9, weight_decay=5e-4)
        images, sizes = self.images(batch, size)
        targets = self.targets(batch, size)
        runs = {}
        state = {}
        # every run starts from the same weights and memory (restored untimed), as bench_network does
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}

        def step(timed, counter=None):
            with torch.no_grad():
                model.load_state_dict(initial)
            self.sync()
            t0 = time.perf_counter()
            sgd.zero_grad()
            losses = model.losses(images, sizes, targets)
            total = sum(losses.values())
            self.sync()
            t1 = time.perf_counter()
            if counter is not None:
                counter.remove()
            total.backward()
            self.sync()
            t2 = time.perf_counter()
            sgd.step()
            self.sync()
            t3 = time.perf_counter()
            state["loss"] = float(total)
            if not math.isfinite(state["loss"]):
                sys.exit(f"bench_reference: train-b{batch}: the loss is {state['loss']}")
            if timed:
                for name, ms in (("forward", t1 - t0), ("backward", t2 - t1), ("step", t3 - t2), ("total", t3 - t0)):
                    runs.setdefault(name, []).append(ms * 1e3)

        for _ in range(a.warmup):
            step(False)
        self.reset_peak()
        for _ in range(a.repeat):
            step(True)
        counter = FlopCounter(model)
        model.roi_heads.flop_counter = counter
        step(False, counter)
        model.roi_heads.flop_counter = None

        record = dict(case=f"train-b{batch}", kind="train", image=size_str(size),
                      padded=f"{pad32(size[0])}x{pad32(size[1])}", batch=batch)
        self.proposal_info(record, s)
        fig = {f"{k}_ms": statistics.median(v) for k, v in runs.items()}
        fig.update(sampled_rois=batch * s.roi_batch_size_per_image,
                   gflop=(counter.forward + counter.backward) / 1e9, gflop_forward=counter.forward / 1e9,
                   gflops_per_s=(counter.forward + counter.backward) / 1e9 / (statistics.median(runs["total"]) / 1e3),
                   loss=state["loss"])
        self.memory(fig)
        record["figures"] = fig
        details = [
            f"RPN: pre-NMS top {s.rpn_pre_nms_top_n['training']} / post-NMS top {s.rpn_post_nms_top_n['training']} "
            f"per image (training), NMS {s.rpn_nms_threshold}; RoI sampler: {s.roi_batch_size_per_image} per image, "
            f"{s.roi_positive_fraction} positive at most; 15 anchors per cell",
            f"SGD lr 0.003, momentum 0.9, weight decay 5e-4 over {len(params)} trainable tensors, each run from the "
            f"same weights; medians of "
            f"{a.repeat} runs after {a.warmup} warm-up"]
        self.print_record(record, f"{torch.get_num_threads()} thread(s), device {self.device}, batch {batch} of "
                                  f"{size_str(size)} (padded {record['padded']}), 5 people per image", details)
        return record

    def search(self, n):
        a = self.args
        dim = 2 * Settings.encoder_dim
        with torch.no_grad():
            gallery = torch.randn(n, dim)
            gallery = (gallery / gallery.norm(2, 1, keepdim=True)).to(self.device)
            scores = (torch.rand(n) * 0.5 + 0.5).to(self.device)
            query = torch.randn(1, dim)
            query = (query / query.norm(2, 1, keepdim=True)).to(self.device)
            k = min(a.top_k, n)
            runs = {}

            def once(timed):
                self.sync()
                t0 = time.perf_counter()
                sim = torch.matmul(query, gallery.t()) * scores.unsqueeze(0)
                self.sync()
                t1 = time.perf_counter()
                torch.topk(sim, k, 1)
                self.sync()
                t2 = time.perf_counter()
                if timed:
                    for name, sec in (("similarity", t1 - t0), ("topk", t2 - t1), ("total", t2 - t0)):
                        runs.setdefault(name, []).append(sec * 1e3)

            for _ in range(a.warmup):
                once(False)
            self.reset_peak()
            for _ in range(a.repeat):
                once(True)
        record = dict(case=f"search-{n}", kind="search", gallery=n, dim=dim, top_k=k)
        fig = {f"{name}_ms": statistics.median(v) for name, v in runs.items()}
        self.memory(fig)
        record["figures"] = fig
        self.print_record(record, f"{torch.get_num_threads()} thread(s), device {self.device}, 1 query x {n} gallery "
                                  f"embeddings of {dim} floats, top {k}")
        return record

    def resnet50(self):
        a = self.args
        model = torchvision.models.resnet50(weights=None).to(self.device).eval()
        images = torch.randn(a.yardstick_batch, 3, 224, 224).to(self.device)
        runs = []
        with torch.no_grad():
            for i in range(a.warmup + a.repeat):
                if i == a.warmup:
                    self.reset_peak()
                self.sync()
                t0 = time.perf_counter()
                model(images)
                self.sync()
                if i >= a.warmup:
                    runs.append((time.perf_counter() - t0) * 1e3)
            counter = FlopCounter(model)
            model(images)
            counter.remove()
        fig = dict(forward_ms=statistics.median(runs), gflop=counter.forward / 1e9,
                   gflops_per_s=counter.forward / 1e9 / (statistics.median(runs) / 1e3))
        self.memory(fig)
        record = dict(case="resnet50-224", kind="resnet50", image="224x224", batch=a.yardstick_batch, figures=fig)
        self.print_record(record, f"{torch.get_num_threads()} thread(s), device {self.device}, ResNet-50 "
                                  f"classification forward, batch {a.yardstick_batch} of 224x224")
        return record

    def run(self, name):
        if name.startswith("infer-"):
            return self.infer(parse_size(name[len("infer-"):]))
        if name.startswith("train-b"):
            return self.train(int(name[len("train-b"):]))
        if name.startswith("search-"):
            return self.search(int(name[len("search-"):]))
        if name == "resnet50-224":
            return self.resnet50()
        sys.exit(f"bench_reference: unknown case '{name}' (infer-HxW, train-bB, search-N, resnet50-224)")


def features_size(size):
    """conv4's size for an image padded to a multiple of 32: conv1 (stride 2), max pool, layer2, layer3."""
    h, w = pad32(size[0]), pad32(size[1])
    for _ in range(4):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w




def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=0,
                   help="intra-op threads (default: TRIDENT_NUM_THREADS, else every hardware thread)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--sizes", default="900x1500,600x1000")
    p.add_argument("--batches", default="2,4")
    p.add_argument("--train-size", default="900x1500")
    p.add_argument("--gallery", default="10000,100000,1000000")
    p.add_argument("--detections", type=int, default=20)
    p.add_argument("--yardstick-batch", type=int, default=1)
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--only", default="infer,train,search,resnet50")
    p.add_argument("--case")
    p.add_argument("--json")
    a = p.parse_args()

    threads = a.threads
    if threads <= 0:
        try:
            threads = int(os.environ.get("TRIDENT_NUM_THREADS", "0"))
        except ValueError:
            threads = 0
    if threads <= 0:
        threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_reference: --device cuda, but no CUDA device is available")
    torch.manual_seed(0)
    header = dict(program="reference", torch=torch.__version__, torchvision=torchvision.__version__,
                  threads=torch.get_num_threads(), device=a.device, repeat=a.repeat, warmup=a.warmup,
                  hardware_threads=os.cpu_count())

    if a.case:
        record = Bench(a).run(a.case)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(dict(header, cases=[record]), f)
        return

    print(f"# bench_reference: torchvision reference of TridentNet<PaperConfig<CuhkSysu>>, torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, {torch.get_num_threads()} intra-op thread(s) of {os.cpu_count()} "
          f"hardware threads, device {a.device}, {a.repeat} timed run(s) after {a.warmup} warm-up per case; each case "
          f"in a fresh process")
    sys.stdout.flush()
    records = []
    tmp = f"/tmp/bench_reference_{os.getpid()}.json"
    forwarded = [x for x in sys.argv[1:]]
    # drop --json/--case from the child's arguments
    child_args, skip = [], False
    for x in forwarded:
        if skip:
            skip = False
            continue
        if x in ("--json", "--case"):
            skip = True
            continue
        if x.startswith("--json=") or x.startswith("--case="):
            continue
        child_args.append(x)
    for name in selected_cases(a):
        rc = subprocess.call([sys.executable, os.path.abspath(__file__)] + child_args + ["--case", name, "--json", tmp])
        if rc != 0:
            print(f"bench_reference: case {name} failed (status {rc})", file=sys.stderr)
            continue
        with open(tmp) as f:
            records.append(json.load(f)["cases"][0])
    if os.path.exists(tmp):
        os.remove(tmp)
    yard = next((r["figures"]["gflops_per_s"] for r in records if r["kind"] == "resnet50"), 0)
    if yard:
        print(f"\n## Efficiency: GFLOP/s as a fraction of the ResNet-50 classification forward ({yard:.1f} GFLOP/s)")
        for r in records:
            if r["kind"] in ("infer", "train"):
                rate = r["figures"]["gflops_per_s"]
                print(f"  {r['case']:<20} {rate:>8.1f} GFLOP/s  {100 * rate / yard:>6.1f}%")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(header, cases=records), f, indent=1)


if __name__ == "__main__":
    main()
