#pragma once
/// \file trident/data/pictures.hpp
/// Pictures from files: decoding (any format OpenCV reads) into the [3, H, W] float RGB tensors that
/// data/transforms.hpp works on, and the training sample of a dataset record read from its file. Part of
/// trident::vision (OpenCV).
#include <trident/config.hpp>
#include <trident/core/files.hpp>
#include <trident/data/dataset.hpp>
#include <trident/data/transforms.hpp>

#include <ATen/ops/from_blob.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>

namespace trident::data {

/// The most pixels load_image decodes by default: 2^26 (e.g. 8192 x 8192), 805 MB as the float32 RGB tensor it
/// returns. The datasets' pictures are far smaller (CUHK-SYSU's at most about 1 megapixel, PRW's 1920 x 1080);
/// OpenCV's own limit, 2^30 pixels, would let a 100-byte file declare a 13 GB tensor.
inline constexpr int64_t default_max_picture_pixels = int64_t{1} << 26;

/// What a picture file's header declares, read without decoding it (picture_header).
struct PictureHeader {
  std::string_view format;  ///< "JPEG", "PNG" or "BMP"
  int64_t width = 0;        ///< 0 when the header does not say (a JPEG without a frame header before its scan)
  int64_t height = 0;
  bool complete = true;     ///< JPEG: the file reaches its end-of-image marker (FF D9); false when cut short
};

namespace detail {

inline int64_t big_endian(std::string_view b, size_t at, int bytes) {
  int64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = v << 8 | static_cast<unsigned char>(b[at + static_cast<size_t>(i)]);
  return v;
}

/// Walks a JPEG's segments (`b` starts with FF D8): the first frame header (SOF0-SOF15, except DHT, JPG and DAC)
/// gives the size; each scan's entropy-coded data is skipped to the next marker (in it FF is always followed by
/// 00 or a restart marker D0-D7); the walk ends at the end-of-image marker D9. A file that ends before it is cut
/// short: libjpeg would decode what is there, fill the rest with grey and only warn on stderr.
inline PictureHeader jpeg_header(std::string_view b) {
  PictureHeader h{"JPEG", 0, 0, false};
  const size_t n = b.size();
  size_t at = 2;
  while (at < n) {
    if (static_cast<unsigned char>(b[at]) != 0xFF) {  // bytes between segments: libjpeg skips them, so do we
      const void* ff = std::memchr(b.data() + at, 0xFF, n - at);
      if (ff == nullptr) return h;
      at = static_cast<size_t>(static_cast<const char*>(ff) - b.data());
    }
    while (at < n && static_cast<unsigned char>(b[at]) == 0xFF) ++at;  // fill bytes
    if (at >= n) return h;
    const auto marker = static_cast<unsigned char>(b[at++]);
    if (marker == 0xD9) {
      h.complete = true;
      return h;
    }
    if ((marker >= 0xD0 && marker <= 0xD8) || marker == 0x01) continue;  // no length field
    if (at + 2 > n) return h;
    const auto length = static_cast<size_t>(big_endian(b, at, 2));
    if (length < 2 || at + length > n) return h;
    const bool frame = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (frame && h.width == 0 && h.height == 0 && length >= 7) {
      h.height = big_endian(b, at + 3, 2);
      h.width = big_endian(b, at + 5, 2);
    }
    at += length;
    if (marker == 0xDA) {  // start of scan: the entropy-coded data runs to the next marker
      for (;;) {
        const void* ff = at < n ? std::memchr(b.data() + at, 0xFF, n - at) : nullptr;
        if (ff == nullptr) return h;
        at = static_cast<size_t>(static_cast<const char*>(ff) - b.data());
        if (at + 1 >= n) return h;
        const auto next = static_cast<unsigned char>(b[at + 1]);
        if (next == 0x00 || (next >= 0xD0 && next <= 0xD7)) {
          at += 2;
        } else {
          break;  // a marker (FF FF fill bytes included): the segment walk goes on from here
        }
      }
    }
  }
  return h;
}

}  // namespace detail

/// The format, size and completeness a picture's bytes declare, for JPEG, PNG and BMP (nullopt for another
/// format, or a header too short to say). Reads only the header, except for JPEG, whose segments are walked to
/// the end-of-image marker (a linear scan, no decoding).
inline std::optional<PictureHeader> picture_header(std::string_view b) {
  if (b.size() >= 3 && b.substr(0, 3) == std::string_view("\xFF\xD8\xFF", 3)) return detail::jpeg_header(b);
  if (b.size() >= 24 && b.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8) && b.substr(12, 4) == "IHDR")
    return PictureHeader{"PNG", detail::big_endian(b, 16, 4), detail::big_endian(b, 20, 4), true};
  if (b.size() >= 26 && b.substr(0, 2) == "BM") {
    // A negative height: rows stored top-down.
    const int64_t width = read_le<int32_t>(b.data(), 18), height = read_le<int32_t>(b.data(), 22);
    return PictureHeader{"BMP", width < 0 ? -width : width, height < 0 ? -height : height, true};
  }
  return std::nullopt;
}

/// Decodes a picture file (any format OpenCV reads) as an 8-bit, 3-channel BGR cv::Mat: OpenCV's IMREAD_COLOR
/// (grey pictures expanded to three channels, 16-bit ones reduced to 8 bits). `caller` starts every error.
/// Refused, with an error naming the file: a missing or empty file; a JPEG cut short (no end-of-image marker);
/// a picture of more than `max_pixels` pixels (JPEG, PNG and BMP before decoding, from their headers; other
/// formats after decoding); a file OpenCV cannot decode, or whose declared size OpenCV's own checks refuse
/// (a side over 2^20 pixels: OpenCV's imdecode and imread throw there, in any format). The file is read once:
/// its bytes go to the header checks and then to OpenCV's decoder.
inline cv::Mat decode_picture(const std::string& path, std::string_view caller,
                              int64_t max_pixels = default_max_picture_pixels) {
  std::error_code ec;
  TRIDENT_CHECK(std::filesystem::is_regular_file(path, ec), "{}: no such image file '{}'", caller, path);
  const std::string bytes = read_whole_file(path, caller);
  TRIDENT_CHECK(!bytes.empty(), "{}: the image file '{}' is empty", caller, path);
  const auto too_large = [&](int64_t width, int64_t height, std::string_view format, std::string_view when) {
    fail("{}: '{}' is a {} picture of {} x {} pixels ({:.1f} megapixels, {}); the limit is {} pixels (argument "
         "max_pixels)", caller, path, format, width, height, static_cast<double>(width) * height / 1e6, when,
         max_pixels);
  };
  if (const auto header = picture_header(bytes)) {
    TRIDENT_CHECK(header->complete,
                  "{}: '{}' is truncated or damaged: walking its JPEG segments ({} bytes) finds no end-of-image "
                  "marker (FF D9)", caller, path, bytes.size());
    if (header->width > 0 && header->height > 0 && header->width > max_pixels / header->height)
      too_large(header->width, header->height, header->format, "declared in its header; not decoded");
  }
  cv::Mat bgr;
  try {  // decodes the bytes already read (imread would read the file again); OpenCV's buffers take an int size
    bgr = bytes.size() <= static_cast<size_t>(std::numeric_limits<int>::max())
              ? cv::imdecode(cv::Mat(1, static_cast<int>(bytes.size()), CV_8UC1,
                                     const_cast<char*>(bytes.data())), cv::IMREAD_COLOR)
              : cv::imread(path, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    fail("{}: OpenCV refuses the image file '{}' ({} bytes): {} (in {})", caller, path, bytes.size(), e.err,
         e.func);
  }
  TRIDENT_CHECK(!bgr.empty(), "{}: cannot read the image file '{}' (not a picture, or damaged?)", caller, path);
  if (bgr.cols > max_pixels / bgr.rows) too_large(bgr.cols, bgr.rows, "decoded", "after decoding");
  return bgr;
}

/// Reads a picture (any format OpenCV reads) as a [3, H, W] float RGB tensor with values in [0, 1].
/// What decode_picture refuses is refused here, with errors that start "trident::data::load_image".
inline at::Tensor load_image(const std::string& path, int64_t max_pixels = default_max_picture_pixels) {
  static constexpr std::string_view caller = "trident::data::load_image";
  const cv::Mat bgr = decode_picture(path, caller, max_pixels);
  cv::Mat pixels;
  try {
    cv::Mat rgb;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    rgb.convertTo(pixels, CV_32FC3, 1.0 / 255.0);
  } catch (const cv::Exception& e) {  // e.g. no memory for the float copy
    fail("{}: converting the {} x {} picture '{}' to float RGB failed in OpenCV: {} (in {})", caller, bgr.cols,
         bgr.rows, path, e.err, e.func);
  }
  TRIDENT_CHECK(pixels.isContinuous(), "{}: unexpected non-contiguous image from '{}'", caller, path);
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
