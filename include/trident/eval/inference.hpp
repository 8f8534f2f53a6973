#pragma once
/// \file trident/eval/inference.hpp
/// Runs a trained network over a dataset's test split and its queries, producing the SearchOutputs that the
/// evaluation protocols score and that results files store:
///   * every test image: load -> resize (Faster R-CNN rule, as in training) -> normalise -> detect(); the boxes
///     are mapped back to the picture's own pixels, with their scores and re-id embeddings;
///   * every query: its picture goes through the same transform and describe() embeds the query's annotated
///     box (the protocols' "query feature from its ground-truth box").
/// Inference runs without autograd, in eval mode (the network's mode is restored afterwards). Part of
/// trident::vision (pictures are read with OpenCV).
#include <trident/config.hpp>
#include <trident/data/dataset.hpp>
#include <trident/data/pictures.hpp>
#include <trident/core/types.hpp>

#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace trident::eval {

struct InferenceOptions {
  int64_t min_size = 900;   ///< the resize of the test pictures (the training transform's values)
  int64_t max_size = 1500;
  c10::Device device = c10::kCPU;
  std::string embedding = "embedding";  ///< the branch output that holds the re-id embedding
  /// Called after each picture with (pictures done, pictures in all), e.g. for a progress line.
  std::function<void(int64_t, int64_t)> progress;
};

namespace detail {

/// A test picture ready for the network: normalised, batched, and the sizes that map boxes back.
struct PreparedImage {
  ImageBatch batch;
  data::Resized resized;
};

inline PreparedImage prepare_test_image(const data::ImageRecord& record, const at::Tensor& boxes,
                                        const InferenceOptions& o) {
  Target target{boxes, at::zeros({boxes.size(0)}, at::kLong)};
  PreparedImage p;
  p.resized = data::resize_for_detection(data::load_image(record.path), target, o.min_size, o.max_size);
  auto collated = data::collate({data::normalize(p.resized.image)}, {});
  p.batch = std::move(collated.batch);
  p.batch.images = p.batch.images.to(o.device);
  return p;
}

}  // namespace detail

/// Puts a network in eval mode for its scope and restores its mode afterwards.
template <class Net>
struct EvalModeScope {
  explicit EvalModeScope(Net& net) : net(net), was_training(net.is_training()) { net.eval(); }
  ~EvalModeScope() { net.train(was_training); }
  EvalModeScope(const EvalModeScope&) = delete;
  EvalModeScope& operator=(const EvalModeScope&) = delete;
  Net& net;
  bool was_training;
};

/// Detections in one picture, in the picture's own pixels, with their embeddings. The network must be in eval
/// mode (EvalModeScope; compute_search_outputs sees to it).
template <class Net>
GalleryDetections detect_picture(Net& net, const std::string& path, const InferenceOptions& o = {}) {
  at::NoGradGuard no_grad;
  data::ImageRecord record;
  record.path = path;
  auto p = detail::prepare_test_image(record, at::zeros({0, 4}), o);
  auto found = net.detect(p.batch);
  auto& d = found.at(0);
  const auto it = d.outputs.find(o.embedding);
  TRIDENT_CHECK(it != d.outputs.end(), "trident::eval::detect_picture: the network has no '{}' output (no re-id branch?)",
                o.embedding);
  GalleryDetections out;
  out.boxes = data::boxes_to_original(d.boxes.to(at::kCPU), p.resized.size, p.resized.original_size);
  out.scores = d.scores.to(at::kCPU);
  out.embeddings = it->second.to(at::kCPU).contiguous();
  return out;
}

/// The embedding [1, D] of a given box (x1, y1, x2, y2 in the picture's pixels), e.g. a query person.
template <class Net>
at::Tensor describe_box(Net& net, const std::string& path, const Box& box, const InferenceOptions& o = {}) {
  at::NoGradGuard no_grad;
  data::ImageRecord record;
  record.path = path;
  const at::Tensor boxes = at::tensor(std::vector<float>(box.begin(), box.end())).view({1, 4});
  auto p = detail::prepare_test_image(record, boxes, o);
  auto described = net.describe(p.batch, {p.resized.target.boxes.to(o.device)});
  const auto it = described.at(0).find(o.embedding);
  TRIDENT_CHECK(it != described.at(0).end(),
                "trident::eval::describe_box: the network has no '{}' output (no re-id branch?)", o.embedding);
  return it->second.to(at::kCPU).contiguous();
}

/// The network's outputs on `dataset`'s test split (in dataset.test order) and on its queries.
template <class Net>
SearchOutputs compute_search_outputs(Net& net, const data::Dataset& dataset, const InferenceOptions& o = {}) {
  TRIDENT_CHECK(!dataset.test.empty(), "trident::eval::compute_search_outputs: dataset '{}' has no test images",
                dataset.name);
  EvalModeScope<Net> mode(net);
  const auto total = static_cast<int64_t>(dataset.test.size() + dataset.queries.size());
  int64_t done = 0;
  SearchOutputs out;
  for (const int64_t index : dataset.test) {
    const auto& record = dataset.images.at(static_cast<size_t>(index));
    out.gallery_images.push_back(record.name);
    out.gallery.push_back(detect_picture(net, record.path, o));
    if (o.progress) o.progress(++done, total);
  }
  std::vector<at::Tensor> query_embeddings;
  std::vector<float> query_boxes;
  for (const auto& q : dataset.queries) {
    const auto& record = dataset.images.at(static_cast<size_t>(q.image));
    query_embeddings.push_back(describe_box(net, record.path, q.box, o));
    query_boxes.insert(query_boxes.end(), q.box.begin(), q.box.end());
    out.query_images.push_back(record.name);
    if (o.progress) o.progress(++done, total);
  }
  out.query_boxes = at::tensor(query_boxes).view({static_cast<int64_t>(dataset.queries.size()), 4});
  out.query_embeddings = query_embeddings.empty() ? at::zeros({0, 0}) : at::cat(query_embeddings).contiguous();
  return out;
}

}  // namespace trident::eval
