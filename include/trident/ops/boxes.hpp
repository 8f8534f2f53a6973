#pragma once
/// \file trident/ops/boxes.hpp
/// Box utilities with torchvision's semantics (torchvision.ops.boxes). Boxes are float tensors of shape
/// [N, 4]; "xyxy" is (x1, y1, x2, y2) with x2 >= x1, "xywh" is (x, y, width, height) as CUHK-SYSU and PRW
/// store them. Every function runs on the device of its input and is differentiable where torchvision's is.
///
/// Defined results for edge cases (documented in docs/ops.md):
///  - an empty [0, 4] input gives an empty output of the documented shape;
///  - box_iou of two boxes whose union is zero is 0 (torchvision gives NaN);
///  - validate_boxes() rejects NaN/Inf coordinates and x2 < x1 or y2 < y1 with a message naming the box.

#include <trident/config.hpp>

#include <ATen/ops/clamp.h>
#include <ATen/ops/max.h>
#include <ATen/ops/min.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>

#include <cstdint>
#include <string_view>

namespace trident::ops {

/// Throws unless `boxes` is a floating-point [N, 4] tensor.
inline void check_box_shape(const at::Tensor& boxes, std::string_view caller, std::string_view name) {
  TRIDENT_CHECK(boxes.defined(), "{}: {} is an undefined tensor", caller, name);
  TRIDENT_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "{}: {} must be a [N, 4] tensor, got {}", caller, name,
                shape_of(boxes));
  TRIDENT_CHECK(boxes.is_floating_point(), "{}: {} must be a floating-point tensor, got {}", caller, name,
                std::string(c10::toString(boxes.scalar_type())));
}

/// Throws unless `boxes` is [N, 4], finite and (for xyxy boxes) has x2 >= x1 and y2 >= y1. The message names
/// the first offending box and its coordinates. One reduction; on CUDA it synchronises.
inline void validate_boxes(const at::Tensor& boxes, std::string_view caller, std::string_view name) {
  check_box_shape(boxes, caller, name);
  if (boxes.size(0) == 0) return;
  const auto finite = boxes.isfinite().all(1);
  const auto ordered = (boxes.select(1, 2) >= boxes.select(1, 0)) & (boxes.select(1, 3) >= boxes.select(1, 1));
  const auto bad = (~finite) | (~ordered);
  if (!bad.any().item<bool>()) return;
  const int64_t i = bad.nonzero().select(1, 0)[0].item<int64_t>();
  const auto b = boxes[i].to(at::kDouble).cpu();
  const double x1 = b[0].item<double>(), y1 = b[1].item<double>(), x2 = b[2].item<double>(), y2 = b[3].item<double>();
  const bool is_finite = finite[i].item<bool>();
  trident::fail("{}: {}[{}] = ({}, {}, {}, {}) {}", caller, name, i, x1, y1, x2, y2,
                is_finite ? "has x2 < x1 or y2 < y1 (boxes are x1, y1, x2, y2)" : "is not finite");
}

/// (x, y, w, h) -> (x1, y1, x2, y2).
inline at::Tensor box_xywh_to_xyxy(const at::Tensor& boxes) {
  check_box_shape(boxes, "trident::ops::box_xywh_to_xyxy", "boxes");
  const auto x = boxes.select(1, 0), y = boxes.select(1, 1);
  return at::stack({x, y, x + boxes.select(1, 2), y + boxes.select(1, 3)}, 1);
}

/// (x1, y1, x2, y2) -> (x, y, w, h).
inline at::Tensor box_xyxy_to_xywh(const at::Tensor& boxes) {
  check_box_shape(boxes, "trident::ops::box_xyxy_to_xywh", "boxes");
  const auto x1 = boxes.select(1, 0), y1 = boxes.select(1, 1);
  return at::stack({x1, y1, boxes.select(1, 2) - x1, boxes.select(1, 3) - y1}, 1);
}

/// Area (x2 - x1) * (y2 - y1) of each box, shape [N].
inline at::Tensor box_area(const at::Tensor& boxes) {
  check_box_shape(boxes, "trident::ops::box_area", "boxes");
  return (boxes.select(1, 2) - boxes.select(1, 0)) * (boxes.select(1, 3) - boxes.select(1, 1));
}

/// Pairwise intersection-over-union of xyxy boxes: [N, 4] x [M, 4] -> [N, M]. A pair whose union is zero
/// (two degenerate boxes) has IoU 0.
inline at::Tensor box_iou(const at::Tensor& a, const at::Tensor& b) {
  check_box_shape(a, "trident::ops::box_iou", "a");
  check_box_shape(b, "trident::ops::box_iou", "b");
  const auto area_a = box_area(a), area_b = box_area(b);
  const auto lt = at::max(a.unsqueeze(1).narrow(2, 0, 2), b.unsqueeze(0).narrow(2, 0, 2));  // [N, M, 2]
  const auto rb = at::min(a.unsqueeze(1).narrow(2, 2, 2), b.unsqueeze(0).narrow(2, 2, 2));
  const auto wh = (rb - lt).clamp_min(0);
  const auto inter = wh.select(2, 0) * wh.select(2, 1);
  const auto uni = area_a.unsqueeze(1) + area_b.unsqueeze(0) - inter;
  return at::where(uni > 0, inter / uni, at::zeros_like(inter));
}

/// Clips xyxy boxes to an image of `height` x `width` pixels: x to [0, width], y to [0, height].
inline at::Tensor clip_boxes_to_image(const at::Tensor& boxes, int64_t height, int64_t width) {
  check_box_shape(boxes, "trident::ops::clip_boxes_to_image", "boxes");
  TRIDENT_CHECK(height > 0 && width > 0, "trident::ops::clip_boxes_to_image: image size must be positive, got {}x{}",
                height, width);
  const auto w = static_cast<double>(width), h = static_cast<double>(height);
  return at::stack({boxes.select(1, 0).clamp(0, w), boxes.select(1, 1).clamp(0, h), boxes.select(1, 2).clamp(0, w),
                    boxes.select(1, 3).clamp(0, h)},
                   1);
}

/// Indices (int64, ascending) of the boxes whose width and height are both at least `min_size`.
inline at::Tensor remove_small_boxes(const at::Tensor& boxes, double min_size) {
  check_box_shape(boxes, "trident::ops::remove_small_boxes", "boxes");
  TRIDENT_CHECK(min_size >= 0, "trident::ops::remove_small_boxes: min_size must be >= 0, got {}", min_size);
  const auto ws = boxes.select(1, 2) - boxes.select(1, 0);
  const auto hs = boxes.select(1, 3) - boxes.select(1, 1);
  return ((ws >= min_size) & (hs >= min_size)).nonzero().select(1, 0);
}

/// The mask form of remove_small_boxes: [N] bool, true where width and height are both >= min_size. Its shape
/// does not depend on the values, so on a device it needs no wait (remove_small_boxes' nonzero waits).
inline at::Tensor box_size_at_least(const at::Tensor& boxes, double min_size) {
  check_box_shape(boxes, "trident::ops::box_size_at_least", "boxes");
  TRIDENT_CHECK(min_size >= 0, "trident::ops::box_size_at_least: min_size must be >= 0, got {}", min_size);
  const auto ws = boxes.select(1, 2) - boxes.select(1, 0);
  const auto hs = boxes.select(1, 3) - boxes.select(1, 1);
  return (ws >= min_size) & (hs >= min_size);
}

}  // namespace trident::ops
