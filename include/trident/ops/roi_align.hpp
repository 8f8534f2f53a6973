#pragma once
/// \file trident/ops/roi_align.hpp
/// RoIAlign (He et al., Mask R-CNN) with torchvision's semantics (torchvision.ops.roi_align), forward and
/// backward, on any device.
///
/// For each RoI (batch index, x1, y1, x2, y2) in image coordinates, the box is scaled by `spatial_scale`
/// (shifted by -0.5 when `aligned`), split into output_h x output_w bins, and each bin averages
/// grid_h x grid_w bilinear samples taken at the centres of a regular sub-grid. grid = sampling_ratio when it
/// is positive, else ceil(bin size) per RoI (the adaptive value). Without `aligned`, RoIs smaller than one
/// feature cell are widened to one cell. Samples further than one cell outside the feature map contribute 0;
/// samples in the outer half cell are clamped to the border.
///
/// CUDA: direct kernels compiled at run time (roi_align_cuda.hpp), forward and backward, any sampling ratio.
/// CPU: a direct kernel (forward: parallel over RoIs x blocks of channels, vectorised over channels on a
/// channels-last copy of the input; backward: parallel over channels), bit-identical in its order of
/// accumulation to torchvision's. Other devices (and CUDA where NVRTC is missing), with a fixed sampling
/// ratio: bilinear resampling of every sample point (at::grid_sampler_2d) and average pooling of each bin,
/// with shapes that depend only on the input sizes (no host-device synchronisation;
/// detail::roi_align_sampled_path). Other devices, adaptive sampling: a gather/contract formulation grouped by
/// grid size (detail::roi_align_tensor_path). Both are differentiated by autograd (docs/design.md, "On the
/// GPU"). Gradients flow to `input` only; RoIs are treated as constants, as torchvision does (proposals
/// are detached in Faster R-CNN). Double backward is not supported.

#include <trident/config.hpp>
#include <trident/ops/boxes.hpp>
#include <trident/ops/roi_align_cuda.hpp>
#include <trident/ops/roi_align_params.hpp>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/avg_pool2d.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/ceil.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/grid_sampler_2d.h>
#include <ATen/ops/index.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

namespace trident::ops {

namespace detail {

/// One bilinear sample: four neighbour offsets into an H x W plane and their weights (all zero outside).
template <typename T>
struct BilinearTap {
  int64_t offset[4];
  T weight[4];
};

/// Per-RoI geometry in the kernel's precision, computed exactly as torchvision does.
template <typename T>
struct RoiGeometry {
  int64_t batch = 0;
  T start_h = 0, start_w = 0, bin_h = 0, bin_w = 0;
  int64_t grid_h = 0, grid_w = 0;
  T count = 1;

  RoiGeometry(const T* roi, const RoiAlignParams& p) {
    batch = static_cast<int64_t>(roi[0]);
    const T offset = p.aligned ? T(0.5) : T(0);
    const T scale = static_cast<T>(p.spatial_scale);
    start_w = roi[1] * scale - offset;
    start_h = roi[2] * scale - offset;
    T roi_w = roi[3] * scale - offset - start_w;
    T roi_h = roi[4] * scale - offset - start_h;
    if (!p.aligned) {
      roi_w = std::max(roi_w, T(1));
      roi_h = std::max(roi_h, T(1));
    }
    bin_h = roi_h / static_cast<T>(p.output_h);
    bin_w = roi_w / static_cast<T>(p.output_w);
    grid_h = p.sampling_ratio > 0 ? p.sampling_ratio : static_cast<int64_t>(std::ceil(roi_h / p.output_h));
    grid_w = p.sampling_ratio > 0 ? p.sampling_ratio : static_cast<int64_t>(std::ceil(roi_w / p.output_w));
    count = static_cast<T>(std::max<int64_t>(grid_h * grid_w, 1));
  }

  /// The taps of every sample in (bin row, bin column, sample row, sample column) order.
  std::vector<BilinearTap<T>> taps(int64_t height, int64_t width, const RoiAlignParams& p) const {
    std::vector<BilinearTap<T>> out;
    out.reserve(static_cast<size_t>(p.output_h * p.output_w * grid_h * grid_w));
    for (int64_t ph = 0; ph < p.output_h; ++ph)
      for (int64_t pw = 0; pw < p.output_w; ++pw)
        for (int64_t iy = 0; iy < grid_h; ++iy) {
          const T yy = start_h + ph * bin_h + static_cast<T>(iy + .5f) * bin_h / static_cast<T>(grid_h);
          for (int64_t ix = 0; ix < grid_w; ++ix) {
            const T xx = start_w + pw * bin_w + static_cast<T>(ix + .5f) * bin_w / static_cast<T>(grid_w);
            out.push_back(tap(yy, xx, height, width));
          }
        }
    return out;
  }

  static BilinearTap<T> tap(T y, T x, int64_t height, int64_t width) {
    BilinearTap<T> t{{0, 0, 0, 0}, {T(0), T(0), T(0), T(0)}};
    if (!(y >= T(-1) && y <= static_cast<T>(height) && x >= T(-1) && x <= static_cast<T>(width))) return t;
    y = std::max(y, T(0));
    x = std::max(x, T(0));
    int64_t y_low = static_cast<int64_t>(y), x_low = static_cast<int64_t>(x), y_high, x_high;
    if (y_low >= height - 1) {
      y_high = y_low = height - 1;
      y = static_cast<T>(y_low);
    } else {
      y_high = y_low + 1;
    }
    if (x_low >= width - 1) {
      x_high = x_low = width - 1;
      x = static_cast<T>(x_low);
    } else {
      x_high = x_low + 1;
    }
    const T ly = y - static_cast<T>(y_low), lx = x - static_cast<T>(x_low);
    const T hy = T(1) - ly, hx = T(1) - lx;
    t.offset[0] = y_low * width + x_low;
    t.offset[1] = y_low * width + x_high;
    t.offset[2] = y_high * width + x_low;
    t.offset[3] = y_high * width + x_high;
    t.weight[0] = hy * hx;
    t.weight[1] = hy * lx;
    t.weight[2] = ly * hx;
    t.weight[3] = ly * lx;
    return t;
  }
};

/// Forward on a channels-last copy of the input: one bilinear tap then reads a contiguous run of channels, so the
/// inner loop runs over channels and vectorises, while each output element still accumulates its samples in
/// the same order and with the same expression as torchvision's per-channel loop (bit-identical results).
/// Work items are (RoI, block of channels); a block's outputs (block x bins) stay in cache while written.
template <typename T>
void roi_align_forward_cpu_kernel(const at::Tensor& input, const at::Tensor& rois, const RoiAlignParams& p,
                                  at::Tensor& output) {
  const int64_t num_rois = rois.size(0), channels = input.size(1), height = input.size(2), width = input.size(3);
  const auto channels_last = input.permute({0, 2, 3, 1}).contiguous();  // a view when the input is channels-last
  const bool channels_last_output = output.is_contiguous(at::MemoryFormat::ChannelsLast) && !output.is_contiguous();
  const T* in = channels_last.data_ptr<T>();
  const T* r = rois.data_ptr<T>();
  T* out = output.data_ptr<T>();
  std::vector<RoiGeometry<T>> geometry;
  geometry.reserve(static_cast<size_t>(num_rois));
  for (int64_t k = 0; k < num_rois; ++k) geometry.emplace_back(r + 5 * k, p);
  std::vector<std::vector<BilinearTap<T>>> taps(static_cast<size_t>(num_rois));
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) taps[k] = geometry[k].taps(height, width, p);
  });
  constexpr int64_t block = 64;
  const int64_t blocks = (channels + block - 1) / block;
  const int64_t bins = p.output_h * p.output_w, plane = height * width;
  at::parallel_for(0, num_rois * blocks, 1, [&](int64_t begin, int64_t end) {
    T acc[block];
    for (int64_t kb = begin; kb < end; ++kb) {
      const int64_t k = kb / blocks, c0 = (kb % blocks) * block, nc = std::min(block, channels - c0);
      const auto& g = geometry[k];
      const T* src = in + g.batch * plane * channels + c0;
      T* dst = out + (k * channels + c0) * bins;
      T* dst_cl = out + k * channels * bins + c0;  // channels-last output: [K, bins, C] in memory
      const int64_t per_bin = g.grid_h * g.grid_w;
      const BilinearTap<T>* t = taps[k].data();
      for (int64_t b = 0; b < bins; ++b) {
        for (int64_t c = 0; c < nc; ++c) acc[c] = T(0);
        for (int64_t s = 0; s < per_bin; ++s, ++t) {
          const T w0 = t->weight[0], w1 = t->weight[1], w2 = t->weight[2], w3 = t->weight[3];
          const T* __restrict v0 = src + t->offset[0] * channels;
          const T* __restrict v1 = src + t->offset[1] * channels;
          const T* __restrict v2 = src + t->offset[2] * channels;
          const T* __restrict v3 = src + t->offset[3] * channels;
          for (int64_t c = 0; c < nc; ++c) acc[c] += w0 * v0[c] + w1 * v1[c] + w2 * v2[c] + w3 * v3[c];
        }
        if (channels_last_output) {
          for (int64_t c = 0; c < nc; ++c) dst_cl[b * channels + c] = acc[c] / g.count;
        } else {
          for (int64_t c = 0; c < nc; ++c) dst[c * bins + b] = acc[c] / g.count;
        }
      }
    }
  });
}

template <typename T>
void roi_align_backward_cpu_kernel(const at::Tensor& grad_output, const at::Tensor& rois, const RoiAlignParams& p,
                                   at::Tensor& grad_input) {
  const int64_t num_rois = rois.size(0), channels = grad_input.size(1), height = grad_input.size(2),
                width = grad_input.size(3);
  const T* go = grad_output.data_ptr<T>();
  const T* r = rois.data_ptr<T>();
  T* gi = grad_input.data_ptr<T>();
  std::vector<RoiGeometry<T>> geometry;
  std::vector<std::vector<BilinearTap<T>>> taps(static_cast<size_t>(num_rois));
  geometry.reserve(static_cast<size_t>(num_rois));
  for (int64_t k = 0; k < num_rois; ++k) geometry.emplace_back(r + 5 * k, p);
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) taps[k] = geometry[k].taps(height, width, p);
  });
  const int64_t bins = p.output_h * p.output_w, plane = height * width;
  // Each channel's gradient planes are written by one thread only: no atomics, and per element the same
  // order of accumulation as torchvision's serial loop (RoI, bin, sample).
  at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      for (int64_t k = 0; k < num_rois; ++k) {
        const auto& g = geometry[k];
        T* dst = gi + (g.batch * channels + c) * plane;
        const T* src = go + (k * channels + c) * bins;
        const int64_t per_bin = g.grid_h * g.grid_w;
        const T count = static_cast<T>(per_bin);
        const BilinearTap<T>* t = taps[k].data();
        for (int64_t b = 0; b < bins; ++b) {
          const T grad = src[b];
          for (int64_t s = 0; s < per_bin; ++s, ++t)
            for (int q = 0; q < 4; ++q) dst[t->offset[q]] += grad * t->weight[q] / count;
        }
      }
    }
  });
}

inline at::Tensor roi_align_forward_cpu(const at::Tensor& input, const at::Tensor& rois, const RoiAlignParams& p) {
  // Every element is written by the kernel. The output's layout follows the input's, as ATen's CPU ops do: a
  // channels-last input (the folded eval() backbone's) gives a channels-last output, which the head consumes as is.
  const auto layout = input.suggest_memory_format();
  auto output = at::empty({rois.size(0), input.size(1), p.output_h, p.output_w}, input.options().memory_format(layout));
  if (output.numel() == 0) return output;
  const auto in = input.contiguous(layout);
  const auto r = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "trident::ops::roi_align forward",
                             [&] { roi_align_forward_cpu_kernel<scalar_t>(in, r, p, output); });
  return output;
}

inline at::Tensor roi_align_backward_cpu(const at::Tensor& grad_output, const at::Tensor& rois,
                                         const RoiAlignParams& p, at::IntArrayRef input_sizes) {
  auto grad_input = at::zeros(input_sizes, grad_output.options());
  if (grad_output.numel() == 0) return grad_input;
  const auto go = grad_output.contiguous();
  const auto r = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "trident::ops::roi_align backward",
                             [&] { roi_align_backward_cpu_kernel<scalar_t>(go, r, p, grad_input); });
  return grad_input;
}

/// The CPU kernels as a RoIAlignFunction implementation (autograd: RoiAlignCpuFunction::apply).
struct RoiAlignCpu {
  static at::Tensor forward(const at::Tensor& input, const at::Tensor& rois, const RoiAlignParams& p) {
    return roi_align_forward_cpu(input, rois, p);
  }
  static at::Tensor backward(const at::Tensor& grad_output, const RoiAlignContext& c) {
    return roi_align_backward_cpu(grad_output, c.rois, c.params, c.input_sizes);
  }
};
using RoiAlignCpuFunction = RoiAlignFunction<RoiAlignCpu>;

/// Per-axis bilinear sampling of a group of RoIs that share (grid, output) sizes, as index/weight tensors:
/// coordinates [K, P, G] -> indices and weights [K, P, G, 2] (low and high neighbour).
inline std::pair<at::Tensor, at::Tensor> axis_taps(const at::Tensor& coord, int64_t size) {
  const auto valid = (coord >= -1.0) & (coord <= static_cast<double>(size));
  auto c = coord.clamp_min(0);
  auto low = c.floor().to(at::kLong);
  const auto at_edge = low >= size - 1;
  low = low.clamp_max(size - 1);
  const auto high = at::where(at_edge, low, low + 1);
  c = at::where(at_edge, low.to(c.scalar_type()), c);
  const auto l = c - low.to(c.scalar_type());
  const auto h = 1 - l;
  const auto zero = at::zeros_like(l);
  const auto w_low = at::where(valid, h, zero), w_high = at::where(valid, l, zero);
  return {at::stack({low, high}, -1), at::stack({w_low, w_high}, -1)};
}

/// Per-RoI geometry as tensors [K] (torchvision's arithmetic): the box's start, scaled and shifted by -0.5 cell
/// when aligned, its size (at least one cell unless aligned), and the size of one output bin.
struct RoiBins {
  at::Tensor start_h, start_w, roi_h, roi_w, bin_h, bin_w;
};
inline RoiBins roi_bins(const at::Tensor& rois, const RoiAlignParams& p) {
  RoiBins b;
  const double offset = p.aligned ? 0.5 : 0.0;
  b.start_w = rois.select(1, 1) * p.spatial_scale - offset;
  b.start_h = rois.select(1, 2) * p.spatial_scale - offset;
  b.roi_w = rois.select(1, 3) * p.spatial_scale - offset - b.start_w;
  b.roi_h = rois.select(1, 4) * p.spatial_scale - offset - b.start_h;
  if (!p.aligned) {
    b.roi_w = b.roi_w.clamp_min(1);
    b.roi_h = b.roi_h.clamp_min(1);
  }
  b.bin_h = b.roi_h / static_cast<double>(p.output_h);
  b.bin_w = b.roi_w / static_cast<double>(p.output_w);
  return b;
}

/// Tensor-operation RoIAlign for any device (autograd differentiates it).
inline at::Tensor roi_align_tensor_path(const at::Tensor& input, const at::Tensor& rois_in, const RoiAlignParams& p) {
  const int64_t num_rois = rois_in.size(0), channels = input.size(1), height = input.size(2), width = input.size(3);
  if (num_rois == 0 || channels == 0) return at::zeros({num_rois, channels, p.output_h, p.output_w}, input.options());
  const auto rois = rois_in.detach();
  const auto [start_h, start_w, roi_h, roi_w, bin_h, bin_w] = roi_bins(rois, p);
  at::Tensor grid_h, grid_w;
  if (p.sampling_ratio > 0) {
    grid_h = at::full({num_rois}, p.sampling_ratio, at::kLong);
    grid_w = grid_h;
  } else {
    grid_h = at::ceil(roi_h / static_cast<double>(p.output_h)).to(at::kLong).cpu();
    grid_w = at::ceil(roi_w / static_cast<double>(p.output_w)).to(at::kLong).cpu();
  }
  // Group the RoIs by their sampling grid so that each group is one batched gather.
  std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> groups;
  const auto gh_acc = grid_h.accessor<int64_t, 1>();
  const auto gw_acc = grid_w.accessor<int64_t, 1>();
  for (int64_t k = 0; k < num_rois; ++k) groups[{gh_acc[k], gw_acc[k]}].push_back(k);

  const auto nhwc = input.permute({0, 2, 3, 1});  // gathers pick whole channel vectors
  const auto batch = rois.select(1, 0).to(at::kLong);
  const auto dev_long = at::TensorOptions().dtype(at::kLong).device(input.device());
  std::vector<at::Tensor> parts, order;
  for (const auto& [grid, members] : groups) {
    const auto [gh, gw] = grid;
    const auto idx_all = at::tensor(members, at::kLong).to(input.device());
    if (gh <= 0 || gw <= 0) {  // an empty sampling grid (zero-sized aligned RoI) pools to 0
      parts.push_back(at::zeros({idx_all.size(0), channels, p.output_h, p.output_w}, input.options()));
      order.push_back(idx_all);
      continue;
    }
    const int64_t ny = p.output_h * gh * 2, nx = p.output_w * gw * 2;
    const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 25) / std::max<int64_t>(ny * nx * channels, 1));
    for (int64_t s = 0; s < idx_all.size(0); s += chunk) {
      const auto idx = idx_all.narrow(0, s, std::min(chunk, idx_all.size(0) - s));
      const int64_t k = idx.size(0);
      // Positions in the RoIs' dtype (float32 for half / bfloat16 features), pooled values in the input's.
      const auto frac_h = (at::arange(gh, rois.options()) + 0.5) / static_cast<double>(gh);
      const auto frac_w = (at::arange(gw, rois.options()) + 0.5) / static_cast<double>(gw);
      const auto ph = at::arange(p.output_h, rois.options()), pw = at::arange(p.output_w, rois.options());
      const auto bh = bin_h.index_select(0, idx).view({k, 1, 1}), bw = bin_w.index_select(0, idx).view({k, 1, 1});
      const auto y = start_h.index_select(0, idx).view({k, 1, 1}) + ph.view({1, -1, 1}) * bh +
                     frac_h.view({1, 1, -1}) * bh;  // [k, PH, gh]
      const auto x = start_w.index_select(0, idx).view({k, 1, 1}) + pw.view({1, -1, 1}) * bw +
                     frac_w.view({1, 1, -1}) * bw;  // [k, PW, gw]
      const auto [yi, wy] = axis_taps(y, height);  // [k, PH, gh, 2]
      const auto [xi, wx] = axis_taps(x, width);   // [k, PW, gw, 2]
      const auto b = batch.index_select(0, idx).view({k, 1, 1});
      // values[k, (ph, iy, a), (pw, ix, b), c]
      const auto values = at::index(nhwc, {b, yi.reshape({k, ny, 1}), xi.reshape({k, 1, nx})});
      const auto v = values.view({k, p.output_h, gh * 2, p.output_w, gw * 2, channels});
      const auto along_y = (v * wy.reshape({k, p.output_h, gh * 2, 1, 1, 1})).sum(2);           // [k, PH, PW, gw2, C]
      const auto pooled = (along_y * wx.reshape({k, 1, p.output_w, gw * 2, 1})).sum(3);         // [k, PH, PW, C]
      parts.push_back((pooled / static_cast<double>(gh * gw)).permute({0, 3, 1, 2}).to(input.scalar_type()));
      order.push_back(idx);
    }
  }
  const auto all = at::cat(parts, 0);
  const auto position = at::cat(order, 0);
  auto inverse = at::empty_like(position);
  inverse.index_copy_(0, position, at::arange(num_rois, dev_long));
  return all.index_select(0, inverse).contiguous();
}

/// The checks that read only shapes, dtypes and devices (no data: no host-device synchronisation).
inline void check_roi_align_shapes(const at::Tensor& input, const at::Tensor& rois, const RoiAlignParams& p) {
  constexpr std::string_view caller = "trident::ops::roi_align";
  TRIDENT_CHECK(input.defined() && input.dim() == 4, "{}: input must be a [N, C, H, W] tensor, got {}", caller,
                shape_of(input));
  TRIDENT_CHECK(input.is_floating_point(), "{}: input must be floating point, got {}", caller,
                std::string(c10::toString(input.scalar_type())));
  TRIDENT_CHECK(rois.defined() && rois.dim() == 2 && rois.size(1) == 5,
                "{}: rois must be a [K, 5] tensor (batch index, x1, y1, x2, y2), got {}", caller, shape_of(rois));
  TRIDENT_CHECK(rois.device() == input.device(), "{}: rois ({}) and input ({}) must be on the same device", caller,
                rois.device().str(), input.device().str());
  TRIDENT_CHECK(p.output_h > 0 && p.output_w > 0, "{}: output size must be positive, got {}x{}", caller, p.output_h,
                p.output_w);
  TRIDENT_CHECK(std::isfinite(p.spatial_scale) && p.spatial_scale > 0,
                "{}: spatial_scale must be positive and finite, got {}", caller, p.spatial_scale);
  if (rois.size(0) == 0) return;
  TRIDENT_CHECK(input.size(2) > 0 && input.size(3) > 0, "{}: input {} has an empty spatial size", caller,
                shape_of(input));
}

}  // namespace detail

/// Throws unless every RoI has finite, ordered coordinates (x2 >= x1, y2 >= y1) and an integer batch index of
/// `input`; the message names the first bad RoI. It reads the RoIs' values, so for a tensor on a GPU it waits
/// for the device (roi_align calls it for CPU tensors only; call it yourself where device RoIs come from
/// outside the program).
inline void check_rois(const at::Tensor& input, const at::Tensor& rois,
                       std::string_view caller = "trident::ops::roi_align") {
  if (rois.size(0) == 0) return;
  validate_boxes(rois.narrow(1, 1, 4), caller, "rois[:, 1:5]");
  const auto b = rois.select(1, 0);
  const auto bad = (b != b.floor()) | (b < 0) | (b >= static_cast<double>(input.size(0)));
  if (bad.any().item<bool>()) {
    const int64_t i = bad.nonzero().select(1, 0)[0].item<int64_t>();
    trident::fail("{}: rois[{}, 0] = {} is not a batch index of input {} (an integer in [0, {}))", caller, i,
                  b[i].item<double>(), shape_of(input), input.size(0));
  }
}

namespace detail {

/// RoIAlign with a fixed sampling grid (sampling_ratio > 0) as bilinear resampling plus average pooling, in
/// tensor operations whose shapes depend only on the sizes of the inputs: no host-device synchronisation, the
/// same work on every call (CUDA graphs can capture it), on any device. Every sample point of every RoI is one
/// point of a sampling grid read with at::grid_sampler_2d (bilinear, zero padding, align_corners = true, whose
/// forward and backward kernels exist on every device), and each output bin averages its grid_h x grid_w
/// samples with at::avg_pool2d, in torchvision's order (sample rows outer, columns inner).
///  - torchvision's border rules are applied to the coordinates first: a sample further than one cell outside
///    the map is moved far outside the grid (zero padding then gives exactly 0 and no gradient); one in the
///    outer half cell is clamped to the border row or column, as torchvision clamps it.
///  - the images of the batch are stacked along the height ([N, C, H, W] -> [1, C, N*H, W]) and a RoI's rows
///    are offset by its batch index times H. Because every coordinate is clamped into its own image first, a
///    sample never mixes two images (at the last row the weight of the next image's first row is 0, up to the
///    float rounding of the normalised coordinate).
///  - positions are computed in the RoIs' dtype; half and bfloat16 features are resampled in float32 (the
///    caller passes float32 RoIs) and the result is cast back.
/// Output: [K, C, output_h, output_w], channels-last when the input is (the layout of the folded ResNet head),
/// else contiguous. A batch index outside [0, N) or a non-finite coordinate pools to 0 (never a read outside
/// the input).
inline at::Tensor roi_align_sampled_path(const at::Tensor& input, const at::Tensor& rois_in, const RoiAlignParams& p,
                                         int64_t max_samples_per_call = int64_t{1} << 28) {
  TRIDENT_CHECK(p.sampling_ratio > 0, "trident::ops::roi_align: the sampled path needs sampling_ratio > 0, got {}",
                p.sampling_ratio);
  const int64_t num_rois = rois_in.size(0), batch = input.size(0), channels = input.size(1);
  const int64_t height = input.size(2), width = input.size(3), g = p.sampling_ratio;
  const bool channels_last_out = input.is_contiguous(at::MemoryFormat::ChannelsLast) && !input.is_contiguous();
  const auto out_format = channels_last_out ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  if (num_rois == 0 || channels == 0)
    return at::zeros({num_rois, channels, p.output_h, p.output_w}, input.options().memory_format(out_format));
  const auto rois = rois_in.detach();
  const auto work_dtype = rois.scalar_type();  // float32 for half / bfloat16 inputs, else the input's
  const auto coords = rois.options();

  // Sample positions per RoI and axis: y [K, PH * g], x [K, PW * g], as torchvision computes them.
  const auto bins = roi_bins(rois, p);
  const auto& start_h = bins.start_h;
  const auto& start_w = bins.start_w;
  const auto bin_h = bins.bin_h.view({num_rois, 1, 1});
  const auto bin_w = bins.bin_w.view({num_rois, 1, 1});
  const auto sample = (at::arange(g, coords) + 0.5) / static_cast<double>(g);
  const auto y = (start_h.view({num_rois, 1, 1}) + at::arange(p.output_h, coords).view({1, -1, 1}) * bin_h +
                  sample.view({1, 1, -1}) * bin_h)
                     .view({num_rois, p.output_h * g});
  const auto x = (start_w.view({num_rois, 1, 1}) + at::arange(p.output_w, coords).view({1, -1, 1}) * bin_w +
                  sample.view({1, 1, -1}) * bin_w)
                     .view({num_rois, p.output_w * g});
  const auto image = rois.select(1, 0);
  const auto valid_image = (image >= 0) & (image < static_cast<double>(batch));  // NaN fails both
  const auto valid_y = (y >= -1.0) & (y <= static_cast<double>(height)) & valid_image.view({num_rois, 1});
  const auto valid_x = (x >= -1.0) & (x <= static_cast<double>(width));
  // Clamped into the image, then the image's offset in the stacked map.
  const auto row = y.clamp(0, static_cast<double>(height - 1)) +
                   (image.clamp(0, static_cast<double>(batch - 1)) * static_cast<double>(height)).view({num_rois, 1});
  const auto col = x.clamp(0, static_cast<double>(width - 1));
  // grid_sampler's coordinates, align_corners = true: -1 is the first row / column's centre, +1 the last's.
  const auto normalise = [](const at::Tensor& c, int64_t size) {
    return size > 1 ? c * (2.0 / static_cast<double>(size - 1)) - 1.0 : at::zeros_like(c);
  };
  const auto gy = normalise(row, batch * height).view({num_rois, p.output_h * g, 1}).expand({-1, -1, p.output_w * g});
  const auto gx = normalise(col, width).view({num_rois, 1, p.output_w * g}).expand({-1, p.output_h * g, -1});
  const auto inside = valid_y.view({num_rois, -1, 1}) & valid_x.view({num_rois, 1, -1});
  const auto outside = at::full({}, -3.0, coords);  // beyond every border: all four neighbours are padding
  const auto grid = at::stack({at::where(inside, gx, outside), at::where(inside, gy, outside)}, -1)
                        .view({1, num_rois * p.output_h * g, p.output_w * g, 2});

  // The features as one tall NCHW image in the working dtype (a view when the batch has one image).
  auto stacked = input.to(work_dtype).contiguous();
  if (batch > 1) stacked = stacked.transpose(0, 1).contiguous();
  stacked = stacked.view({1, channels, batch * height, width});

  // [K, C, PH, PW] in the requested layout and the input's dtype, filled chunk by chunk of RoIs so that the
  // samples before pooling (g * g values per output value) stay under max_samples_per_call (by default 2^28,
  // 1 GiB in float32: the paper's 300 RoIs at inference are one chunk, 4 x 128 training RoIs two).
  const int64_t rows_per_roi = p.output_h * g;
  const int64_t per_chunk = std::max<int64_t>(1, max_samples_per_call / (rows_per_roi * p.output_w * g * channels));
  auto out = channels_last_out ? at::empty({num_rois, p.output_h, p.output_w, channels}, input.options())
                               : at::empty({num_rois, channels, p.output_h, p.output_w}, input.options());
  for (int64_t first = 0; first < num_rois; first += per_chunk) {
    const int64_t n = std::min(per_chunk, num_rois - first);
    const auto samples = at::grid_sampler_2d(stacked, grid.narrow(1, first * rows_per_roi, n * rows_per_roi),
                                             /*interpolation_mode=bilinear*/ 0, /*padding_mode=zeros*/ 0,
                                             /*align_corners=*/true);  // [1, C, n * PH * g, PW * g]
    const auto pooled = at::avg_pool2d(samples, {g, g}, {g, g}).view({channels, n, p.output_h, p.output_w});
    // [C, n, PH, PW] -> the output's rows: one copy, which also converts to the input's dtype
    out.narrow(0, first, n).copy_(channels_last_out ? pooled.permute({1, 2, 3, 0}) : pooled.permute({1, 0, 2, 3}));
  }
  return channels_last_out ? out.permute({0, 3, 1, 2}) : out;
}

}  // namespace detail

/// RoIAlign of `rois` [K, 5] (batch index, x1, y1, x2, y2 in image coordinates) over `input` [N, C, H, W]:
/// returns [K, C, output_h, output_w]. `rois` is cast to the input's dtype (float32 for half and bfloat16
/// inputs, whose sampling positions are computed in float32). Half and bfloat16 inputs are pooled in float32.
///  - CPU: the direct kernel; the RoIs' values are checked first (check_rois).
///  - CUDA: the kernels of roi_align_cuda.hpp (compiled at run time by NVRTC), any sampling ratio, never waiting
///    for the device. The RoIs' values are not read on the host, so they are not checked: a batch index outside
///    the batch or a non-finite coordinate pools to 0. Call check_rois() for RoIs from outside the program.
///  - other devices, or CUDA where NVRTC cannot be found (or TRIDENT_CUDA_JIT=0), sampling_ratio > 0 (the
///    paper's 2): detail::roi_align_sampled_path, which never waits for the device either (same rules).
///  - other devices, adaptive sampling (sampling_ratio <= 0): each RoI's grid depends on its size, which the
///    gather formulation (detail::roi_align_tensor_path) reads on the host.
inline at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois, std::array<int64_t, 2> output_size,
                            double spatial_scale = 1.0, int64_t sampling_ratio = -1, bool aligned = false) {
  const RoiAlignParams p{output_size[0], output_size[1], spatial_scale, sampling_ratio, aligned};
  detail::check_roi_align_shapes(input, rois, p);
  const bool reduced = input.scalar_type() == at::kHalf || input.scalar_type() == at::kBFloat16;
  if (input.device().is_cpu()) {
    {
      const trident::detail::HostPath host_path;  // guards the CPU kernel's reads: always checked
      check_rois(input, rois);
    }
    const auto in = reduced ? input.to(at::kFloat) : input;
    const auto r = rois.to(in.scalar_type());
    auto out = detail::RoiAlignCpuFunction::apply(in, r, p.output_h, p.output_w, p.spatial_scale, p.sampling_ratio,
                                                  p.aligned);
    return reduced ? out.to(input.scalar_type()) : out;
  }
  // Half and bfloat16 features (autocast) keep the RoIs and sampling positions in float32: in bfloat16 the
  // coordinates between 1024 and 2048 pixels are 8 pixels apart.
  const auto r = rois.to(reduced ? at::kFloat : input.scalar_type());
  if (input.is_cuda() && detail::roi_align_cuda_kernels_available())
    return detail::RoiAlignCudaFunction::apply(input, r.contiguous(), p.output_h, p.output_w, p.spatial_scale,
                                               p.sampling_ratio, p.aligned);
  if (p.sampling_ratio > 0) return detail::roi_align_sampled_path(input, r, p);
  check_rois(input, rois);  // the adaptive path reads the RoIs on the host anyway
  return detail::roi_align_tensor_path(input, r, p);
}

/// Per-image boxes [K_i, 4] -> rois [sum K_i, 5] with the image index in column 0.
inline at::Tensor boxes_to_rois(const std::vector<at::Tensor>& boxes) {
  TRIDENT_CHECK(!boxes.empty(), "trident::ops::boxes_to_rois: the list of per-image boxes is empty");
  std::vector<at::Tensor> rows;
  rows.reserve(boxes.size());
  for (size_t i = 0; i < boxes.size(); ++i) {
    check_box_shape(boxes[i], "trident::ops::boxes_to_rois", fmt::format("boxes[{}]", i));
    const auto index = at::full({boxes[i].size(0), 1}, static_cast<double>(i), boxes[i].options());
    rows.push_back(at::cat({index, boxes[i]}, 1));
  }
  return at::cat(rows, 0);
}

/// RoIAlign of per-image boxes (torchvision's List[Tensor[K_i, 4]] form).
inline at::Tensor roi_align(const at::Tensor& input, const std::vector<at::Tensor>& boxes,
                            std::array<int64_t, 2> output_size, double spatial_scale = 1.0,
                            int64_t sampling_ratio = -1, bool aligned = false) {
  return roi_align(input, boxes_to_rois(boxes), output_size, spatial_scale, sampling_ratio, aligned);
}

}  // namespace trident::ops
