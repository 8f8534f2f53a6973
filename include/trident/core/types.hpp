#pragma once
/// \file trident/core/types.hpp
/// The values that travel between the stages of the network, and what it hands to search and evaluation. Each of
/// these types has this one home; every folder may use them (see docs/design.md, "Layers").

#include <trident/config.hpp>
#include <trident/core/identity.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace trident {

/// Height and width of an image in pixels.
using ImageSize = std::array<int64_t, 2>;

/// A box as x1, y1, x2, y2 in pixels (an annotation, a query, a ranked match). Tensors of boxes are [n, 4] float.
using Box = std::array<float, 4>;

/// One image's annotations, in the coordinates of the (resized) batch image.
struct Target {
  at::Tensor boxes;  ///< [n, 4] float, x1 y1 x2 y2
  at::Tensor pids;   ///< [n] int64: identity index (a row of the look-up table) >= 0, or unlabeled_identity
};

/// A batch of images, normalised and zero-padded to a common size (a multiple of 32).
struct ImageBatch {
  at::Tensor images;             ///< [B, 3, H, W]
  std::vector<ImageSize> sizes;  ///< each image's size before padding
};

/// Named scalar losses, in the order they were added (rpn_cls, rpn_reg, det_cls, det_reg, id, bin, un, part).
class LossMap {
 public:
  void add(std::string name, at::Tensor value) {
    for (const auto& [n, v] : items_)
      TRIDENT_CHECK(n != name, "trident::LossMap::add: a loss named '{}' exists already", name);
    items_.emplace_back(std::move(name), std::move(value));
  }
  const at::Tensor& operator[](const std::string& name) const {
    for (const auto& [n, v] : items_)
      if (n == name) return v;
    trident::fail("trident::LossMap: no loss named '{}'", name);
  }
  bool contains(const std::string& name) const {
    for (const auto& [n, v] : items_)
      if (n == name) return true;
    return false;
  }
  /// The sum of every loss (what backward() is called on).
  at::Tensor total() const {
    TRIDENT_CHECK(!items_.empty(), "trident::LossMap::total: no losses");
    at::Tensor sum = items_.front().second;
    for (size_t i = 1; i < items_.size(); ++i) sum = sum + items_[i].second;
    return sum;
  }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }
  size_t size() const { return items_.size(); }

 private:
  std::vector<std::pair<std::string, at::Tensor>> items_;
};

/// Per-RoI inference outputs of the branches, by name ("embedding", ...), rows aligned with the RoIs.
using RoiOutputs = std::map<std::string, at::Tensor>;

/// What the network finds in one image of a batch (TridentNet::detect): boxes in batch-image coordinates, each
/// branch's per-box outputs.
struct Detections {
  at::Tensor boxes;     ///< [D, 4]
  at::Tensor scores;    ///< [D] detection confidence alpha
  RoiOutputs outputs;   ///< e.g. "embedding" [D, 256]
};

/// One gallery picture's detections in the picture's own pixels, as search ranks them and the evaluation scores
/// them. Tensors may live on any device.
struct GalleryDetections {
  at::Tensor boxes;       ///< [N, 4] xyxy, floating point
  at::Tensor scores;      ///< [N] detection confidences
  at::Tensor embeddings;  ///< [N, D] L2-normalised re-id embeddings (may be undefined for detection-only use)
};

/// A model's outputs on a test set: every gallery picture's detections and every query's embedding. Written to
/// and read from results files by eval/results_file.hpp (trident::json); scored by eval/protocol.hpp.
struct SearchOutputs {
  std::vector<std::string> gallery_images;   ///< image file names, one per gallery image
  std::vector<GalleryDetections> gallery;    ///< detections of each gallery image (embeddings required)
  std::vector<std::string> query_images;     ///< the image of each query
  at::Tensor query_boxes;                    ///< [Q, 4] xyxy ground-truth box of each query
  at::Tensor query_embeddings;               ///< [Q, D]
};

}  // namespace trident
