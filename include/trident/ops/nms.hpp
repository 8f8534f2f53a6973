#pragma once
/// \file trident/ops/nms.hpp
/// Greedy non-maximum suppression with torchvision's semantics (torchvision.ops.nms / batched_nms):
///  - boxes are visited by score, highest first; equal scores keep their input order (a stable sort);
///  - a box is removed when its IoU with a kept box is strictly greater than `iou_threshold`
///    (IoU == threshold survives); IoU = inter / (area_i + area_j - inter), no "+1" on sizes;
///  - the result holds the indices of the kept boxes (int64) in decreasing score order;
///  - an empty input gives an empty result; NaN/Inf boxes or scores and boxes with x2 < x1 are errors (checked
///    for CPU tensors; device tensors are not read on the host before the pass, see below).
/// batched_nms() suppresses only among boxes of the same group (class or image), exactly as torchvision's
/// coordinate-offset trick does but without its loss of precision for large coordinates.
///
/// CPU tensors run a direct kernel (boxes in score order in separate coordinate arrays, each group on its own,
/// a vectorised suppression loop). Tensors on other devices compute the overlap bit matrix on the device in
/// blocks; the (inherently sequential) greedy pass then runs
///  - on CUDA, in a kernel compiled at run time (nms_cuda.hpp, nms_kernels.inc: one block per problem, the
///    removed set in shared memory, 64 boxes per step), so the kept indices never leave the device and the call
///    waits only to learn how many were kept; detail::nms_each_padded returns them padded to a fixed size and does
///    not wait at all;
///  - elsewhere (or without NVRTC), on the host, which is how torchvision's CUDA kernel splits the work: the bit
///    matrices, score orders and masks of all problems come to the host in one copy (the call's one wait), and
///    the kept indices go back in one asynchronous copy from pinned memory.
/// detail::nms_each solves several problems (e.g. one per image) at once, with per-box masks (a box outside the
/// mask is neither kept nor suppresses) and a cap on the kept count, which is how the RPN and
/// TridentNet::detect filter and suppress without further waits.

#include <trident/ops/boxes.hpp>
#include <trident/ops/nms_cuda.hpp>

#include <ATen/Dispatch.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/max.h>
#include <ATen/ops/min.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/full.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdint>
#include <optional>
#include <vector>

namespace trident::ops {

namespace detail {

inline void check_nms_inputs(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor* groups,
                             double iou_threshold, std::string_view caller) {
  if (checks_values(boxes)) validate_boxes(boxes, caller, "boxes");
  else check_box_shape(boxes, caller, "boxes");
  TRIDENT_CHECK(scores.defined() && scores.dim() == 1 && scores.size(0) == boxes.size(0),
                "{}: scores must be a [N] tensor matching boxes {}, got {}", caller, shape_of(boxes), shape_of(scores));
  TRIDENT_CHECK(scores.is_floating_point(), "{}: scores must be floating point", caller);
  TRIDENT_CHECK(scores.device() == boxes.device(), "{}: scores and boxes must be on the same device", caller);
  if (scores.numel() > 0 && checks_values(scores))
    TRIDENT_CHECK(scores.isfinite().all().item<bool>(), "{}: scores contain NaN or Inf", caller);
  TRIDENT_CHECK(iou_threshold == iou_threshold, "{}: iou_threshold is NaN", caller);
  if (groups != nullptr) {
    TRIDENT_CHECK(groups->defined() && groups->dim() == 1 && groups->size(0) == boxes.size(0),
                  "{}: idxs must be a [N] tensor matching boxes {}, got {}", caller, shape_of(boxes),
                  shape_of(*groups));
    TRIDENT_CHECK(!groups->is_floating_point(), "{}: idxs must be an integer tensor", caller);
  }
}

/// CPU kernel: boxes [N, 4] contiguous, order = stable descending score order, groups optional.
///
/// The boxes are first copied into score order, one coordinate per array, and, with groups, into one segment
/// per group (score order kept inside each): a kept box is then compared only with the boxes after it in its
/// own segment, in a branch-free loop over contiguous arrays that the compiler vectorises. Each IoU is the same
/// expression on the same operands as in the one-pass formulation, and marking an already removed box again
/// changes nothing, so the kept set is the same; it is returned in score order.
/// The threshold as a value of the boxes' type T such that, for every T value v, v > result exactly when
/// double(v) > threshold: torchvision compares its T-typed IoU with the double threshold, and a threshold such as
/// 0.3 is not representable in float.
template <typename T>
T threshold_in(double threshold) {
  const T t = static_cast<T>(threshold);
  return static_cast<double>(t) <= threshold ? t : std::nextafter(t, -std::numeric_limits<T>::infinity());
}

template <typename T>
at::Tensor nms_cpu_kernel(const at::Tensor& boxes, const at::Tensor& order, const at::Tensor& groups,
                          double iou_threshold) {
  const int64_t n = boxes.size(0);
  const T* b = boxes.data_ptr<T>();
  const int64_t* ord = order.data_ptr<int64_t>();
  const int64_t* g = groups.defined() ? groups.data_ptr<int64_t>() : nullptr;
  // rank[q]: the score rank of the q-th box of the segmented layout; segments: [start, end) of each group.
  std::vector<int64_t> rank(static_cast<size_t>(n));
  for (int64_t q = 0; q < n; ++q) rank[q] = q;
  std::vector<int64_t> segments{0};
  if (g != nullptr) {
    std::stable_sort(rank.begin(), rank.end(), [&](int64_t r1, int64_t r2) { return g[ord[r1]] < g[ord[r2]]; });
    for (int64_t q = 1; q < n; ++q)
      if (g[ord[rank[q]]] != g[ord[rank[q - 1]]]) segments.push_back(q);
  }
  segments.push_back(n);
  std::vector<T> x1(static_cast<size_t>(n)), y1(x1.size()), x2(x1.size()), y2(x1.size()), area(x1.size());
  for (int64_t q = 0; q < n; ++q) {
    const T* box = b + 4 * ord[rank[q]];
    x1[q] = box[0];
    y1[q] = box[1];
    x2[q] = box[2];
    y2[q] = box[3];
    area[q] = (box[2] - box[0]) * (box[3] - box[1]);
  }
  const T thr = threshold_in<T>(iou_threshold);
  std::vector<uint8_t> removed(static_cast<size_t>(n), 0), kept_rank(static_cast<size_t>(n), 0);
  for (size_t s = 0; s + 1 < segments.size(); ++s) {
    const int64_t end = segments[s + 1];
    for (int64_t q = segments[s]; q < end; ++q) {
      if (removed[q]) continue;
      kept_rank[rank[q]] = 1;
      const T ix1 = x1[q], iy1 = y1[q], ix2 = x2[q], iy2 = y2[q], iarea = area[q];
      const T* __restrict jx1 = x1.data();
      const T* __restrict jy1 = y1.data();
      const T* __restrict jx2 = x2.data();
      const T* __restrict jy2 = y2.data();
      const T* __restrict jarea = area.data();
      uint8_t* __restrict out = removed.data();
      for (int64_t j = q + 1; j < end; ++j) {
        const T xx1 = std::max(ix1, jx1[j]);
        const T yy1 = std::max(iy1, jy1[j]);
        const T xx2 = std::min(ix2, jx2[j]);
        const T yy2 = std::min(iy2, jy2[j]);
        const T w = std::max(T(0), xx2 - xx1);
        const T h = std::max(T(0), yy2 - yy1);
        const T inter = w * h;
        const T ovr = inter / (iarea + jarea[j] - inter);
        out[j] |= static_cast<uint8_t>(ovr > thr);
      }
    }
  }
  std::vector<int64_t> keep;
  keep.reserve(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r)
    if (kept_rank[r]) keep.push_back(ord[r]);
  auto out = at::empty({static_cast<int64_t>(keep.size())}, at::kLong);
  std::copy(keep.begin(), keep.end(), out.data_ptr<int64_t>());
  return out;
}

/// The row blocks of an overlap bit matrix of n boxes: rows [first, first + rows) hold the words from
/// first / 64 on (the host pass never reads a row's words before its own), so a block is [rows, words - first/64].
struct OverlapBlocks {
  int64_t n = 0, words = 0, block_rows = 1;
  explicit OverlapBlocks(int64_t boxes)
      : n(boxes), words((boxes + 63) / 64),
        block_rows(std::max<int64_t>(64, ((int64_t{1} << 24) / std::max<int64_t>(boxes, 1)) / 64 * 64)) {}
  int64_t first_word(int64_t first_row) const { return first_row / 64; }
  /// Words of the packed matrix: the sum of every block's rows x (words - first word).
  int64_t size() const {
    int64_t total = 0;
    for (int64_t r0 = 0; r0 < n; r0 += block_rows) total += std::min(block_rows, n - r0) * (words - first_word(r0));
    return total;
  }
};

/// The "sorted box j overlaps sorted box i too much" bit matrix of boxes in score order `order`, on their
/// device, packed as OverlapBlocks lays it out (one flat int64 tensor): in row i, bit b of word w (w >= the
/// block's first word) stands for column 64 w + b. A block's IoUs (at most about 2^24 of them) are computed
/// against the columns from its first word on; the booleans are packed eight to a byte (weights 1..128, exact
/// in int32) and the bytes read as little-endian 64-bit words.
inline at::Tensor overlap_bits(const at::Tensor& boxes, const at::Tensor& order, const at::Tensor& groups,
                               double iou_threshold) {
  const OverlapBlocks layout(boxes.size(0));
  const int64_t n = layout.n, words = layout.words;
  const auto sorted = boxes.index_select(0, order);
  const auto sorted_groups = groups.defined() ? groups.index_select(0, order) : at::Tensor();
  const auto x1 = sorted.select(1, 0), y1 = sorted.select(1, 1), x2 = sorted.select(1, 2), y2 = sorted.select(1, 3);
  const auto area = (x2 - x1) * (y2 - y1);
  const auto byte_weights = at::pow(2, at::arange(8, boxes.options().dtype(at::kInt))).view({1, 1, 8});
  std::vector<at::Tensor> blocks;
  for (int64_t r0 = 0; r0 < n; r0 += layout.block_rows) {
    const int64_t rows = std::min(layout.block_rows, n - r0);
    const int64_t w0 = layout.first_word(r0), c0 = 64 * w0, cols = n - c0;
    const auto column = [&](const at::Tensor& t) { return t.narrow(0, c0, cols).unsqueeze(0); };
    const auto row = [&](const at::Tensor& t) { return t.narrow(0, r0, rows).unsqueeze(1); };
    const auto xx1 = at::max(row(x1), column(x1)), yy1 = at::max(row(y1), column(y1));
    const auto xx2 = at::min(row(x2), column(x2)), yy2 = at::min(row(y2), column(y2));
    const auto inter = (xx2 - xx1).clamp_min(0) * (yy2 - yy1).clamp_min(0);
    const auto iou = inter / (row(area) + column(area) - inter);
    at::Tensor over;
    AT_DISPATCH_FLOATING_TYPES(iou.scalar_type(), "trident::ops::nms threshold",
                               [&] { over = iou > static_cast<double>(threshold_in<scalar_t>(iou_threshold)); });
    if (sorted_groups.defined()) over = over & (row(sorted_groups) == column(sorted_groups));
    auto padded = at::zeros({rows, (words - w0) * 64}, boxes.options().dtype(at::kInt));
    padded.narrow(1, 0, cols).copy_(over);
    const auto bytes = (padded.view({rows, (words - w0) * 8, 8}) * byte_weights).sum(2).to(at::kByte);
    blocks.push_back(bytes.view(at::kLong).flatten());  // [rows * (words - w0)]
  }
  return blocks.size() == 1 ? blocks[0] : at::cat(blocks, 0);
}

/// One NMS problem of nms_each: boxes [n, 4] and scores [n] on one device; optional `valid` [n] (bool) masks
/// boxes out (neither kept nor suppressing) and `groups` [n] (integer) suppresses only within a group;
/// `max_keep` >= 0 caps the kept count (the first max_keep of the full result).
struct NmsProblem {
  at::Tensor boxes, scores, valid, groups;
  double iou_threshold = 0.5;
  int64_t max_keep = -1;
};

/// The most boxes a problem keeps: its max_keep, or all its boxes when it has none.
inline int64_t kept_cap(const NmsProblem& p) { return p.max_keep >= 0 ? p.max_keep : p.boxes.size(0); }

/// Whether t holds half or bfloat16 values (from autocast): NMS computes their IoUs in float32.
inline bool reduced(const at::Tensor& t) { return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16; }

/// Every problem's overlap bit matrix, score order and mask, packed into one int64 tensor on their device: what
/// the greedy passes read, on the host (nms_each) or in the kernel (nms_kernels.inc). Problem k's part starts at
/// offsets[k] (0 for a problem without boxes, which has no part): OverlapBlocks(n).size() words of bits, then n
/// box indices in decreasing score order (stable), then n mask values (1: the sorted box may be kept). `flat`
/// is undefined when no problem has a box.
struct PackedNms {
  at::Tensor flat;
  std::vector<int64_t> offsets;
};

inline PackedNms pack_nms_problems(const std::vector<NmsProblem>& problems) {
  PackedNms packed;
  packed.offsets.assign(problems.size(), 0);
  std::vector<at::Tensor> pieces;
  int64_t offset = 0;
  for (size_t k = 0; k < problems.size(); ++k) {
    const auto& p = problems[k];
    const int64_t n = p.boxes.size(0);
    if (n == 0) continue;
    const auto boxes = reduced(p.boxes) ? p.boxes.to(at::kFloat) : p.boxes;
    const auto scores = reduced(p.scores) ? p.scores.to(at::kFloat) : p.scores;
    const auto order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
    packed.offsets[k] = offset;
    pieces.push_back(overlap_bits(boxes, order, p.groups.defined() ? p.groups.to(at::kLong) : p.groups,
                                  p.iou_threshold));
    pieces.push_back(order);
    pieces.push_back(p.valid.defined() ? p.valid.index_select(0, order).to(at::kLong)
                                       : at::ones({n}, order.options()));
    offset += OverlapBlocks(n).size() + 2 * n;
  }
  if (!pieces.empty()) packed.flat = at::cat(pieces);
  return packed;
}

/// The kept indices of every problem as fixed-size tensors on the problems' device: `index` [P, K] (int64; K the
/// largest cap, max_keep or else the box count) holds row k's kept indices in decreasing score order and -1
/// after them, `count` [P] (int64) how many each kept.
struct KeptPadded {
  at::Tensor index, count;
};

/// The padded width of the problems' results: the largest cap (max_keep, else the box count).
inline int64_t padded_width(const std::vector<NmsProblem>& problems) {
  int64_t width = 0;
  for (const auto& p : problems) width = std::max(width, kept_cap(p));
  return width;
}

/// Whether nms_each and nms_each_padded run the problems' greedy pass on their device: CUDA tensors, the kernel
/// available (nms_cuda.hpp), and every problem's removed set within the kernel's shared memory.
inline bool nms_greedy_on_device(const std::vector<NmsProblem>& problems) {
  if (problems.empty() || !problems.front().boxes.is_cuda() || !nms_cuda_kernels_available()) return false;
  for (const auto& p : problems)
    if (nms_shared_bytes(p.boxes.size(0)) > kNmsMaxSharedBytes) return false;
  return true;
}

/// The kernel launches of the greedy pass on packed problems, planned on the host: the tensor the kernel reads
/// (the packed problems, or one zero when no problem has a box: the kernel reads nothing then but needs a valid
/// pointer), the arguments of each launch (at most kNmsProblemsPerLaunch problems: the launch's blocks), its
/// shared memory, and the outputs they write (uninitialised: the kernel writes every element). nms_each_padded
/// launches them on CUDA; the tests run the same plans through the emulated kernel.
struct NmsGreedyPlan {
  PackedNms packed;
  at::Tensor input, index, count;
  std::vector<NmsKernelArgs> launches;
  std::vector<unsigned> blocks, shared_bytes;
};

inline NmsGreedyPlan nms_greedy_plan(const std::vector<NmsProblem>& problems) {
  NmsGreedyPlan plan;
  plan.packed = pack_nms_problems(problems);
  const auto options = at::TensorOptions().dtype(at::kLong).device(problems.front().boxes.device());
  const auto total = static_cast<int64_t>(problems.size());
  plan.index = at::empty({total, padded_width(problems)}, options);
  plan.count = at::empty({total}, options);
  plan.input = plan.packed.flat.defined() ? plan.packed.flat : at::zeros({1}, options);
  for (int64_t first = 0; first < total; first += kNmsProblemsPerLaunch) {
    NmsKernelArgs a;
    a.out_stride = plan.index.size(1);
    a.first = first;
    const int64_t here = std::min(kNmsProblemsPerLaunch, total - first);
    int64_t shared = 0;
    for (int64_t j = 0; j < here; ++j) {
      const auto& p = problems[static_cast<size_t>(first + j)];
      const int64_t n = p.boxes.size(0), offset = plan.packed.offsets[static_cast<size_t>(first + j)];
      const OverlapBlocks layout(n);
      auto& d = a.problem[static_cast<size_t>(j)];
      d.bits = offset;
      d.order = offset + layout.size();
      d.valid = d.order + n;
      d.n = n;
      d.block_rows = layout.block_rows;
      d.cap = kept_cap(p);
      shared = std::max(shared, nms_shared_bytes(n));
    }
    plan.launches.push_back(a);
    plan.blocks.push_back(static_cast<unsigned>(here));
    plan.shared_bytes.push_back(static_cast<unsigned>(shared));
  }
  return plan;
}

/// The greedy pass of every problem on their CUDA device (nms_greedy_on_device must hold): no wait for the device.
inline KeptPadded nms_each_padded_on_device(const std::vector<NmsProblem>& problems) {
  const auto plan = nms_greedy_plan(problems);
  for (size_t l = 0; l < plan.launches.size(); ++l)
    launch_nms_greedy(plan.input, plan.index, plan.count, plan.launches[l], plan.blocks[l], plan.shared_bytes[l]);
  return {plan.index, plan.count};
}

/// Greedy NMS of every problem (all on one device): per problem, the indices into its boxes of the kept ones in
/// decreasing score order. CPU tensors (unless `force_tensor_path`): the CPU kernel on each problem's valid
/// boxes. CUDA with the kernel (nms_greedy_on_device): overlap_bits and the greedy passes on the device
/// (nms_each_padded), and the call's only wait for the device reads how many boxes each problem kept. Other
/// devices: overlap_bits on the device for all problems, then one copy to the host of every bit matrix, score
/// order and mask (the call's only wait), the greedy passes on the host, and the kept indices back in one
/// asynchronous copy (pinned memory on CUDA). Inputs are not checked here.
inline std::vector<at::Tensor> nms_each(const std::vector<NmsProblem>& problems, bool force_tensor_path = false) {
  std::vector<at::Tensor> out(problems.size());
  if (problems.empty()) return out;
  const auto device = problems.front().boxes.device();
  if (device.is_cpu() && !force_tensor_path) {
    const trident::detail::HostPath host_path;
    for (size_t k = 0; k < problems.size(); ++k) {
      const auto& p = problems[k];
      auto boxes = reduced(p.boxes) ? p.boxes.to(at::kFloat) : p.boxes;
      auto scores = reduced(p.scores) ? p.scores.to(at::kFloat) : p.scores;
      auto groups = p.groups.defined() ? p.groups.to(at::kLong) : at::Tensor();
      at::Tensor index;  // the valid boxes' indices, when masked
      if (p.valid.defined()) {
        index = p.valid.nonzero().select(1, 0);
        boxes = boxes.index_select(0, index);
        scores = scores.index_select(0, index);
        if (groups.defined()) groups = groups.index_select(0, index);
      }
      at::Tensor keep;
      if (boxes.size(0) == 0) {
        keep = at::empty({0}, at::kLong);
      } else {
        const auto order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
        const auto b = boxes.contiguous();
        const auto g = groups.defined() ? groups.contiguous() : at::Tensor();
        AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "trident::ops::nms", [&] {
          keep = nms_cpu_kernel<scalar_t>(b, order.contiguous(), g, p.iou_threshold);
        });
      }
      if (p.max_keep >= 0 && keep.size(0) > p.max_keep) keep = keep.narrow(0, 0, p.max_keep);
      out[k] = index.defined() ? index.index_select(0, keep) : keep;
    }
    return out;
  }

  if (nms_greedy_on_device(problems)) {
    // The greedy pass on the device; the one wait: how many each problem kept.
    const auto padded = nms_each_padded_on_device(problems);
    const auto counts = padded.count.to(at::kCPU);
    const int64_t* n = counts.data_ptr<int64_t>();
    for (size_t k = 0; k < problems.size(); ++k)
      out[k] = padded.index.select(0, static_cast<int64_t>(k)).narrow(0, 0, n[k]);
    return out;
  }
  const auto packed = pack_nms_problems(problems);
  if (!packed.flat.defined()) {
    for (auto& t : out) t = at::empty({0}, at::TensorOptions().dtype(at::kLong).device(device));
    return out;
  }
  // The one wait: everything to the host in one copy (into pinned memory on CUDA, the fastest transfer).
  auto host_options = at::TensorOptions().dtype(at::kLong);
  if (device.is_cuda()) host_options = host_options.pinned_memory(true);
  auto host = at::empty({packed.flat.size(0)}, host_options);
  host.copy_(packed.flat);
  const int64_t* data = host.data_ptr<int64_t>();
  std::vector<int64_t> kept_all;
  std::vector<int64_t> counts(problems.size(), 0);
  for (size_t k = 0; k < problems.size(); ++k) {
    const int64_t n = problems[k].boxes.size(0);
    if (n == 0) continue;
    const OverlapBlocks layout(n);
    const auto* mask = reinterpret_cast<const uint64_t*>(data + packed.offsets[k]);
    const int64_t* order = data + packed.offsets[k] + layout.size();
    const int64_t* valid = order + n;
    // The greedy pass a word at a time (as torchvision's CUDA NMS finishes on the host): a valid box not yet
    // removed is kept and ORs its row (from its own word on) into the removed set. O(kept * n / 64).
    const int64_t w = layout.words;
    const int64_t cap = kept_cap(problems[k]);
    std::vector<uint64_t> removed(static_cast<size_t>(w), 0);
    const uint64_t* block = mask;  // the current block's first row
    int64_t block_first = 0;
    for (int64_t i = 0; i < n && counts[k] < cap; ++i) {
      if (i >= block_first + layout.block_rows) {  // the next block
        block += layout.block_rows * (w - layout.first_word(block_first));
        block_first += layout.block_rows;
      }
      if (!valid[i] || ((removed[i / 64] >> (i % 64)) & 1u)) continue;
      kept_all.push_back(order[i]);
      ++counts[k];
      const int64_t w0 = layout.first_word(block_first);
      const uint64_t* row = block + (i - block_first) * (w - w0);
      for (int64_t x = i / 64; x < w; ++x) removed[x] |= row[x - w0];
    }
  }
  // Back to the device in one copy; asynchronous from pinned memory on CUDA.
  auto options = at::TensorOptions().dtype(at::kLong);
  if (device.is_cuda()) options = options.pinned_memory(true);
  auto kept = at::empty({static_cast<int64_t>(kept_all.size())}, options);
  std::copy(kept_all.begin(), kept_all.end(), kept.data_ptr<int64_t>());
  const auto on_device = kept.to(device, /*non_blocking=*/device.is_cuda());
  int64_t offset = 0;
  for (size_t k = 0; k < problems.size(); ++k) {
    out[k] = on_device.narrow(0, offset, counts[k]);
    offset += counts[k];
  }
  return out;
}

/// Greedy NMS of every problem with fixed-size results (KeptPadded), on the problems' device. On CUDA with the
/// kernel (nms_greedy_on_device) the greedy pass runs there and nothing waits for the device: the shapes are known
/// on the host, the counts stay on the device. Elsewhere nms_each's results, padded (`force_tensor_path` as there).
inline KeptPadded nms_each_padded(const std::vector<NmsProblem>& problems, bool force_tensor_path = false) {
  if (nms_greedy_on_device(problems)) return nms_each_padded_on_device(problems);
  const auto lists = nms_each(problems, force_tensor_path);
  const auto total = static_cast<int64_t>(problems.size());
  auto options = at::TensorOptions().dtype(at::kLong);
  if (total == 0) return {at::empty({0, 0}, options), at::empty({0}, options)};
  const auto device = problems.front().boxes.device();
  auto count = at::empty({total}, options);
  for (int64_t k = 0; k < total; ++k) count.data_ptr<int64_t>()[k] = lists[static_cast<size_t>(k)].size(0);
  auto index = at::full({total, padded_width(problems)}, -1, options.device(device));
  for (int64_t k = 0; k < total; ++k) {
    const auto& kept = lists[static_cast<size_t>(k)];
    index.select(0, k).narrow(0, 0, kept.size(0)).copy_(kept);
  }
  return {index, count.to(device)};
}

inline at::Tensor nms_impl(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& groups,
                           double iou_threshold, bool force_tensor_path) {
  NmsProblem p;
  p.boxes = boxes;
  p.scores = scores;
  p.groups = groups;
  p.iou_threshold = iou_threshold;
  return nms_each({p}, force_tensor_path)[0];
}

}  // namespace detail

/// Indices of the boxes kept by greedy NMS, in decreasing score order (see the file comment for semantics).
inline at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  detail::check_nms_inputs(boxes, scores, nullptr, iou_threshold, "trident::ops::nms");
  return detail::nms_impl(boxes, scores, at::Tensor(), iou_threshold, false);
}

/// NMS within each group (`idxs`: class or image index per box); indices in decreasing score order.
inline at::Tensor batched_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                              double iou_threshold) {
  detail::check_nms_inputs(boxes, scores, &idxs, iou_threshold, "trident::ops::batched_nms");
  return detail::nms_impl(boxes, scores, idxs, iou_threshold, false);
}

}  // namespace trident::ops
