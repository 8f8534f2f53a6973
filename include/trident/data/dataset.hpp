#pragma once
/// \file trident/data/dataset.hpp
/// The description of a person-search dataset that every reader returns (CUHK-SYSU, PRW): its images with their
/// boxes and identities, the train/test split and the queries with their galleries. Plain data, no I/O.
#include <trident/config.hpp>
#include <trident/core/identity.hpp>
#include <trident/core/types.hpp>

#include <ATen/ops/tensor.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace trident::data {

/// One image and the people annotated in it.
struct ImageRecord {
  std::string name;         ///< file name as the annotations spell it ("s1.jpg", "c1s1_000151.jpg")
  std::string path;         ///< full path of the picture
  int64_t width = 0;        ///< in pixels; 0 when the annotations do not say
  int64_t height = 0;       ///< in pixels; 0 when the annotations do not say
  at::Tensor boxes;         ///< [n, 4] float, x1 y1 x2 y2
  at::Tensor pids;          ///< [n] int64: identity (see Dataset) or unlabeled_identity
  int64_t camera = -1;      ///< camera id; -1 when the dataset has none (CUHK-SYSU)
};

/// One image of a query's gallery and where the query person is in it (nothing when absent).
struct GalleryItem {
  int64_t image = -1;      ///< index into Dataset::images
  std::optional<Box> box;  ///< the query person's box in that image, if the person appears
};

/// A query person and, where the dataset defines one, its gallery.
struct Query {
  int64_t image = -1;                ///< index into Dataset::images
  Box box{};                         ///< the query person
  int64_t pid = unlabeled_identity;  ///< the query's test identity
  int64_t camera = -1;               ///< camera of the query image; -1 when none
  /// The gallery images to search. Empty: the whole test split except the query image (PRW's protocol).
  std::vector<GalleryItem> gallery;
};

/// What a reader did besides reading: boxes it dropped and annotations it could not attach.
struct ReadReport {
  int64_t dropped_boxes = 0;    ///< boxes with a non-positive width or height, left out
  int64_t unmatched_boxes = 0;  ///< identity boxes (Train / Test protocol) that match no box of their image
};

/// A person-search dataset.
///   * train-image pids are rows of the look-up table, 0 .. num_train_ids - 1, or unlabeled_identity;
///   * test-image pids are test identities (those of the queries), or unlabeled_identity. They are not
///     look-up-table rows.
struct Dataset {
  std::string name;                  ///< "CUHK-SYSU", "PRW"
  std::string root;                  ///< the folder read
  std::vector<ImageRecord> images;   ///< every image of both splits
  std::vector<int64_t> train;        ///< indices into images: the training split
  std::vector<int64_t> test;         ///< indices into images: the test split (the gallery pool)
  std::vector<Query> queries;
  int64_t num_train_ids = 0;         ///< labeled training identities (the look-up table's rows)
  ReadReport report;
};

/// Receives a reader's notes (dropped boxes and the like), one line each. May be empty.
using LogCallback = std::function<void(const std::string&)>;

namespace detail {

/// [n, 4] float and [n] int64 tensors from flat vectors.
inline void set_boxes(ImageRecord& image, const std::vector<float>& boxes, const std::vector<int64_t>& pids) {
  const auto n = static_cast<int64_t>(pids.size());
  image.boxes = at::tensor(boxes, at::kFloat).view({n, 4});
  image.pids = at::tensor(pids, at::kLong).view({n});
}

/// Renumbers raw training identities 0, 1, ... in order of first appearance: the look-up table's rows.
class TrainIdentities {
 public:
  /// The row of `raw`, given the next free one if `raw` is new.
  int64_t operator()(int64_t raw) { return rows_.emplace(raw, static_cast<int64_t>(rows_.size())).first->second; }
  int64_t size() const { return static_cast<int64_t>(rows_.size()); }

 private:
  std::unordered_map<int64_t, int64_t> rows_;
};

}  // namespace detail
}  // namespace trident::data
