#pragma once
/// \file trident/data/pictures.hpp
/// Pictures from files: decoding (any format OpenCV reads) into the [3, H, W] float RGB tensors that
/// data/transforms.hpp works on, and the training sample of a dataset record read from its file. Part of
/// trident::vision (OpenCV).
#include <trident/config.hpp>
#include <trident/data/dataset.hpp>
#include <trident/data/transforms.hpp>

#include <ATen/ops/from_blob.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>

namespace trident::data {

/// Reads a picture (any format OpenCV reads) as a [3, H, W] float RGB tensor with values in [0, 1].
/// Grey pictures are expanded to three channels, 16-bit ones reduced to 8 bits (OpenCV's IMREAD_COLOR).
inline at::Tensor load_image(const std::string& path) {
  std::error_code ec;
  TRIDENT_CHECK(std::filesystem::is_regular_file(path, ec),
                "trident::data::load_image: no such image file '{}'", path);
  const cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR);
  TRIDENT_CHECK(!bgr.empty(), "trident::data::load_image: cannot read the image file '{}' (not a picture?)", path);
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  cv::Mat pixels;
  rgb.convertTo(pixels, CV_32FC3, 1.0 / 255.0);
  TRIDENT_CHECK(pixels.isContinuous(), "trident::data::load_image: unexpected non-contiguous image from '{}'",
                path);
  const at::Tensor hwc = at::from_blob(pixels.data, {pixels.rows, pixels.cols, 3}, at::kFloat);
  return hwc.permute({2, 0, 1}).contiguous();  // contiguous() copies out of the cv::Mat's memory
}

/// The short and the long side of a picture on disk: min_size / max_size values that keep it at its own size.
inline std::array<int64_t, 2> picture_sides(const std::string& path) {
  const at::Tensor picture = load_image(path);  // [3, H, W]
  return {std::min(picture.size(1), picture.size(2)), std::max(picture.size(1), picture.size(2))};
}

/// load_image(record.path) -> prepare_training_sample (data/transforms.hpp): resize, random flip, normalise.
inline TrainingSample prepare_training_sample(const ImageRecord& record, const TransformOptions& options,
                                              std::mt19937& rng) {
  return prepare_training_sample(load_image(record.path), record, options, rng);
}

}  // namespace trident::data
