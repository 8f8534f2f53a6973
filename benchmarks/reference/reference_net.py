"""The paper's person-search network built the way the field's Python codebases (SeqNet, NAE) build it, from
torchvision's pieces, with the layer shapes and the settings of trident's TridentNet<PaperConfig<CuhkSysu>>:

  - stem: torchvision resnet50 conv1 .. layer3 with FrozenBatchNorm2d; conv1 and layer1 frozen (requires_grad off);
  - RPN: torchvision.models.detection.rpn.RegionProposalNetwork with an AnchorGenerator of 5 sizes x 3 ratios and an
    RPNHead on conv4; IoU 0.7 / 0.3, 256 anchors per image at half positives, pre-NMS top 12000 / 6000 and post-NMS
    top 2000 / 300 (training / test), NMS 0.7 (trident/detector/rpn.hpp);
  - RoIAlign: torchvision.ops.MultiScaleRoIAlign on conv4, output 24 x 8, sampling ratio 2 (scale 1/16 inferred);
  - RoI sampling: torchvision.models.detection.roi_heads.RoIHeads.select_training_samples (ground truth added,
    IoU 0.5, 128 per image at most half positives, box coder weights 10, 10, 5, 5; trident/detector/roi_sampler.hpp);
  - head: resnet50 layer4 on each RoI -> [K, 2048, 12, 4]; g-hat and g are the max-pooled RoI and head maps;
  - detection branch: bias-free person classifiers on g-hat (1024 -> 2) and g (2048 -> 2) whose logits add up, box
    regression from g (2048 -> 4); alpha = the person probability;
  - re-id branch: encoders 1024 -> 128 and 2048 -> 128, concatenated and L2-normalised (256); scores against a look-up
    table of 5532 identities and a circular queue of 5000 (an OIM-style memory, updated after the loss with a Python
    loop over the labeled rows as the OIM codebases do); L_id, L_bin, lambda L_un with AGWF weighting;
  - part branch: conv5 map max-pooled into 6 horizontal strips, one shared classifier 2048 -> 7, L_part with AGWF.

The losses follow trident/losses/*.hpp (the same formulas and temperatures), so the arithmetic per iteration is the
same; only the implementation differs. Random weights: this is a timing reference, not a trained model.
"""
from collections import OrderedDict

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import boxes as box_ops
from torchvision.ops.misc import FrozenBatchNorm2d

FEATURE = "feat_res4"
UNLABELED = -1
BACKGROUND = -2


class Settings:
    """trident's NetOptions defaults and PaperConfig<CuhkSysu> sizes."""

    identities = 5532
    queue = 5000
    encoder_dim = 128
    parts = 6
    pooled = (24, 8)
    sampling_ratio = 2
    rpn_pre_nms_top_n = dict(training=12000, testing=6000)
    rpn_post_nms_top_n = dict(training=2000, testing=300)
    rpn_nms_threshold = 0.7
    rpn_fg_iou = 0.7
    rpn_bg_iou = 0.3
    rpn_batch_size_per_image = 256
    rpn_positive_fraction = 0.5
    roi_fg_iou = 0.5
    roi_bg_iou = 0.5
    roi_batch_size_per_image = 128
    roi_positive_fraction = 0.5
    box_coder_weights = (10.0, 10.0, 5.0, 5.0)
    score_threshold = 0.5
    nms_threshold = 0.4
    detections_per_image = 300
    min_box_size = 1e-2
    tau_id = 1.0 / 30.0
    tau_bin = 2.0
    s_kappa = 1.0
    lambda_unlabeled = 0.1
    tau_part = 0.1
    momentum = 0.5


def weighted_cross_entropy(scores, labels, alpha, tau):
    """Per row: cross_entropy(alpha_i S_i / tau, y_i) (trident/losses/weighting.hpp)."""
    return F.cross_entropy(scores * alpha.unsqueeze(1) / tau, labels, reduction="none")


class PersonSearchRoIHeads(RoIHeads):
    """torchvision's RoIHeads for the sampling and the box coder, with the three branches of the paper."""

    def __init__(self, s: Settings, head: nn.Module):
        super().__init__(
            box_roi_pool=MultiScaleRoIAlign([FEATURE], list(s.pooled), s.sampling_ratio),
            box_head=head,
            box_predictor=None,
            fg_iou_thresh=s.roi_fg_iou,
            bg_iou_thresh=s.roi_bg_iou,
            batch_size_per_image=s.roi_batch_size_per_image,
            positive_fraction=s.roi_positive_fraction,
            bbox_reg_weights=s.box_coder_weights,
            score_thresh=s.score_threshold,
            nms_thresh=s.nms_threshold,
            detections_per_img=s.detections_per_image,
        )
        self.s = s
        # detection branch
        self.cls_hat = nn.Linear(1024, 2, bias=False)
        self.cls = nn.Linear(2048, 2, bias=False)
        self.bbox_pred = nn.Linear(2048, 4)
        # re-id branch
        self.encoder_hat = nn.Linear(1024, s.encoder_dim)
        self.encoder = nn.Linear(2048, s.encoder_dim)
        dim = 2 * s.encoder_dim
        self.register_buffer("lut", torch.zeros(s.identities, dim))
        self.register_buffer("queue_features", torch.zeros(s.queue, dim))
        self.queue_head = 0
        self.flop_counter = None  # a FlopCounter while counting: the memory product is no module
        # part branch
        self.part_classifier = nn.Linear(2048, s.parts + 1)
        for layer in (self.cls_hat, self.cls, self.bbox_pred, self.encoder_hat, self.encoder, self.part_classifier):
            nn.init.normal_(layer.weight, std=0.01)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    # --- shared per-RoI work -------------------------------------------------------------------------------------
    def pool(self, features, boxes, image_sizes):
        return self.box_roi_pool({FEATURE: features}, boxes, image_sizes)

    def run_head(self, pooled):
        g_map = self.box_head(pooled)
        g_hat = F.adaptive_max_pool2d(pooled, 1).flatten(1)
        g = F.adaptive_max_pool2d(g_map, 1).flatten(1)
        return g_hat, g_map, g

    def detect(self, g_hat, g):
        logits = self.cls_hat(g_hat) + self.cls(g)
        alpha = F.softmax(logits, 1)[:, 1]
        return logits, alpha, self.bbox_pred(g)

    def embed(self, g_hat, g):
        x = torch.cat([self.encoder_hat(g_hat), self.encoder(g)], 1)
        return x / x.norm(2, 1, keepdim=True).clamp_min(1e-12)

    def memory_scores(self, x):
        if self.flop_counter is not None:
            self.flop_counter.add(2.0 * x.shape[0] * x.shape[1] * (self.s.identities + self.s.queue), False,
                                  x.requires_grad)
        return x @ torch.cat([self.lut, self.queue_features], 0).t()

    @torch.no_grad()
    def update_memory(self, x, pids):
        m = self.s.momentum
        for feature, pid in zip(x, pids.tolist()):  # the OIM codebases' loop over labeled rows
            if pid >= 0:
                row = m * self.lut[pid] + (1.0 - m) * feature
                self.lut[pid] = row / row.norm().clamp_min(1e-12)
        queued = x[pids < 0].to(self.queue_features.dtype)  # float16 / bfloat16 embeddings under autocast
        n = queued.shape[0]
        if n:
            kept = queued[-self.s.queue:]
            slots = (torch.arange(kept.shape[0], device=x.device) + self.queue_head + n - kept.shape[0]) % self.s.queue
            self.queue_features[slots] = kept
            self.queue_head = (self.queue_head + n) % self.s.queue

    # --- training --------------------------------------------------------------------------------------------------
    def losses(self, features, proposals, image_sizes, targets):
        s = self.s
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        pids = []
        for t, idx, lab in zip(targets, matched_idxs, labels):
            pid = t["pids"][idx]
            pids.append(torch.where(lab > 0, pid, torch.full_like(pid, BACKGROUND)))
        pids = torch.cat(pids)
        fg = pids != BACKGROUND
        regression_targets = torch.cat(regression_targets)

        pooled = self.pool(features, proposals, image_sizes)
        g_hat, g_map, g = self.run_head(pooled)
        logits, alpha, deltas = self.detect(g_hat, g)
        out = OrderedDict()
        out["det_cls"] = F.cross_entropy(logits, fg.long())
        fg_idx = fg.nonzero().squeeze(1)
        out["det_reg"] = F.smooth_l1_loss(deltas[fg_idx], regression_targets[fg_idx], reduction="sum",
                                          beta=1.0 / 9.0) / max(logits.shape[0], 1)
        a = alpha.detach()

        # re-id: L_id + L_bin + lambda L_un against the memory (Eq. 6-10)
        x = self.embed(g_hat, g)
        scores = self.memory_scores(x)
        labeled = (pids >= 0).nonzero().squeeze(1)
        unlabeled = (pids == UNLABELED).nonzero().squeeze(1)
        ls, ids, la = scores[labeled], pids[labeled], a[labeled]
        positive = ls.gather(1, ids.unsqueeze(1)).squeeze(1)
        n_lab = max(labeled.numel(), 1)
        out["id"] = weighted_cross_entropy(ls, ids, la, s.tau_id).sum() / n_lab
        out["bin"] = F.softplus((s.s_kappa - positive * la) / s.tau_bin).sum() / n_lab
        if labeled.numel() and unlabeled.numel():
            mean_positive = positive.mean().detach()
            us = scores[unlabeled, : s.identities]
            target = mean_positive.reshape(1, 1).expand(us.shape[0], 1)
            un = weighted_cross_entropy(torch.cat([target, us], 1), torch.zeros_like(unlabeled), a[unlabeled],
                                        s.tau_id).mean()
        else:
            un = scores[:0].sum()
        out["un"] = s.lambda_unlabeled * un
        self.update_memory(x.detach(), pids)

        # part: 6 strips, one shared classifier, labels 0..5 for a person and the dummy class 6 for background
        strips = F.adaptive_max_pool2d(g_map, (s.parts, 1)).squeeze(3).transpose(1, 2)
        part_scores = self.part_classifier(strips)
        part_labels = torch.where(fg.unsqueeze(1), torch.arange(s.parts, device=fg.device).unsqueeze(0),
                                  torch.full((1, 1), s.parts, device=fg.device, dtype=torch.long))
        part_labels = part_labels.expand(fg.shape[0], s.parts).reshape(-1)
        rows = weighted_cross_entropy(part_scores.reshape(-1, s.parts + 1), part_labels,
                                      a.repeat_interleave(s.parts), s.tau_part)
        out["part"] = rows.mean()
        return out

    # --- inference -------------------------------------------------------------------------------------------------
    def postprocess(self, deltas, alpha, rois, image_size, score_threshold, max_detections):
        boxes = self.box_coder.decode(deltas, [rois]).reshape(-1, 4)
        boxes = box_ops.clip_boxes_to_image(boxes, image_size)
        scores = alpha
        if score_threshold is not None:
            keep = torch.where(scores >= score_threshold)[0]
            boxes, scores = boxes[keep], scores[keep]
        keep = box_ops.remove_small_boxes(boxes, self.s.min_box_size)
        boxes, scores = boxes[keep], scores[keep]
        keep = box_ops.nms(boxes, scores, self.s.nms_threshold)[:max_detections]
        return boxes[keep], scores[keep]

    def describe(self, features, boxes, image_sizes):
        g_hat, _, g = self.run_head(self.pool(features, boxes, image_sizes))
        _, alpha, _ = self.detect(g_hat, g)
        return self.embed(g_hat, g), alpha


class ReferenceNet(nn.Module):
    def __init__(self, s: Settings = Settings()):
        super().__init__()
        self.s = s
        resnet = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
        self.backbone = nn.Sequential(OrderedDict(
            conv1=resnet.conv1, bn1=resnet.bn1, relu=resnet.relu, maxpool=resnet.maxpool,
            layer1=resnet.layer1, layer2=resnet.layer2, layer3=resnet.layer3))
        for module in (resnet.conv1, resnet.layer1):  # frozen as in SeqNet / NAE
            for p in module.parameters():
                p.requires_grad_(False)
        anchors = AnchorGenerator(sizes=((32, 64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(1024, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=s.rpn_fg_iou, bg_iou_thresh=s.rpn_bg_iou,
            batch_size_per_image=s.rpn_batch_size_per_image, positive_fraction=s.rpn_positive_fraction,
            pre_nms_top_n=s.rpn_pre_nms_top_n, post_nms_top_n=s.rpn_post_nms_top_n, nms_thresh=s.rpn_nms_threshold)
        self.roi_heads = PersonSearchRoIHeads(s, resnet.layer4)

    def losses(self, images, image_sizes, targets):
        image_list = ImageList(images, image_sizes)
        features = self.backbone(images)
        proposals, rpn_losses = self.rpn(image_list, {FEATURE: features}, targets)
        out = OrderedDict(rpn_cls=rpn_losses["loss_objectness"], rpn_reg=rpn_losses["loss_rpn_box_reg"])
        out.update(self.roi_heads.losses(features, proposals, image_sizes, targets))
        return out

    def detect(self, images, image_sizes):
        """As trident's TridentNet::detect: proposals -> confidence and refined boxes -> threshold 0.5, NMS 0.4 ->
        a second pass describing the detected boxes."""
        image_list = ImageList(images, image_sizes)
        features = self.backbone(images)
        proposals, _ = self.rpn(image_list, {FEATURE: features})
        rh = self.roi_heads
        g_hat, _, g = rh.run_head(rh.pool(features, proposals, image_sizes))
        _, alpha, deltas = rh.detect(g_hat, g)
        kept = []
        offset = 0
        for rois, size in zip(proposals, image_sizes):
            n = rois.shape[0]
            boxes, scores = rh.postprocess(deltas[offset:offset + n], alpha[offset:offset + n], rois, size,
                                           self.s.score_threshold, self.s.detections_per_image)
            kept.append((boxes, scores))
            offset += n
        embeddings, _ = rh.describe(features, [b for b, _ in kept], image_sizes)
        return kept, embeddings


class FlopCounter:
    """2 x multiply-adds of every nn.Conv2d and nn.Linear a forward runs (forward hooks), and the backward products
    autograd computes: a weight gradient where the weight requires grad, an input gradient where the input does."""

    def __init__(self, model: nn.Module):
        self.forward = 0.0
        self.backward = 0.0
        self.handles = [m.register_forward_hook(self.hook) for m in model.modules()
                        if isinstance(m, (nn.Conv2d, nn.Linear))]

    def hook(self, module, inputs, output):
        x = inputs[0]
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            f = 2.0 * module.in_channels // module.groups * k * output.numel()
        else:
            f = 2.0 * module.in_features * output.numel()
        self.add(f, module.weight.requires_grad and torch.is_grad_enabled(), x.requires_grad)

    def add(self, f, weight_grad, input_grad):
        self.forward += f
        self.backward += (f if weight_grad else 0.0) + (f if input_grad else 0.0)

    def remove(self):
        for h in self.handles:
            h.remove()
