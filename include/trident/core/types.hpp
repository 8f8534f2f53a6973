#pragma once
/// \file trident/core/types.hpp
/// The values that travel between the stages of the network.

#include <trident/config.hpp>
#include <trident/core/identity.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace trident {

/// Height and width of an image in pixels.
using ImageSize = std::array<int64_t, 2>;

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

}  // namespace trident
