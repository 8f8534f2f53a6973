#pragma once
/// \file trident/roi/pooler.hpp
/// RoiAlignPooler<H, W>: the RoI pooler policy. The output size shapes every tensor after it (the conv5 head's
/// input, the part strips), so it is a compile-time parameter; the paper uses 24 x 8 (tall, like a person).
/// Scale, sampling ratio and alignment are runtime options.

#include <trident/ops/roi_align.hpp>

#include <array>
#include <cstdint>
#include <vector>

namespace trident::roi {

struct RoiAlignPoolerOptions {
  double spatial_scale = 1.0 / 16.0;  ///< conv4 of ResNet-50 has stride 16
  int64_t sampling_ratio = 2;         ///< as the reference codebases (SeqNet, NAE) configure torchvision's pooler
  bool aligned = false;               ///< torchvision's MultiScaleRoIAlign default
};

template <int64_t H, int64_t W>
struct RoiAlignPooler {
  static_assert(H > 0 && W > 0, "RoiAlignPooler<H, W>: the output height and width must be positive");
  static constexpr int64_t output_height = H;
  static constexpr int64_t output_width = W;

  RoiAlignPoolerOptions options;

  RoiAlignPooler() = default;
  explicit RoiAlignPooler(RoiAlignPoolerOptions o) : options(o) {}

  /// features [N, C, Hf, Wf], per-image boxes [K_i, 4] in image coordinates -> [sum K_i, C, H, W].
  at::Tensor operator()(const at::Tensor& features, const std::vector<at::Tensor>& boxes) const {
    return ops::roi_align(features, boxes, {H, W}, options.spatial_scale, options.sampling_ratio, options.aligned);
  }

  /// features and rois [K, 5] (image index, x1, y1, x2, y2).
  at::Tensor operator()(const at::Tensor& features, const at::Tensor& rois) const {
    return ops::roi_align(features, rois, {H, W}, options.spatial_scale, options.sampling_ratio, options.aligned);
  }
};

}  // namespace trident::roi
