#!/usr/bin/python3
"""bench_seqnet: the infer and train cases of trident's benchmarks/bench_network for SeqNet's own model
(github serend1p1ty/SeqNet, models/seqnet.py SeqNet(cfg) with defaults.py's configuration), imported at run time
from a checkout given with --seqnet, with random weights, random images and synthetic targets. Same case names and
JSON record format as bench_reference.py, so that benchmarks/reference/compare.py --seqnet DIR can put the three
programs side by side.

  python3 benchmarks/reference/bench_seqnet.py --seqnet DIR [--threads N] [--repeat N] [--warmup N]
      [--device cpu|cuda] [--sizes 900x1500,600x1000] [--batches 2,4] [--infer-batches 1,4,8]
      [--train-size 900x1500] [--only infer,train] [--amp off|bf16|fp16] [--channels-last] [--tf32]
      [--native-resize] [--score-thresh F] [--case NAME] [--json OUT]

Cases: infer-HxW (one image, eval mode, no grad, SeqNet's forward: its transform, backbone, RPN, RoI heads and
box rescaling; total_ms and the stages from runs with a device sync after each stage, detect_ms from plain calls, as
bench_reference.py's stage pipeline and detect()), infer-bB-HxW (B images in one call; SeqNet's inference is
written for one image per call, so when the batched call raises or returns fewer results the B images are timed as
B calls and the record says so in "mode" and "note"), train-bB (forward with targets, sum of the losses, backward,
SeqNet's gradient clipping at norm 10, SGD step, each run from the same weights). search-N and resnet50-224 are
not SeqNet's: skipped with a note.

The model is SeqNet(get_default_cfg()) with random weights: torchvision's resnet50 is built with weights=None while
SeqNet's constructor runs, and any weight download raises. Two departures from the defaults, both in the record:
INPUT.MIN_SIZE / MAX_SIZE are set to the case's image sides (so the network sees the case's size, as trident's and
the reference's do; --native-resize keeps 900 / 1500), and --score-thresh F replaces ROI_HEAD.SCORE_THRESH_TEST
(0.5), which with random weights may leave the second stage with no box. If yacs is not installed, a minimal
stand-in for yacs.config.CfgNode is installed in sys.modules before SeqNet's defaults.py is imported.

--amp bf16|fp16: CUDA autocast around the forward passes (and the losses); the backward runs outside it, fp16
training uses torch.amp.GradScaler, and SeqNet's OIM autograd.Function gets torch.amp.custom_fwd / custom_bwd (its
backward multiplies the half-precision gradient with the float32 tables, which fails otherwise). --channels-last:
the model's 4-d weights in channels-last. --tf32: TF32 on in cuBLAS and cuDNN. --amp and --tf32 need --device cuda.

Without --case every selected case runs in a child process of its own; with --case the case runs in this process
and, if SeqNet raises, the record carries "error" instead of figures (exit status 0: the failure is a result).
"""
import argparse
import contextlib
import copy
import json
import math
import os
import statistics
import sys
import time
import traceback
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cases import selected_cases  # noqa: E402

import torch  # noqa: E402
import torchvision  # noqa: E402

from reference_net import FlopCounter  # noqa: E402
# The record helpers bench_reference.py writes its records with (same keys and text).
from bench_reference import (DeviceBench, add_common_arguments, check_common_arguments,  # noqa: E402,F401
                             on_off, parse_size, proc_status_mb, run_cases_in_children, set_up_process, size_str,
                             tf32_state, write_records)

UNLABELED_PID = 5555  # SeqNet's datasets give unlabeled people this pid; labeled ones 1..LUT_SIZE


# --- yacs stand-in ---------------------------------------------------------------------------------------------------
class CfgNode(dict):
    """The part of yacs.config.CfgNode that SeqNet's defaults.py and model use: a dict whose keys are also attributes,
    clone(), freeze()/defrost() and dump(). No merging from files or lists."""

    def __init__(self, init=None, new_allowed=False):
        super().__init__()
        object.__setattr__(self, "_frozen", False)
        for k, v in (init or {}).items():
            self[k] = CfgNode(v) if isinstance(v, dict) and not isinstance(v, CfgNode) else v

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        if self._frozen:
            raise AttributeError(f"CfgNode is frozen: cannot set {name}")
        self[name] = value

    def clone(self):
        out = CfgNode()
        for k, v in self.items():
            out[k] = v.clone() if isinstance(v, CfgNode) else copy.deepcopy(v)
        return out

    def freeze(self, frozen=True):
        object.__setattr__(self, "_frozen", frozen)
        for v in self.values():
            if isinstance(v, CfgNode):
                v.freeze(frozen)

    def defrost(self):
        self.freeze(False)

    def is_frozen(self):
        return self._frozen

    def dump(self, **kwargs):
        def plain(node):
            return {k: plain(v) if isinstance(v, CfgNode) else v for k, v in node.items()}
        return json.dumps(plain(self), indent=1)


def ensure_yacs():
    """Returns a description of the yacs in use; installs the stand-in as yacs.config when the package is missing."""
    try:
        import yacs.config  # noqa: F401
        try:
            from importlib.metadata import version
            return f"yacs {version('yacs')}"
        except Exception:  # noqa: BLE001 - the version is only reported
            return "yacs (version unknown)"
    except ImportError:
        package = types.ModuleType("yacs")
        package.__path__ = []
        config = types.ModuleType("yacs.config")
        config.CfgNode = CfgNode
        config.CN = CfgNode
        package.config = config
        sys.modules["yacs"] = package
        sys.modules["yacs.config"] = config
        return "stand-in (yacs not installed)"


# --- SeqNet ----------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def random_backbone_weights():
    """While SeqNet builds its model: torchvision's resnet50 ignores pretrained=/weights= and builds random weights, and
    any attempt to download a state dict fails instead of reaching the network."""
    import torch.hub
    import torchvision.models.resnet as tv_resnet
    original = tv_resnet.resnet50

    def resnet50(*args, pretrained=None, weights=None, progress=True, **kwargs):
        return original(weights=None, progress=False, **kwargs)

    def refuse(*args, **kwargs):
        raise RuntimeError("bench_seqnet: a weight download was attempted; the benchmark uses random weights")

    saved_hub = torch.hub.load_state_dict_from_url
    tv_resnet.resnet50 = resnet50
    torch.hub.load_state_dict_from_url = refuse
    try:
        yield
    finally:
        tv_resnet.resnet50 = original
        torch.hub.load_state_dict_from_url = saved_hub


class SeqNetImport:
    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        if not os.path.isfile(os.path.join(self.dir, "models", "seqnet.py")):
            sys.exit(f"bench_seqnet: {self.dir} is not a SeqNet checkout (no models/seqnet.py)")
        self.yacs = ensure_yacs()
        sys.path.insert(0, self.dir)
        import defaults
        import models.oim
        from models.seqnet import SeqNet
        self.get_default_cfg = defaults.get_default_cfg
        self.SeqNet = SeqNet
        self.OIM = models.oim.OIM
        self.oim_autocast = False

    def oim_under_autocast(self, device_type):
        """SeqNet's OIM autograd.Function computes grad_outputs.mm(lut) in its backward; under torch.autocast the
        gradient is half precision and the tables are float32, which fails (SeqNet was written for apex's amp). The
        documented remedy: its forward and backward wrapped with torch.amp.custom_fwd / custom_bwd, so that the
        backward runs under the forward's autocast state. Only with --amp."""
        if self.oim_autocast:
            return
        forward = self.OIM.__dict__["forward"].__func__
        backward = self.OIM.__dict__["backward"].__func__
        self.OIM.forward = staticmethod(torch.amp.custom_fwd(forward, device_type=device_type))
        self.OIM.backward = staticmethod(torch.amp.custom_bwd(backward, device_type=device_type))
        self.oim_autocast = True

    def config(self, size, native_resize, score_thresh):
        """SeqNet's default configuration; unless native_resize, its transform's MIN_SIZE / MAX_SIZE are the image's
        own sides, so that the network sees the case's size (as trident and the reference do) rather than the image
        scaled to 900 / 1500. score_thresh (if not None) replaces MODEL.ROI_HEAD.SCORE_THRESH_TEST."""
        cfg = self.get_default_cfg()
        if not native_resize:
            cfg.INPUT.MIN_SIZE = min(size)
            cfg.INPUT.MAX_SIZE = max(size)
        if score_thresh is not None:
            cfg.MODEL.ROI_HEAD.SCORE_THRESH_TEST = score_thresh
        return cfg

    def build(self, cfg):
        with random_backbone_weights():
            return self.SeqNet(cfg)


# --- helpers ---------------------------------------------------------------------------------------------------------
class Bench(DeviceBench):
    def __init__(self, args, seqnet):
        self.args = args
        self.seqnet = seqnet
        self.device = torch.device("cuda:0" if args.device == "cuda" else "cpu")
        self.base_rss_mb = proc_status_mb("VmRSS")
        self.amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
        if self.amp_dtype is not None:
            seqnet.oim_under_autocast(self.device.type)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def model(self, size, train):
        cfg = self.seqnet.config(size, self.args.native_resize, self.args.score_thresh)
        torch.manual_seed(0)
        model = self.seqnet.build(cfg).to(self.device)
        if self.args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return cfg, model.train(train)

    def images(self, batch, size):
        """Random pictures in [0, 1], as SeqNet's data loader gives them (its transform normalises them)."""
        return [torch.rand(3, size[0], size[1]).to(self.device) for _ in range(batch)]

    def targets(self, batch, size, lut_size):
        """Five people per picture, as bench_reference.py draws them: the first three with identities 1..LUT_SIZE,
        the others unlabeled (SeqNet's pid 5555)."""
        out = []
        people = 5
        for _ in range(batch):
            heights = (torch.rand(people) * 0.45 + 0.15) * size[0]
            widths = heights * 0.4
            x1 = torch.rand(people) * (size[1] - widths)
            y1 = torch.rand(people) * (size[0] - heights)
            pids = torch.randint(1, lut_size + 1, (people,))
            pids[people // 2 + 1:] = UNLABELED_PID
            out.append(dict(boxes=torch.stack([x1, y1, x1 + widths, y1 + heights], 1).to(self.device),
                            labels=pids.to(self.device)))
        return out

    def header_text(self):
        return (f"{torch.get_num_threads()} thread(s), device {self.device}, amp {self.args.amp}"
                f"{', channels-last' if self.args.channels_last else ''}{', tf32' if self.args.tf32 else ''}")

    @staticmethod
    def print_record(record, header, details=()):
        print(f"\n## {record['case']} — {header}")
        for line in details:
            print("  " + line)
        for k, v in record.get("figures", {}).items():
            print(f"  {k:<28} {v:>12.4g}")
        for k in ("mode", "note", "error"):
            if k in record:
                print(f"  {k}: {record[k]}")
        sys.stdout.flush()

    def base_record(self, case, kind, size, batch, cfg):
        return dict(case=case, kind=kind, image=size_str(size), batch=batch,
                    transform_min_size=cfg.INPUT.MIN_SIZE, transform_max_size=cfg.INPUT.MAX_SIZE,
                    rpn_pre_nms_top_n_test=cfg.MODEL.RPN.PRE_NMS_TOPN_TEST,
                    rpn_post_nms_top_n_test=cfg.MODEL.RPN.POST_NMS_TOPN_TEST,
                    rpn_pre_nms_top_n_train=cfg.MODEL.RPN.PRE_NMS_TOPN_TRAIN,
                    rpn_post_nms_top_n_train=cfg.MODEL.RPN.POST_NMS_TOPN_TRAIN,
                    rpn_nms_threshold=cfg.MODEL.RPN.NMS_THRESH,
                    roi_batch_size_per_image=cfg.MODEL.ROI_HEAD.BATCH_SIZE_TRAIN,
                    detection_score_threshold=cfg.MODEL.ROI_HEAD.SCORE_THRESH_TEST,
                    detection_nms_threshold=cfg.MODEL.ROI_HEAD.NMS_THRESH_TEST,
                    amp=self.args.amp, channels_last=on_off(self.args.channels_last), tf32=tf32_state(self.args),
                    oim_custom_fwd_bwd=on_off(self.seqnet.oim_autocast))

    # --- inference -------------------------------------------------------------------------------------------------
    def stage_hooks(self, model, laps, counts, state):
        """Forward hooks that close a lap (with a device sync) after SeqNet's transform, backbone, RPN and RoI heads,
        and count the boxes of the first image after the RPN and after the first stage (postprocess_proposals). The
        caller sets state["t"] before the call and closes the last lap ("rescale": transform.postprocess) after it.
        Returns a function that removes them."""

        def lap(name):
            def hook(module, inputs, output):
                self.sync()
                now = time.perf_counter()
                laps.append((name, (now - state["t"]) * 1e3))
                state["t"] = now
                if name == "rpn":
                    counts["proposals"] = output[0][0].shape[0]
            return hook

        rh = model.roi_heads
        first_stage = rh.postprocess_proposals

        def counting_postprocess(*args, **kwargs):
            boxes, scores, labels = first_stage(*args, **kwargs)
            counts["first_stage_boxes"] = boxes[0].shape[0]
            return boxes, scores, labels

        handles = [model.transform.register_forward_hook(lap("transform")),
                   model.backbone.register_forward_hook(lap("stem")),
                   model.rpn.register_forward_hook(lap("rpn")),
                   rh.register_forward_hook(lap("roi_heads"))]
        rh.postprocess_proposals = counting_postprocess

        def remove():
            for h in handles:
                h.remove()
            rh.postprocess_proposals = first_stage
        return remove

    def infer(self, size, batch, name):
        """batch 1 (infer-HxW): total_ms and the stages from runs with a sync after each stage, then detect_ms from
        plain calls, as bench_reference.py's stage pipeline and detect(). batch > 1 (infer-bB-HxW): total_ms of the
        plain call on the B images (or of B calls, see below) and images_per_s."""
        a = self.args
        cfg, model = self.model(size, train=False)
        images = self.images(batch, size)
        record = self.base_record(name, "infer" if batch == 1 else "infer-batch", size, batch, cfg)
        fig = {}
        counts = {}

        def forward(imgs):
            with self.autocast():
                return model(imgs)

        with torch.no_grad():
            # SeqNet's inference is written for one image per call (its test loader's batch is 1); try the batch in
            # one call first, and time one call per image if that raises or loses images.
            call = "batched" if batch > 1 else "single"
            if batch > 1:
                try:
                    out = forward(images)
                    if len(out) != batch:
                        raise RuntimeError(f"SeqNet returned {len(out)} result(s) for {batch} images")
                except Exception as e:  # noqa: BLE001 - SeqNet's own failure is the result
                    call = "one call per image"
                    record["batched_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"

            def plain():
                if call == "one call per image":
                    out = []
                    for img in images:
                        out += forward([img])
                    return out
                return forward(images)

            if batch == 1:
                stage_runs = {}
                for i in range(a.warmup + a.repeat):
                    if i == a.warmup:
                        self.reset_peak()
                    laps, state = [], {}
                    remove = self.stage_hooks(model, laps, counts, state)
                    try:
                        self.sync()
                        start = state["t"] = time.perf_counter()
                        forward(images)
                        self.sync()
                        now = time.perf_counter()
                        laps += [("rescale", (now - state["t"]) * 1e3), ("total", (now - start) * 1e3)]
                    finally:
                        remove()
                    if i >= a.warmup:
                        for stage, ms in laps:
                            stage_runs.setdefault(stage, []).append(ms)
                fig.update({f"{stage}_ms": statistics.median(ms) for stage, ms in stage_runs.items()})
            for _ in range(a.warmup):
                plain()
            if batch > 1:
                self.reset_peak()
            runs = []
            detected = []
            for _ in range(a.repeat):
                self.sync()
                t0 = time.perf_counter()
                out = plain()
                self.sync()
                runs.append((time.perf_counter() - t0) * 1e3)
                detected = [int(d["boxes"].shape[0]) for d in out]
            if batch == 1:
                fig["detect_ms"] = statistics.median(runs)
                fig["proposals"] = counts.get("proposals", -1)
                fig["first_stage_boxes"] = counts.get("first_stage_boxes", -1)
            else:
                fig["total_ms"] = statistics.median(runs)
                fig["images_per_s"] = batch / (fig["total_ms"] / 1e3)
            fig["detect_detections"] = sum(detected)
            counter = FlopCounter(model)
            plain()
            counter.remove()
            fig["gflop"] = counter.forward / 1e9
            fig["gflops_per_s"] = counter.forward / 1e9 / (fig["total_ms"] / 1e3)
        self.memory(fig)
        record["figures"] = fig
        record["mode"] = call
        record["detections_per_image"] = detected
        if batch == 1 and counts.get("first_stage_boxes", 1) == 0:
            record["note"] = ("the first stage kept no box above the score threshold (random weights): SeqNet's "
                              "second stage (re-id head, box regressor, embeddings) did not run")
        if call == "one call per image":
            record["note"] = (f"SeqNet's batched inference failed ({record['batched_error']}); timed as {batch} "
                              f"calls of one image each")
        details = [f"SeqNet(cfg) from {self.seqnet.dir}, random weights, config {self.seqnet.yacs}; transform "
                   f"min/max size {cfg.INPUT.MIN_SIZE}/{cfg.INPUT.MAX_SIZE}; RPN pre/post-NMS top "
                   f"{cfg.MODEL.RPN.PRE_NMS_TOPN_TEST}/{cfg.MODEL.RPN.POST_NMS_TOPN_TEST} (test); detections: score "
                   f">= {cfg.MODEL.ROI_HEAD.SCORE_THRESH_TEST}, NMS {cfg.MODEL.ROI_HEAD.NMS_THRESH_TEST}",
                   f"{call}; detections per image (last run): {detected}; medians of {a.repeat} runs after "
                   f"{a.warmup} warm-up"]
        self.print_record(record, f"{self.header_text()}, batch {batch} of {size_str(size)}", details)
        return record

    # --- training --------------------------------------------------------------------------------------------------
    def train(self, batch, name):
        a = self.args
        size = parse_size(a.train_size)
        cfg, model = self.model(size, train=True)
        params = [p for p in model.parameters() if p.requires_grad]
        sgd = torch.optim.SGD(params, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.SGD_MOMENTUM,
                              weight_decay=cfg.SOLVER.WEIGHT_DECAY)
        scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        clip = cfg.SOLVER.CLIP_GRADIENTS
        images = self.images(batch, size)
        targets = self.targets(batch, size, cfg.MODEL.LOSS.LUT_SIZE)
        oim = model.roi_heads.reid_loss
        # every run starts from the same weights, OIM tables and queue position (restored untimed), as the others do
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        initial_header = oim.header_cq
        runs = {}
        state = {}

        def step(timed, counter=None):
            with torch.no_grad():
                model.load_state_dict(initial)
            oim.header_cq = initial_header
            self.sync()
            t0 = time.perf_counter()
            sgd.zero_grad()
            with self.autocast():
                losses = model(images, targets)
            total = sum(losses.values())
            self.sync()
            t1 = time.perf_counter()
            if counter is not None:
                counter.remove()
            if scaler is not None:
                scaler.scale(total).backward()
            else:
                total.backward()
            self.sync()
            t2 = time.perf_counter()
            if clip > 0:
                if scaler is not None:
                    scaler.unscale_(sgd)
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            self.sync()
            t3 = time.perf_counter()
            if scaler is not None:
                scaler.step(sgd)
                scaler.update()
            else:
                sgd.step()
            self.sync()
            t4 = time.perf_counter()
            state["loss"] = float(total.detach())
            state["losses"] = {k: float(v.detach()) for k, v in losses.items()}
            if timed:
                for stage, sec in (("forward", t1 - t0), ("backward", t2 - t1), ("clip", t3 - t2),
                                   ("step", t4 - t3), ("total", t4 - t0)):
                    runs.setdefault(stage, []).append(sec * 1e3)

        for _ in range(a.warmup):
            step(False)
        self.reset_peak()
        for _ in range(a.repeat):
            step(True)
        memory = {}
        self.memory(memory)
        counter = FlopCounter(model)
        step(False, counter)

        record = self.base_record(name, "train", size, batch, cfg)
        fig = {f"{k}_ms": statistics.median(v) for k, v in runs.items()}
        fig.update(sampled_rois=batch * cfg.MODEL.ROI_HEAD.BATCH_SIZE_TRAIN,
                   gflop=(counter.forward + counter.backward) / 1e9, gflop_forward=counter.forward / 1e9,
                   gflops_per_s=(counter.forward + counter.backward) / 1e9 / (fig["total_ms"] / 1e3),
                   loss=state["loss"])
        fig.update(memory)
        record["figures"] = fig
        record["losses"] = state["losses"]
        if not math.isfinite(state["loss"]):
            record["note"] = f"the loss is {state['loss']}"
        details = [
            f"SeqNet(cfg) from {self.seqnet.dir}, random weights, config {self.seqnet.yacs}; RPN pre/post-NMS top "
            f"{cfg.MODEL.RPN.PRE_NMS_TOPN_TRAIN}/{cfg.MODEL.RPN.POST_NMS_TOPN_TRAIN} (training); RoI sampler "
            f"{cfg.MODEL.ROI_HEAD.BATCH_SIZE_TRAIN} per image, twice (proposals, then first-stage boxes)",
            f"SGD lr {cfg.SOLVER.BASE_LR}, momentum {cfg.SOLVER.SGD_MOMENTUM}, weight decay "
            f"{cfg.SOLVER.WEIGHT_DECAY} over {len(params)} trainable tensors, gradient clipping at norm {clip}"
            f"{', GradScaler' if scaler else ''}; each run from the same weights; losses {state['losses']}; "
            f"medians of {a.repeat} runs after {a.warmup} warm-up"]
        self.print_record(record, f"{self.header_text()}, batch {batch} of {size_str(size)}, 5 people per image",
                          details)
        return record

    def run(self, name):
        try:
            if name.startswith("infer-b"):
                b, s = name[len("infer-b"):].split("-", 1)
                return self.infer(parse_size(s), int(b), name)
            if name.startswith("infer-"):
                return self.infer(parse_size(name[len("infer-"):]), 1, name)
            if name.startswith("train-b"):
                return self.train(int(name[len("train-b"):]), name)
        except Exception as e:  # noqa: BLE001 - reported per case
            traceback.print_exc()
            sys.stdout.flush()
            return dict(case=name, kind=name.split("-")[0], figures={},
                        error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        if name.startswith("search-") or name == "resnet50-224":
            record = dict(case=name, kind=name.split("-")[0], figures={},
                          skipped="not a SeqNet case (search and the ResNet-50 yardstick are the reference's)")
            print(f"\n## {name} — skipped: {record['skipped']}")
            return record
        sys.exit(f"bench_seqnet: unknown case '{name}' (infer-HxW, infer-bB-HxW, train-bB)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seqnet", default=os.environ.get("SEQNET_DIR"),
                   help="a SeqNet checkout (default: $SEQNET_DIR)")
    add_common_arguments(p)  # search and the ResNet-50 yardstick are accepted for compare.py's sake, and skipped
    p.add_argument("--native-resize", action="store_true",
                   help="keep SeqNet's transform at MIN_SIZE 900 / MAX_SIZE 1500 (default: the case's image size)")
    p.add_argument("--score-thresh", type=float,
                   help="replaces SeqNet's MODEL.ROI_HEAD.SCORE_THRESH_TEST (0.5), e.g. 0 so that with random "
                        "weights its second stage has boxes to work on")
    a = p.parse_args()
    if not a.seqnet:
        p.error("pass --seqnet DIR (a checkout of SeqNet) or set SEQNET_DIR")
    check_common_arguments(p, a)
    set_up_process(a, "bench_seqnet")
    seqnet = SeqNetImport(a.seqnet)
    header = dict(program="seqnet", torch=torch.__version__, torchvision=torchvision.__version__,
                  threads=torch.get_num_threads(), device=a.device, repeat=a.repeat, warmup=a.warmup,
                  hardware_threads=os.cpu_count(), seqnet=seqnet.dir, yacs=seqnet.yacs, amp=a.amp,
                  channels_last=on_off(a.channels_last), tf32=tf32_state(a), native_resize=a.native_resize,
                  score_thresh=a.score_thresh)

    if a.case:
        write_records(a.json, header, [Bench(a, seqnet).run(a.case)], indent=None)
        return

    print(f"# bench_seqnet: SeqNet from {seqnet.dir} (config: {seqnet.yacs}), torch {torch.__version__}, torchvision "
          f"{torchvision.__version__}, {torch.get_num_threads()} intra-op thread(s) of {os.cpu_count()} hardware "
          f"threads, device {a.device}, amp {a.amp}, {a.repeat} timed run(s) after {a.warmup} warm-up per case; each "
          f"case in a fresh process")
    sys.stdout.flush()
    names = []
    for name in selected_cases(a):
        if name.startswith("search-") or name == "resnet50-224":
            print(f"\n## {name} — skipped: not a SeqNet case")
        else:
            names.append(name)
    write_records(a.json, header, run_cases_in_children(__file__, "bench_seqnet", names))


if __name__ == "__main__":
    main()
