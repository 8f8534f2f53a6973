#!/usr/bin/python3
"""bench_reference: the cases of trident's benchmarks/bench_network for the PyTorch reference of the same network
(reference_net.py: torchvision's resnet50, RPN, RoIHeads sampling, MultiScaleRoIAlign), with the same options and
the same JSON keys, so that benchmarks/reference/compare.py can put the two side by side.

  /usr/bin/python3 benchmarks/reference/bench_reference.py [--threads N] [--repeat N] [--warmup N]
      [--device cpu|cuda] [--sizes 900x1500,600x1000] [--infer-batches 1] [--batches 2,4] [--train-size 900x1500]
      [--gallery 10000,100000,1000000] [--detections 20] [--yardstick-batch 1] [--top-k 100]
      [--amp off|bf16|fp16] [--channels-last] [--tf32]
      [--only infer,train,search,resnet50] [--case NAME] [--json OUT]

Cases (each is one --case NAME): infer-HxW, infer-bB-HxW (B > 1 of --infer-batches), train-bB, search-N,
resnet50-224 (cases.py). Without --case every selected case runs in a child process of its own (so that each peak
resident set, VmHWM, is the case's own); with --case the case runs in this process. Needs only Debian's
python3-torch and python3-torchvision (torch 1.13, torchvision 0.14); also runs with torch 2.11 / torchvision 0.26.

Batched inference (--infer-batches B,...; default 1): B = 1 is the case infer-HxW (one image, stage by stage and
through ReferenceNet.detect); every B > 1 adds infer-bB-HxW: B images of HxW in one batch through the model's eval
forward, ReferenceNet.detect (figures total_ms per batch, images_per_s, detect_detections over the batch, memory).
Its RoI counts are the random weights', so, as detect_ms, it is not a like-for-like comparison.

GPU options (as bench_network's; every record names them in its text fields "amp", "channels_last", "tf32"):
  --amp bf16|fp16   CUDA autocast (torch.autocast) around the inference passes (stages, detect, batched cases, the
                    ResNet-50 yardstick) and the training forward; fp16 training uses torch's GradScaler (dynamic,
                    initial scale 2^16 as trident's train::GradScaler; unscaling, the check and the skipped step
                    inside step_ms). Search stays float32. Refused on the CPU.
  --channels-last   the model (model.to(memory_format=torch.channels_last)) and the images in channels-last
                    memory format; CPU too.
  --tf32            torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32 on. Without it
                    PyTorch's defaults hold (cuDNN TF32 on, matmul off), and the record says "default: ...".
                    Refused on the CPU.
"""
import argparse
import contextlib
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


def on_off(flag):
    return "on" if flag else "off"


def tf32_state(args):
    """What the TF32 switches are: "on: ..." with --tf32, else "default: ..." (PyTorch's defaults, as read back)."""
    if args.device != "cuda":
        return "n/a (cpu)"
    return (f"{'on' if args.tf32 else 'default'}: cublas {on_off(torch.backends.cuda.matmul.allow_tf32)}, "
            f"cudnn {on_off(torch.backends.cudnn.allow_tf32)}")


def make_grad_scaler():
    """torch's dynamic loss scaler for CUDA float16 (initial scale 2^16, growth every 2000 good steps)."""
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


class DeviceBench:
    """Clocks and memory figures on self.device (set by the subclass, with self.base_rss_mb); shared with
    bench_seqnet.py."""

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


class Bench(DeviceBench):
    def __init__(self, args):
        self.args = args
        self.device = torch.device("cuda:0" if args.device == "cuda" else "cpu")
        self.base_rss_mb = proc_status_mb("VmRSS")

    # --- precision and layout --------------------------------------------------------------------------------------
    def autocast(self):
        """A fresh autocast context for one pass under --amp (nothing when off)."""
        if self.args.amp == "off":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=torch.float16 if self.args.amp == "fp16" else torch.bfloat16)

    def prepare(self, model):
        """The model on the device, channels-last under --channels-last."""
        model = model.to(self.device)
        if self.args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def precision(self, record, applies=True):
        """The record's precision fields; `applies`: whether the case takes --amp and --channels-last."""
        a = self.args
        record.update(amp=a.amp if applies else "off", channels_last=on_off(applies and a.channels_last),
                      tf32=tf32_state(a))
        return record

    @staticmethod
    def precision_line(record):
        return f"precision: amp {record['amp']}, channels-last {record['channels_last']}, tf32 {record['tf32']}"

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
        if self.args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
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
        model = self.prepare(ReferenceNet(s)).eval()
        rh = model.roi_heads
        images, sizes = self.images(1, size)
        from torchvision.models.detection.image_list import ImageList
        image_list = ImageList(images, sizes)
        rois_per_image = s.rpn_post_nms_top_n["testing"]
        runs = {}
        counts = {}

        def pipeline(timed):
            with self.autocast():  # every stage under --amp
                stages(timed)

        def stages(timed):
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
                with self.autocast():
                    model.detect(images, sizes)
            for _ in range(a.repeat):
                with self.autocast():
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
        self.precision(record)
        self.proposal_info(record, s)
        fig = {f"{k}_ms": statistics.median(v) for k, v in runs.items()}
        fig.update(detect_ms=statistics.median(detect_runs), proposals=counts["proposals"], rois=rois_per_image,
                   kept_by_nms=counts["kept_by_nms"], described=a.detections, detect_detections=detections,
                   gflop=counter.forward / 1e9,
                   gflops_per_s=counter.forward / 1e9 / (statistics.median(runs["total"]) / 1e3))
        self.memory(fig)
        record["figures"] = fig
        details = [
            self.precision_line(record),
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

    def infer_batch(self, size, batch):
        """Batched inference: `batch` images of `size` in one batch through the model's eval forward
        (ReferenceNet.detect, no grad, under --amp), as bench_network's infer-bB-HxW times net.detect()."""
        a = self.args
        s = Settings()
        model = self.prepare(ReferenceNet(s)).eval()
        images, sizes = self.images(batch, size)
        runs = []
        state = dict(detections=0)

        def once(timed):
            with self.autocast():
                self.sync()
                t0 = time.perf_counter()
                kept, _ = model.detect(images, sizes)
                self.sync()
                ms = (time.perf_counter() - t0) * 1e3
            if timed:
                runs.append(ms)
                state["detections"] = sum(boxes.shape[0] for boxes, _ in kept)

        with torch.no_grad():
            for _ in range(a.warmup):
                once(False)
            self.reset_peak()
            for _ in range(a.repeat):
                once(True)

        fh, fw = features_size(size)
        total = statistics.median(runs)
        record = dict(case=f"infer-b{batch}-{size_str(size)}", kind="infer-batch", image=size_str(size),
                      padded=f"{pad32(size[0])}x{pad32(size[1])}", features=f"{fh}x{fw}", batch=batch)
        self.precision(record)
        self.proposal_info(record, s)
        fig = dict(total_ms=total, images_per_s=batch / (total / 1e3), detect_detections=state["detections"])
        self.memory(fig)
        record["figures"] = fig
        details = [
            self.precision_line(record),
            f"RPN: pre-NMS top {s.rpn_pre_nms_top_n['testing']} / post-NMS top {s.rpn_post_nms_top_n['testing']} "
            f"(test), NMS {s.rpn_nms_threshold}; detections: score >= {s.score_threshold}, NMS {s.nms_threshold}, at "
            f"most {s.detections_per_image}; 15 anchors per cell",
            f"model.detect() on the whole batch: {state['detections']} detections in all (random weights: the RoI "
            f"counts are the weights'); medians of {a.repeat} runs after {a.warmup} warm-up"]
        self.print_record(record, f"{torch.get_num_threads()} thread(s), device {self.device}, batch {batch} of "
                                  f"{size_str(size)} (padded {record['padded']}, conv4 {fh}x{fw}), model.detect()",
                          details)
        return record

    def train(self, batch):
        a = self.args
        s = Settings()
        size = parse_size(a.train_size)
        model = self.prepare(ReferenceNet(s)).train()
        params = [p for p in model.parameters() if p.requires_grad]
        sgd = torch.optim.SGD(params, lr=0.003, momentum=0.9, weight_decay=5e-4)
        images, sizes = self.images(batch, size)
        targets = self.targets(batch, size)
        runs = {}
        state = dict(skipped=0)
        # every run starts from the same weights and memory (restored untimed), as bench_network does
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        # --amp fp16: dynamic loss scaling (bfloat16 and float32 need none); the scale carries over from run to run,
        # as in training, and a step whose gradients overflow is skipped (counted in skipped_steps)
        scaler = make_grad_scaler() if a.amp == "fp16" else None

        def step(timed, counter=None):
            with torch.no_grad():
                model.load_state_dict(initial)
            scale_before = scaler.get_scale() if scaler is not None else 1.0
            self.sync()
            t0 = time.perf_counter()
            sgd.zero_grad()
            with self.autocast():  # the forward under --amp
                losses = model.losses(images, sizes, targets)
            total = sum(losses.values())
            self.sync()
            t1 = time.perf_counter()
            if counter is not None:
                counter.remove()
            (scaler.scale(total) if scaler is not None else total).backward()
            self.sync()
            t2 = time.perf_counter()
            if scaler is not None:
                scaler.step(sgd)  # unscales, checks for Inf / NaN, skips the step on overflow
                scaler.update()
            else:
                sgd.step()
            self.sync()
            t3 = time.perf_counter()
            if timed and scaler is not None and scaler.get_scale() < scale_before:
                state["skipped"] += 1
            state["loss"] = float(total.detach())
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
        loss_scale = scaler.get_scale() if scaler is not None else 1.0
        counter = FlopCounter(model)
        model.roi_heads.flop_counter = counter
        step(False, counter)
        model.roi_heads.flop_counter = None

        record = dict(case=f"train-b{batch}", kind="train", image=size_str(size),
                      padded=f"{pad32(size[0])}x{pad32(size[1])}", batch=batch)
        self.precision(record)
        record.update(loss_scale=loss_scale, skipped_steps=state["skipped"])
        self.proposal_info(record, s)
        fig = {f"{k}_ms": statistics.median(v) for k, v in runs.items()}
        fig.update(sampled_rois=batch * s.roi_batch_size_per_image,
                   gflop=(counter.forward + counter.backward) / 1e9, gflop_forward=counter.forward / 1e9,
                   gflops_per_s=(counter.forward + counter.backward) / 1e9 / (statistics.median(runs["total"]) / 1e3),
                   loss=state["loss"])
        self.memory(fig)
        record["figures"] = fig
        details = [self.precision_line(record)]
        if scaler is not None:
            details.append(f"float16 loss scaling (GradScaler): scale {loss_scale:g} at the end, {state['skipped']} of "
                           f"{a.repeat} timed steps skipped")
        details += [
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
        self.precision(record, applies=False)
        fig = {f"{name}_ms": statistics.median(v) for name, v in runs.items()}
        self.memory(fig)
        record["figures"] = fig
        self.print_record(record, f"{torch.get_num_threads()} thread(s), device {self.device}, 1 query x {n} gallery "
                                  f"embeddings of {dim} floats, top {k}", [self.precision_line(record)])
        return record

    def resnet50(self):
        a = self.args
        model = self.prepare(torchvision.models.resnet50(weights=None)).eval()
        images = torch.randn(a.yardstick_batch, 3, 224, 224).to(self.device)
        if a.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        runs = []
        with torch.no_grad():
            for i in range(a.warmup + a.repeat):
                if i == a.warmup:
                    self.reset_peak()
                with self.autocast():
                    self.sync()
                    t0 = time.perf_counter()
                    model(images)
                    self.sync()
                    ms = (time.perf_counter() - t0) * 1e3
                if i >= a.warmup:
                    runs.append(ms)
            counter = FlopCounter(model)
            model(images)
            counter.remove()
        fig = dict(forward_ms=statistics.median(runs), gflop=counter.forward / 1e9,
                   gflops_per_s=counter.forward / 1e9 / (statistics.median(runs) / 1e3))
        self.memory(fig)
        record = self.precision(dict(case="resnet50-224", kind="resnet50", image="224x224", batch=a.yardstick_batch))
        record["figures"] = fig
        self.print_record(record, f"{torch.get_num_threads()} thread(s), device {self.device}, ResNet-50 "
                                  f"classification forward, batch {a.yardstick_batch} of 224x224",
                          [self.precision_line(record)])
        return record

    def run(self, name):
        if name.startswith("infer-b") and "-" in name[len("infer-b"):]:  # infer-bB-HxW
            batch, size = name[len("infer-b"):].split("-", 1)
            if not batch.isdigit() or int(batch) < 1:
                sys.exit(f"bench_reference: unknown case '{name}': the batch of infer-bB-HxW must be >= 1")
            return self.infer_batch(parse_size(size), int(batch))
        if name.startswith("infer-"):
            return self.infer(parse_size(name[len("infer-"):]))
        if name.startswith("train-b"):
            return self.train(int(name[len("train-b"):]))
        if name.startswith("search-"):
            return self.search(int(name[len("search-"):]))
        if name == "resnet50-224":
            return self.resnet50()
        sys.exit(f"bench_reference: unknown case '{name}' (infer-HxW, infer-bB-HxW, train-bB, search-N, "
                 f"resnet50-224)")


def features_size(size):
    """conv4's size for an image padded to a multiple of 32: conv1 (stride 2), max pool, layer2, layer3."""
    h, w = pad32(size[0]), pad32(size[1])
    for _ in range(4):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w




def add_common_arguments(p):
    """The options every benchmark program here takes (compare.py passes the same ones to each)."""
    p.add_argument("--threads", type=int, default=0,
                   help="intra-op threads (default: TRIDENT_NUM_THREADS, else every hardware thread)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--sizes", default="900x1500,600x1000")
    p.add_argument("--infer-batches", default="1",
                   help="inference batch sizes: 1 is infer-HxW, B > 1 adds infer-bB-HxW (detect on B images)")
    p.add_argument("--batches", default="2,4")
    p.add_argument("--train-size", default="900x1500")
    p.add_argument("--gallery", default="10000,100000,1000000")
    p.add_argument("--detections", type=int, default=20)
    p.add_argument("--yardstick-batch", type=int, default=1)
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--only", default="infer,train,search,resnet50")
    p.add_argument("--case")
    p.add_argument("--json")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off",
                   help="CUDA autocast of the inference passes and the training forward (fp16 training: loss "
                        "scaling); refused on the CPU")
    p.add_argument("--channels-last", action="store_true", help="model and images in channels-last memory format")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 in cuBLAS matmuls and cuDNN (default: PyTorch's, cuDNN on, matmul off); CUDA only")


def check_common_arguments(p, a):
    if a.amp != "off" and a.device != "cuda":
        p.error(f"--amp {a.amp} needs --device cuda: mixed precision (autocast) is timed on CUDA only; on the CPU use "
                f"--amp off")
    if a.tf32 and a.device != "cuda":
        p.error("--tf32 needs --device cuda: TF32 is a cuBLAS / cuDNN setting")
    if not all(b.isdigit() and int(b) >= 1 for b in a.infer_batches.split(",") if b):
        p.error(f"--infer-batches expects batch sizes >= 1, got '{a.infer_batches}'")


def set_up_process(a, program):
    """Threads (--threads, else TRIDENT_NUM_THREADS, else all), the device check, TF32 and the seed. Process-wide:
    each case's child process does it again (the flags are passed on)."""
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
        sys.exit(f"{program}: --device cuda, but no CUDA device is available")
    if a.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)


def write_records(path, header, records, indent=1):
    if path:
        with open(path, "w") as f:
            json.dump(dict(header, cases=records), f, indent=indent)


def run_cases_in_children(script, program, names):
    """Runs each case in a fresh process (this script again, with --case and --json to a temporary file), so that
    every case's peak resident memory is its own; returns the records of those that succeeded."""
    child_args, skip = [], False
    for x in sys.argv[1:]:  # the same options, less --json / --case
        if skip:
            skip = False
            continue
        if x in ("--json", "--case"):
            skip = True
            continue
        if x.startswith(("--json=", "--case=")):
            continue
        child_args.append(x)
    records = []
    tmp = f"/tmp/{program}_{os.getpid()}.json"
    for name in names:
        rc = subprocess.call([sys.executable, os.path.abspath(script)] + child_args + ["--case", name, "--json", tmp])
        if rc != 0:
            print(f"{program}: case {name} failed (status {rc})", file=sys.stderr)
            continue
        with open(tmp) as f:
            records.append(json.load(f)["cases"][0])
    if os.path.exists(tmp):
        os.remove(tmp)
    return records


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p)
    a = p.parse_args()
    check_common_arguments(p, a)
    set_up_process(a, "bench_reference")
    header = dict(program="reference", torch=torch.__version__, torchvision=torchvision.__version__,
                  threads=torch.get_num_threads(), device=a.device, repeat=a.repeat, warmup=a.warmup,
                  hardware_threads=os.cpu_count(), amp=a.amp, channels_last=on_off(a.channels_last),
                  tf32=tf32_state(a))

    if a.case:
        write_records(a.json, header, [Bench(a).run(a.case)], indent=None)
        return

    print(f"# bench_reference: torchvision reference of TridentNet<PaperConfig<CuhkSysu>>, torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, {torch.get_num_threads()} intra-op thread(s) of {os.cpu_count()} "
          f"hardware threads, device {a.device}, {a.repeat} timed run(s) after {a.warmup} warm-up per case; each case "
          f"in a fresh process; amp {a.amp}, channels-last {on_off(a.channels_last)}, tf32 {tf32_state(a)}")
    sys.stdout.flush()
    records = run_cases_in_children(__file__, "bench_reference", selected_cases(a))
    yard = next((r["figures"]["gflops_per_s"] for r in records if r["kind"] == "resnet50"), 0)
    if yard:
        print(f"\n## Efficiency: GFLOP/s as a fraction of the ResNet-50 classification forward ({yard:.1f} GFLOP/s)")
        for r in records:
            rate = r["figures"].get("gflops_per_s")
            if r["kind"] in ("infer", "train") and rate is not None:
                print(f"  {r['case']:<20} {rate:>8.1f} GFLOP/s  {100 * rate / yard:>6.1f}%")
    write_records(a.json, header, records)


if __name__ == "__main__":
    main()
