#pragma once
/// \file trident/viz/gallery_curve.hpp
/// The gallery-size curve of CUHK-SYSU's protocol as one PNG: search mAP (and top-1) against the gallery size
/// (50 ... 4000, logarithmic axis), the figure person-search papers draw to show how a method degrades as the
/// gallery grows. Several methods or runs can share one picture (one series each). Part of trident::vision
/// (OpenCV). Written atomically (encoded in memory, then core/files.hpp).
#include <trident/viz/curves.hpp>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

namespace trident::viz {

/// One line of the figure: a value (a fraction in [0, 1]) per gallery size.
struct GalleryCurveSeries {
  std::string label;          ///< "mAP", "top-1", or a method's name
  std::vector<int> sizes;     ///< gallery sizes, increasing
  std::vector<double> values; ///< one per size, in [0, 1]
};

/// Draws the series into `path` (PNG, `width` x `height` pixels) under `title`. Throws naming the series and the
/// value when a size is not positive or increasing, a value is outside [0, 1], or the lengths differ.
inline void draw_gallery_size_curve(const std::vector<GalleryCurveSeries>& series, const std::string& path,
                                    const std::string& title, int width = 720, int height = 440) {
  constexpr const char* fn = "trident::viz::draw_gallery_size_curve";
  TRIDENT_CHECK(!series.empty(), "{}: no series to draw into '{}'", fn, path);
  TRIDENT_CHECK(width >= 200 && height >= 150, "{}: the picture must be at least 200 x 150, got {} x {}", fn, width,
                height);
  int lo = 0, hi = 0;
  for (const auto& s : series) {
    TRIDENT_CHECK(!s.sizes.empty() && s.sizes.size() == s.values.size(),
                  "{}: series '{}' has {} sizes and {} values (one value per size, at least one)", fn, s.label,
                  s.sizes.size(), s.values.size());
    for (size_t i = 0; i < s.sizes.size(); ++i) {
      TRIDENT_CHECK(s.sizes[i] > 0 && (i == 0 || s.sizes[i] > s.sizes[i - 1]),
                    "{}: series '{}': sizes must be positive and increasing, got {} at position {}", fn, s.label,
                    s.sizes[i], i);
      TRIDENT_CHECK(std::isfinite(s.values[i]) && s.values[i] >= 0 && s.values[i] <= 1,
                    "{}: series '{}': the value at gallery size {} must be in [0, 1], got {}", fn, s.label,
                    s.sizes[i], s.values[i]);
    }
    lo = lo == 0 ? s.sizes.front() : std::min(lo, s.sizes.front());
    hi = std::max(hi, s.sizes.back());
  }
  cv::Mat canvas(height, width, CV_8UC3, cv::Scalar(255, 255, 255));
  const int left = 64, right = width - 150, top = 40, bottom = height - 48;
  const double log_lo = std::log(static_cast<double>(lo)), log_hi = std::log(static_cast<double>(std::max(hi, lo + 1)));
  const auto px = [&](int size) {
    return left + static_cast<int>(std::lround((std::log(static_cast<double>(size)) - log_lo) / (log_hi - log_lo) *
                                                (right - left)));
  };
  const auto py = [&](double v) { return bottom - static_cast<int>(std::lround(v * (bottom - top))); };
  const auto text = [&](const std::string& s, cv::Point at, double scale, cv::Scalar colour) {
    cv::putText(canvas, s, at, cv::FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv::LINE_AA);
  };
  text(title, {left, 24}, 0.55, cv::Scalar(0, 0, 0));
  // Grid: every 10% of the value axis, every size any series has on the other.
  for (int p = 0; p <= 10; ++p) {
    const int y = py(p / 10.0);
    cv::line(canvas, {left, y}, {right, y}, cv::Scalar(230, 230, 230), 1);
    text(fmt::format("{}%", p * 10), {left - 44, y + 4}, 0.4, cv::Scalar(90, 90, 90));
  }
  std::vector<int> ticks;
  for (const auto& s : series) ticks.insert(ticks.end(), s.sizes.begin(), s.sizes.end());
  std::sort(ticks.begin(), ticks.end());
  ticks.erase(std::unique(ticks.begin(), ticks.end()), ticks.end());
  for (const int size : ticks) {
    cv::line(canvas, {px(size), top}, {px(size), bottom}, cv::Scalar(230, 230, 230), 1);
    text(std::to_string(size), {px(size) - 12, bottom + 18}, 0.4, cv::Scalar(90, 90, 90));
  }
  cv::rectangle(canvas, cv::Point(left, top), cv::Point(right, bottom), cv::Scalar(150, 150, 150), 1);
  text("gallery size (log scale)", {(left + right) / 2 - 80, height - 10}, 0.45, cv::Scalar(60, 60, 60));
  static constexpr std::array<std::array<int, 3>, 6> palette{
      {{160, 70, 20}, {40, 120, 230}, {60, 160, 60}, {150, 60, 160}, {40, 40, 200}, {120, 120, 120}}};
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& c = palette[k % palette.size()];
    const cv::Scalar colour(c[0], c[1], c[2]);
    std::vector<cv::Point> points;
    for (size_t i = 0; i < series[k].sizes.size(); ++i) points.push_back({px(series[k].sizes[i]), py(series[k].values[i])});
    cv::polylines(canvas, points, false, colour, 2, cv::LINE_AA);
    for (const auto& point : points) cv::circle(canvas, point, 4, colour, cv::FILLED, cv::LINE_AA);
    const int y = top + 14 + 20 * static_cast<int>(k);
    cv::line(canvas, {right + 12, y - 4}, {right + 32, y - 4}, colour, 2, cv::LINE_AA);
    text(fmt::format("{} ({:.1f}%)", series[k].label, 100 * series[k].values.back()), {right + 38, y}, 0.4,
         cv::Scalar(0, 0, 0));
  }
  detail::write_png_atomically(canvas, path, fn);
}

}  // namespace trident::viz
