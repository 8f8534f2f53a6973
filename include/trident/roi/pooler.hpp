#pragma once
/// \file trident/roi/pooler.hpp
/// RoiAlignPooler<H, W>: the RoI pooler policy. The output size shapes every tensor after it (the conv5 head's
/// input, the part strips), so it is a compile-time parameter; the paper uses 24 x 8 (tall, like a person).
/// Scale, sampling ratio and alignment are runtime options.

#include <trident/ops/roi_align.hpp>

#include <array>
#include <concepts>
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

/// What a pooler policy is: what TridentNet<Config> pools each RoI's features with. A type that is
/// constructible from RoiAlignPoolerOptions (NetOptions::pooler; it may ignore them) or default-constructible,
/// declares its output size (`output_height`, `output_width`: compile-time, since they shape the head's input and
/// the part strips) and maps features [N, C, Hf, Wf] and RoIs to [K, C, output_height, output_width], the RoIs
/// given either per image ([K_i, 4] boxes) or as one [K, 5] tensor (image index, x1, y1, x2, y2).
template <class P>
concept PoolerPolicy =
    (std::constructible_from<P, const RoiAlignPoolerOptions&> || std::default_initializable<P>) &&
    requires(const P& p, const at::Tensor& features, const std::vector<at::Tensor>& boxes, const at::Tensor& rois) {
      { P::output_height } -> std::convertible_to<int64_t>;
      { P::output_width } -> std::convertible_to<int64_t>;
      { p(features, boxes) } -> std::convertible_to<at::Tensor>;
      { p(features, rois) } -> std::convertible_to<at::Tensor>;
    };

/// Compile-time diagnosis of a would-be pooler policy: one static_assert per missing piece, each a sentence.
template <class P>
constexpr bool check_pooler() {
  static_assert(std::constructible_from<P, const RoiAlignPoolerOptions&> || std::default_initializable<P>,
                "a trident pooler policy must be constructible from trident::roi::RoiAlignPoolerOptions (it may ignore "
                "them) or default-constructible");
  static_assert(requires {
    { P::output_height } -> std::convertible_to<int64_t>;
    { P::output_width } -> std::convertible_to<int64_t>;
  }, "a trident pooler policy needs `static constexpr int64_t output_height` and `output_width` (the pooled size)");
  static_assert(requires(const P& p, const at::Tensor& f, const std::vector<at::Tensor>& boxes, const at::Tensor& rois) {
    { p(f, boxes) } -> std::convertible_to<at::Tensor>;
    { p(f, rois) } -> std::convertible_to<at::Tensor>;
  }, "a trident pooler policy needs `at::Tensor operator()(features, const std::vector<at::Tensor>& boxes) const` "
     "(boxes per image) and `at::Tensor operator()(features, const at::Tensor& rois) const` (rois [K, 5])");
  return true;
}

static_assert(PoolerPolicy<RoiAlignPooler<24, 8>>);

}  // namespace trident::roi
