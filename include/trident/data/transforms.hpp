#pragma once
/// \file trident/data/transforms.hpp
/// The training input pipeline on image tensors: resize by the Faster R-CNN rule, flip, normalise, and collate a
/// few images into the padded ImageBatch the network consumes. Reading pictures from files is data/pictures.hpp
/// (OpenCV, trident::vision); everything here needs only trident::trident.
///
///   image -> resize_for_detection -> horizontal_flip (random) -> normalize   (prepare_training_sample)
///   collate(images, targets)  ->  ImageBatch padded to a multiple of 32 + each image's size
///
/// The resize follows torchvision's GeneralizedRCNNTransform: scale = min_size / short side unless the long side
/// would exceed max_size (then max_size / long side); the output size is floor(side * scale); the pixels are
/// interpolated bilinearly with align_corners = false from the recomputed factors (input / output size); boxes
/// are multiplied by each axis' ratio output / input size.
#include <trident/config.hpp>
#include <trident/core/types.hpp>
#include <trident/data/dataset.hpp>

#include <ATen/ops/empty.h>
#include <ATen/ops/flip.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/upsample_bilinear2d.h>
#include <ATen/ops/zeros.h>


#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <system_error>
#include <string>
#include <vector>

namespace trident::data {

/// ImageNet's channel means and standard deviations (RGB, pixels in [0, 1]).
inline constexpr std::array<double, 3> imagenet_mean{0.485, 0.456, 0.406};
inline constexpr std::array<double, 3> imagenet_std{0.229, 0.224, 0.225};

/// Options of the training pipeline; the paper's (and torchvision's Faster R-CNN) values by default.
struct TransformOptions {
  int64_t min_size = 900;                   ///< the short side's target length
  int64_t max_size = 1500;                  ///< the long side never exceeds this
  std::array<double, 3> mean = imagenet_mean;
  std::array<double, 3> std = imagenet_std;
  double flip_probability = 0.5;            ///< of a horizontal flip, in [0, 1]
};

/// An image [3, H, W] and its annotations in that image's coordinates.
struct Sample {
  at::Tensor image;
  Target target;
};

/// What resize_for_detection returns: the resized image and boxes, and what maps results back.
struct Resized {
  at::Tensor image;        ///< [3, H', W']
  Target target;           ///< boxes scaled by (W' / W, H' / H)
  double scale = 1.0;      ///< the factor of the Faster R-CNN rule (H' = floor(H * scale), W' = floor(W * scale))
  ImageSize original_size{};  ///< {H, W}
  ImageSize size{};           ///< {H', W'}
};

/// What prepare_training_sample returns.
struct TrainingSample {
  at::Tensor image;           ///< [3, H', W'] float, normalised
  Target target;              ///< boxes in the resized (and possibly flipped) image
  double scale = 1.0;         ///< see Resized::scale
  ImageSize original_size{};  ///< {H, W} of the picture on disk
  bool flipped = false;
};

/// A collated batch and its targets (in the same order).
struct CollatedBatch {
  ImageBatch batch;
  std::vector<Target> targets;
};

namespace detail {

inline void check_image(const at::Tensor& image, const char* function) {
  TRIDENT_CHECK(image.defined() && image.dim() == 3 && image.size(0) == 3,
                "trident::data::{}: image must be a [3, H, W] tensor, got {}", function, shape_of(image));
  TRIDENT_CHECK(image.size(1) > 0 && image.size(2) > 0, "trident::data::{}: image must not be empty, got {}",
                function, shape_of(image));
}

/// A training picture's annotated boxes ([n, 4] float, x1 y1 x2 y2, in the picture's own pixels): each finite,
/// of positive width and height, and overlapping the width x height picture. A box partly outside is kept (a person
/// cut by the picture's edge); one wholly outside, empty or not a number is refused, naming the picture, the box
/// and its values (the readers already leave out boxes of non-positive size, reporting them).
inline void check_annotated_boxes(const at::Tensor& boxes, int64_t width, int64_t height, const std::string& path) {
  if (!boxes.defined() || boxes.size(0) == 0) return;
  const auto b = boxes.to(at::kDouble).contiguous();
  const double* v = b.data_ptr<double>();
  for (int64_t i = 0; i < b.size(0); ++i) {
    const double x1 = v[4 * i], y1 = v[4 * i + 1], x2 = v[4 * i + 2], y2 = v[4 * i + 3];
    // The message's arguments are formatted only when a check fails (TRIDENT_CHECK): nothing per box otherwise.
    TRIDENT_CHECK(std::isfinite(x1) && std::isfinite(y1) && std::isfinite(x2) && std::isfinite(y2),
                  "trident::data::prepare_training_sample: '{}': box {} (x1, y1, x2, y2) = [{}, {}, {}, {}] is not "
                  "finite", path, i, x1, y1, x2, y2);
    TRIDENT_CHECK(x2 > x1 && y2 > y1,
                  "trident::data::prepare_training_sample: '{}': box {} (x1, y1, x2, y2) = [{}, {}, {}, {}] has a "
                  "width or height <= 0", path, i, x1, y1, x2, y2);
    TRIDENT_CHECK(x2 > 0 && y2 > 0 && x1 < static_cast<double>(width) && y1 < static_cast<double>(height),
                  "trident::data::prepare_training_sample: '{}': box {} (x1, y1, x2, y2) = [{}, {}, {}, {}] lies "
                  "wholly outside the {} x {} picture", path, i, x1, y1, x2, y2, width, height);
  }
}

inline void check_boxes(const at::Tensor& boxes, const char* function) {
  TRIDENT_CHECK(!boxes.defined() || (boxes.dim() == 2 && boxes.size(1) == 4),
                "trident::data::{}: target.boxes must be an [n, 4] tensor (x1, y1, x2, y2), got {}", function,
                shape_of(boxes));
}

/// Output side length of the Faster R-CNN rule: floor(side * scale), with a tolerance of 1e-6 so that a side
/// meant to land exactly on min_size / max_size does not fall one pixel short through rounding.
inline int64_t scaled_side(int64_t side, double scale) {
  return std::max<int64_t>(1, static_cast<int64_t>(std::floor(static_cast<double>(side) * scale + 1e-6)));
}

}  // namespace detail

/// The Faster R-CNN scale for an image of `height` x `width`: min_size / short side, or max_size / long side
/// when the long side would otherwise exceed max_size.
inline double detection_scale(int64_t height, int64_t width, int64_t min_size = 900, int64_t max_size = 1500) {
  TRIDENT_CHECK(height > 0 && width > 0, "trident::data::detection_scale: the image size must be positive, got {}x{}",
                height, width);
  TRIDENT_CHECK(min_size > 0 && max_size >= min_size,
                "trident::data::detection_scale: need 0 < min_size <= max_size, got min_size = {}, max_size = {}",
                min_size, max_size);
  const double short_side = static_cast<double>(std::min(height, width));
  const double long_side = static_cast<double>(std::max(height, width));
  double scale = static_cast<double>(min_size) / short_side;
  if (long_side * scale > static_cast<double>(max_size)) scale = static_cast<double>(max_size) / long_side;
  return scale;
}

/// Resizes `image` [3, H, W] (float) by the Faster R-CNN rule and scales the boxes by the same per-axis ratios.
/// The pids are passed through.
inline Resized resize_for_detection(const at::Tensor& image, const Target& target, int64_t min_size = 900,
                                    int64_t max_size = 1500) {
  detail::check_image(image, "resize_for_detection");
  TRIDENT_CHECK(image.is_floating_point(), "trident::data::resize_for_detection: image must be floating point, got {}",
                c10::toString(image.scalar_type()));
  detail::check_boxes(target.boxes, "resize_for_detection");
  const int64_t h = image.size(1), w = image.size(2);
  const double scale = detection_scale(h, w, min_size, max_size);
  const int64_t oh = detail::scaled_side(h, scale), ow = detail::scaled_side(w, scale);

  Resized out;
  out.scale = scale;
  out.original_size = {h, w};
  out.size = {oh, ow};
  // No scale factors given: ATen uses input / output size, as torchvision's recompute_scale_factor=True does.
  out.image = at::upsample_bilinear2d(image.unsqueeze(0), {oh, ow}, /*align_corners=*/false).squeeze(0);
  out.target.pids = target.pids;
  if (target.boxes.defined()) {
    const double rw = static_cast<double>(ow) / static_cast<double>(w);
    const double rh = static_cast<double>(oh) / static_cast<double>(h);
    const at::Tensor ratios = at::tensor({rw, rh, rw, rh}, target.boxes.options().dtype(at::kDouble));
    out.target.boxes = (target.boxes.to(at::kDouble) * ratios).to(target.boxes.scalar_type());
  }
  return out;
}

/// Maps boxes [n, 4] of an image of `resized_size` {H', W'} back to the original image of `original_size`
/// {H, W} (torchvision's transform.postprocess): x * W / W', y * H / H'.
inline at::Tensor boxes_to_original(const at::Tensor& boxes, ImageSize resized_size, ImageSize original_size) {
  detail::check_boxes(boxes, "boxes_to_original");
  TRIDENT_CHECK(boxes.defined(), "trident::data::boxes_to_original: boxes is undefined");
  TRIDENT_CHECK(resized_size[0] > 0 && resized_size[1] > 0 && original_size[0] > 0 && original_size[1] > 0,
                "trident::data::boxes_to_original: sizes must be positive, got resized {}x{}, original {}x{}",
                resized_size[0], resized_size[1], original_size[0], original_size[1]);
  const double rw = static_cast<double>(original_size[1]) / static_cast<double>(resized_size[1]);
  const double rh = static_cast<double>(original_size[0]) / static_cast<double>(resized_size[0]);
  const at::Tensor ratios = at::tensor({rw, rh, rw, rh}, boxes.options().dtype(at::kDouble));
  return (boxes.to(at::kDouble) * ratios).to(boxes.scalar_type());
}

/// (image - mean) / std per channel; image [3, H, W] floating point.
inline at::Tensor normalize(const at::Tensor& image, const std::array<double, 3>& mean = imagenet_mean,
                            const std::array<double, 3>& std = imagenet_std) {
  detail::check_image(image, "normalize");
  TRIDENT_CHECK(image.is_floating_point(), "trident::data::normalize: image must be floating point, got {}",
                c10::toString(image.scalar_type()));
  for (size_t c = 0; c < 3; ++c)
    TRIDENT_CHECK(std[c] > 0.0, "trident::data::normalize: std must be positive, got std[{}] = {}", c, std[c]);
  const auto opts = image.options();
  const at::Tensor m = at::tensor({mean[0], mean[1], mean[2]}, opts.dtype(at::kDouble)).to(opts).view({3, 1, 1});
  const at::Tensor s = at::tensor({std[0], std[1], std[2]}, opts.dtype(at::kDouble)).to(opts).view({3, 1, 1});
  return (image - m) / s;
}

/// Mirrors the image left-right and its boxes: x1' = W - x2, x2' = W - x1 (y unchanged).
inline Sample horizontal_flip(const at::Tensor& image, const Target& target) {
  detail::check_image(image, "horizontal_flip");
  detail::check_boxes(target.boxes, "horizontal_flip");
  Sample out;
  out.image = image.flip({-1});
  out.target.pids = target.pids;
  if (target.boxes.defined()) {
    const auto width = static_cast<double>(image.size(2));
    const at::Tensor& b = target.boxes;
    out.target.boxes = at::stack({width - b.select(1, 2), b.select(1, 1), width - b.select(1, 0), b.select(1, 3)}, 1)
                           .to(b.scalar_type());
  }
  return out;
}

/// Zero-pads the images [3, H_i, W_i] to a common [3, H, W] (the largest sides rounded up to a multiple of
/// size_divisible) and stacks them. sizes holds each image's unpadded {H_i, W_i}; the targets are returned as is.
inline CollatedBatch collate(const std::vector<at::Tensor>& images, std::vector<Target> targets,
                             int64_t size_divisible = 32) {
  TRIDENT_CHECK(!images.empty(), "trident::data::collate: images is empty");
  TRIDENT_CHECK(targets.empty() || targets.size() == images.size(),
                "trident::data::collate: need one target per image (or none), got {} images and {} targets",
                images.size(), targets.size());
  TRIDENT_CHECK(size_divisible > 0, "trident::data::collate: size_divisible must be positive, got {}",
                size_divisible);
  int64_t max_h = 0, max_w = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    const at::Tensor& im = images[i];
    TRIDENT_CHECK(im.defined() && im.dim() == 3 && im.size(0) == 3 && im.size(1) > 0 && im.size(2) > 0,
                  "trident::data::collate: images[{}] must be a non-empty [3, H, W] tensor, got {}", i, shape_of(im));
    TRIDENT_CHECK(im.scalar_type() == images[0].scalar_type() && im.device() == images[0].device(),
                  "trident::data::collate: images[{}] is {} on {}, images[0] is {} on {}", i,
                  c10::toString(im.scalar_type()), im.device().str(), c10::toString(images[0].scalar_type()),
                  images[0].device().str());
    max_h = std::max(max_h, im.size(1));
    max_w = std::max(max_w, im.size(2));
  }
  const int64_t h = (max_h + size_divisible - 1) / size_divisible * size_divisible;
  const int64_t w = (max_w + size_divisible - 1) / size_divisible * size_divisible;

  CollatedBatch out;
  out.batch.images = at::zeros({static_cast<int64_t>(images.size()), 3, h, w}, images[0].options());
  out.batch.sizes.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const at::Tensor& im = images[i];
    out.batch.images[static_cast<int64_t>(i)].narrow(1, 0, im.size(1)).narrow(2, 0, im.size(2)).copy_(im);
    out.batch.sizes.push_back({im.size(1), im.size(2)});
  }
  out.targets = std::move(targets);
  return out;
}

/// A uniform draw in [0, 1) from the generator's next 32-bit output: the same on every standard library
/// (std::bernoulli_distribution's algorithm is implementation-defined).
inline double uniform01(std::mt19937& rng) { return static_cast<double>(rng()) / 4294967296.0; }

/// `image` (record's picture, [3, H, W] in [0, 1], e.g. from data/pictures.hpp's load_image) ->
/// resize_for_detection -> horizontal flip with probability options.flip_probability -> normalize. Exactly one
/// number is drawn from `rng` per call, so a seeded generator gives the same samples every run.
inline TrainingSample prepare_training_sample(const at::Tensor& image, const ImageRecord& record,
                                              const TransformOptions& options, std::mt19937& rng) {
  TRIDENT_CHECK(options.flip_probability >= 0.0 && options.flip_probability <= 1.0,
                "trident::data::prepare_training_sample: flip_probability must be in [0, 1], got {}",
                options.flip_probability);
  Target target;
  target.boxes = record.boxes.defined() ? record.boxes.to(at::kFloat) : at::empty({0, 4}, at::kFloat);
  target.pids = record.pids.defined() ? record.pids : at::empty({0}, at::kLong);
  TRIDENT_CHECK(target.boxes.dim() == 2 && target.boxes.size(1) == 4 && target.pids.dim() == 1 &&
                    target.pids.size(0) == target.boxes.size(0),
                "trident::data::prepare_training_sample: record '{}' needs boxes [n, 4] and pids [n], got {} and {}",
                record.path, shape_of(target.boxes), shape_of(target.pids));

  detail::check_image(image, "prepare_training_sample");
  detail::check_annotated_boxes(target.boxes, image.size(2), image.size(1), record.path);
  Resized resized = resize_for_detection(image, target, options.min_size, options.max_size);
  TrainingSample out;
  out.scale = resized.scale;
  out.original_size = resized.original_size;
  out.flipped = uniform01(rng) < options.flip_probability;
  if (out.flipped) {
    Sample flipped = horizontal_flip(resized.image, resized.target);
    resized.image = std::move(flipped.image);
    resized.target = std::move(flipped.target);
  }
  out.image = normalize(resized.image, options.mean, options.std);
  out.target = std::move(resized.target);
  return out;
}

}  // namespace trident::data
