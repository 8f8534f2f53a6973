#pragma once
/// \file trident/eval/types.hpp
/// What the evaluation reads beside a model's GalleryDetections (core/types.hpp): the ground truth of an image.
/// Boxes are xyxy (x1, y1, x2, y2) in pixels. Tensors may live on any device; the evaluation copies them to
/// the CPU and computes in double precision.

#include <trident/config.hpp>
#include <trident/core/identity.hpp>
#include <trident/core/types.hpp>
#include <trident/ops/boxes.hpp>

#include <ATen/ops/empty.h>

#include <cstdint>
#include <string>
#include <vector>

namespace trident::eval {

/// Ground truth of one gallery image.
struct ImageAnnotation {
  at::Tensor boxes;                 ///< [G, 4] xyxy person boxes
  std::vector<int64_t> person_ids;  ///< G identities; trident::unlabeled_identity (-1) for unlabeled people
  int64_t camera = -1;              ///< camera of the image (PRW; -1 when unknown)
};

namespace detail {

/// Contents of a tensor as doubles (CPU copy, row-major).
inline std::vector<double> to_doubles(const at::Tensor& t) {
  if (!t.defined() || t.numel() == 0) return {};
  const auto c = t.detach().to(at::kCPU, at::kDouble).contiguous();
  const double* p = c.data_ptr<double>();
  return std::vector<double>(p, p + c.numel());
}

/// Box `i` of a flat list of xyxy coordinates (to_doubles of an [n, 4] tensor).
inline Box box_at(const std::vector<double>& xyxy, size_t i) {
  return {static_cast<float>(xyxy[4 * i]), static_cast<float>(xyxy[4 * i + 1]), static_cast<float>(xyxy[4 * i + 2]),
          static_cast<float>(xyxy[4 * i + 3])};
}

/// Throws unless `d` is a consistent set of N detections (and, with `dim` >= 0, embeddings of that width).
inline void check_detections(const GalleryDetections& d, std::string_view caller, const std::string& name,
                             bool need_embeddings, int64_t dim = -1) {
  ops::check_box_shape(d.boxes, caller, name + ".boxes");
  const int64_t n = d.boxes.size(0);
  TRIDENT_CHECK(d.scores.defined() && d.scores.dim() == 1 && d.scores.size(0) == n,
                "{}: {}.scores must be [{}] (one per box), got {}", caller, name, n, shape_of(d.scores));
  if (!need_embeddings || n == 0) return;
  TRIDENT_CHECK(d.embeddings.defined() && d.embeddings.dim() == 2 && d.embeddings.size(0) == n &&
                    (dim < 0 || d.embeddings.size(1) == dim),
                "{}: {}.embeddings must be [{}, {}], got {}", caller, name, n, dim < 0 ? std::string("D") :
                std::to_string(dim), shape_of(d.embeddings));
}

}  // namespace detail
}  // namespace trident::eval
