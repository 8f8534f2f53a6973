#pragma once
/// \file trident/ops/anchors.hpp
/// Anchors of the region proposal network (torchvision.models.detection.anchor_utils.AnchorGenerator for a
/// single feature map). For every feature-map cell, in row-major order, A = |ratios| x |sizes| anchors centred
/// on (x * stride, y * stride); within a cell the ratio varies slowest. An anchor of size s and ratio r = h / w
/// has w = s / sqrt(r), h = s * sqrt(r), and its corners are rounded to integers as torchvision does.
///
/// torchvision derives the stride from image and feature sizes (image // feature); with images padded to a
/// multiple of 32, as trident's batching does, that is exactly the stride 16 of conv4.

#include <trident/config.hpp>
#include <trident/core/host_copy.hpp>

#include <ATen/ops/arange.h>
#include <ATen/ops/round.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/tensor.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace trident::ops {

struct AnchorGenerator {
  std::vector<double> sizes{32, 64, 128, 256, 512};
  std::vector<double> aspect_ratios{0.5, 1.0, 2.0};
  double stride = 16;

  AnchorGenerator() = default;
  AnchorGenerator(std::vector<double> s, std::vector<double> r, double st)
      : sizes(std::move(s)), aspect_ratios(std::move(r)), stride(st) {
    validate();
  }

  /// Anchors per feature-map cell.
  int64_t num_anchors_per_location() const {
    return static_cast<int64_t>(sizes.size() * aspect_ratios.size());
  }

  /// The A anchors centred on the origin, [A, 4] float32 on `options`' device.
  at::Tensor cell_anchors(at::TensorOptions options = {}) const {
    validate();
    std::vector<float> data;
    data.reserve(4 * static_cast<size_t>(num_anchors_per_location()));
    for (double r : aspect_ratios) {
      // torchvision computes these in float32 and rounds the half sizes; do the same for identical anchors.
      const float h_ratio = std::sqrt(static_cast<float>(r));
      const float w_ratio = 1.0f / h_ratio;
      for (double s : sizes) {
        const float ws = w_ratio * static_cast<float>(s);
        const float hs = h_ratio * static_cast<float>(s);
        for (float v : {-ws, -hs, ws, hs}) data.push_back(std::nearbyint(v / 2.0f));
      }
    }
    return to_device(at::tensor(data, at::TensorOptions().dtype(at::kFloat)).view({num_anchors_per_location(), 4}),
                     options.device());
  }

  /// All anchors of a feature map of `height` x `width` cells: [height * width * A, 4] float32.
  at::Tensor grid_anchors(int64_t height, int64_t width, at::TensorOptions options = {}) const {
    TRIDENT_CHECK(height >= 0 && width >= 0,
                  "trident::ops::AnchorGenerator::grid_anchors: feature size must be non-negative, got {}x{}", height,
                  width);
    const auto opts = at::TensorOptions().dtype(at::kFloat).device(options.device());
    const auto base = cell_anchors(opts);
    const auto sx = at::arange(width, opts) * stride;
    const auto sy = at::arange(height, opts) * stride;
    const auto yy = sy.view({height, 1}).expand({height, width}).reshape({-1});
    const auto xx = sx.view({1, width}).expand({height, width}).reshape({-1});
    const auto shifts = at::stack({xx, yy, xx, yy}, 1);  // [HW, 4]
    return (shifts.view({-1, 1, 4}) + base.view({1, -1, 4})).reshape({-1, 4});
  }

  /// Anchors for a feature map tensor [N, C, H, W] (the same for every image of the batch). Kept per feature
  /// size, device and anchor settings (a copy of the generator shares them): the cell anchors come from the
  /// host, and on a GPU that copy waits for the device and cannot be captured in a CUDA graph. The result is
  /// shared: do not modify it in place.
  at::Tensor operator()(const at::Tensor& feature_map) const {
    TRIDENT_CHECK(feature_map.defined() && feature_map.dim() == 4,
                  "trident::ops::AnchorGenerator: feature_map must be [N, C, H, W], got {}", shape_of(feature_map));
    const int64_t height = feature_map.size(2), width = feature_map.size(3);
    const auto key = fmt::format("{}x{}@{}|{}|{}|{}", height, width, feature_map.device().str(), fmt::join(sizes, ","),
                                 fmt::join(aspect_ratios, ","), stride);
    const std::lock_guard<std::mutex> lock(cache_->mutex);
    auto found = cache_->grids.find(key);
    if (found != cache_->grids.end()) return found->second;
    if (cache_->grids.size() >= 64) cache_->grids.clear();  // many image sizes: keep the cache small
    return cache_->grids[key] = grid_anchors(height, width, feature_map.options());
  }

 private:
  struct Cache {
    std::mutex mutex;
    std::map<std::string, at::Tensor> grids;
  };
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();

  void validate() const {
    TRIDENT_CHECK(!sizes.empty() && !aspect_ratios.empty(),
                  "trident::ops::AnchorGenerator: sizes and aspect_ratios must not be empty");
    for (double s : sizes) TRIDENT_CHECK(s > 0, "trident::ops::AnchorGenerator: sizes must be positive, got {}", s);
    for (double r : aspect_ratios)
      TRIDENT_CHECK(r > 0, "trident::ops::AnchorGenerator: aspect_ratios must be positive, got {}", r);
    TRIDENT_CHECK(stride > 0, "trident::ops::AnchorGenerator: stride must be positive, got {}", stride);
  }
};

}  // namespace trident::ops
