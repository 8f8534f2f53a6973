#pragma once
/// \file trident/viz/curves.hpp
/// Training curves as one PNG: a grid of small panels, one per loss, the total and the learning rate, each with
/// the raw per-iteration values (light) and a moving average (dark), the value range and the epoch boundaries.
/// Part of trident::vision (OpenCV). Written atomically (encoded in memory, then core/files.hpp).
#include <trident/config.hpp>
#include <trident/core/files.hpp>
#include <trident/train/log.hpp>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

namespace trident::viz {

namespace detail {

/// Encodes `image` as PNG and writes it atomically (core/files.hpp).
inline void write_png_atomically(const cv::Mat& image, const std::string& path, std::string_view caller) {
  std::vector<uchar> bytes;
  TRIDENT_CHECK(cv::imencode(".png", image, bytes), "{}: OpenCV cannot encode a PNG for '{}'", caller, path);
  write_bytes_atomically(path, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), caller);
}

inline void draw_panel(cv::Mat& canvas, cv::Rect area, const std::string& title, const std::vector<double>& x,
                       const std::vector<double>& y, const std::vector<double>& epoch_starts) {
  cv::rectangle(canvas, area, cv::Scalar(255, 255, 255), cv::FILLED);
  cv::rectangle(canvas, area, cv::Scalar(180, 180, 180), 1);
  const int left = area.x + 52, right = area.x + area.width - 8, top = area.y + 22, bottom = area.y + area.height - 18;
  std::vector<double> finite;
  for (double v : y)
    if (std::isfinite(v)) finite.push_back(v);
  cv::putText(canvas, title, {area.x + 6, area.y + 15}, cv::FONT_HERSHEY_SIMPLEX, 0.45, cv::Scalar(0, 0, 0), 1,
              cv::LINE_AA);
  if (finite.empty() || x.empty()) return;
  double lo = *std::min_element(finite.begin(), finite.end()), hi = *std::max_element(finite.begin(), finite.end());
  if (hi - lo < 1e-12) {
    hi += 0.5 * std::max(std::abs(hi), 1e-6);
    lo -= 0.5 * std::max(std::abs(lo), 1e-6);
  }
  const double x0 = x.front(), x1 = std::max(x.back(), x.front() + 1);
  auto px = [&](double v) { return left + static_cast<int>(std::lround((v - x0) / (x1 - x0) * (right - left))); };
  auto py = [&](double v) { return bottom - static_cast<int>(std::lround((v - lo) / (hi - lo) * (bottom - top))); };
  for (double e : epoch_starts)
    if (e > x0 && e <= x1) cv::line(canvas, {px(e), top}, {px(e), bottom}, cv::Scalar(225, 225, 225), 1);
  cv::putText(canvas, fmt::format("{:.3g}", hi), {area.x + 4, top + 8}, cv::FONT_HERSHEY_SIMPLEX, 0.35,
              cv::Scalar(90, 90, 90), 1, cv::LINE_AA);
  cv::putText(canvas, fmt::format("{:.3g}", lo), {area.x + 4, bottom}, cv::FONT_HERSHEY_SIMPLEX, 0.35,
              cv::Scalar(90, 90, 90), 1, cv::LINE_AA);
  cv::putText(canvas, fmt::format("iteration {:.0f}", x1), {right - 90, area.y + area.height - 5},
              cv::FONT_HERSHEY_SIMPLEX, 0.35, cv::Scalar(90, 90, 90), 1, cv::LINE_AA);
  // Raw values, then a centred moving average over ~2% of the run.
  const size_t n = y.size();
  const size_t half = std::max<size_t>(1, n / 100);
  std::vector<cv::Point> raw, smooth;
  double sum = 0;
  size_t count = 0, lo_i = 0, hi_i = 0;  // window [lo_i, hi_i)
  for (size_t i = 0; i < n; ++i) {
    if (std::isfinite(y[i])) raw.push_back({px(x[i]), py(y[i])});
    const size_t want_lo = i >= half ? i - half : 0, want_hi = std::min(n, i + half + 1);
    for (; hi_i < want_hi; ++hi_i)
      if (std::isfinite(y[hi_i])) sum += y[hi_i], ++count;
    for (; lo_i < want_lo; ++lo_i)
      if (std::isfinite(y[lo_i])) sum -= y[lo_i], --count;
    if (count) smooth.push_back({px(x[i]), py(sum / static_cast<double>(count))});
  }
  cv::polylines(canvas, raw, false, cv::Scalar(235, 200, 170), 1, cv::LINE_AA);
  cv::polylines(canvas, smooth, false, cv::Scalar(160, 70, 20), 2, cv::LINE_AA);
}

}  // namespace detail

/// Draws the log's curves into `path` (PNG): one panel per loss, the total and the learning rate.
inline void draw_training_curves(const train::TrainingLog& log, const std::string& path) {
  const auto& rows = log.rows();
  const auto& names = log.loss_names();
  std::vector<std::string> titles = names;
  titles.push_back("total");
  titles.push_back("learning rate");
  const int cols = 4, panel_w = 300, panel_h = 170;
  const int rows_n = static_cast<int>((titles.size() + cols - 1) / cols);
  cv::Mat canvas(rows_n * panel_h, cols * panel_w, CV_8UC3, cv::Scalar(245, 245, 245));
  std::vector<double> x;
  std::vector<double> epoch_starts;
  for (size_t i = 0; i < rows.size(); ++i) {
    x.push_back(static_cast<double>(rows[i].iteration));
    if (i > 0 && rows[i].epoch != rows[i - 1].epoch) epoch_starts.push_back(static_cast<double>(rows[i].iteration));
  }
  for (size_t t = 0; t < titles.size(); ++t) {
    std::vector<double> y;
    for (const auto& r : rows)
      y.push_back(t < names.size() ? r.losses[t] : t == names.size() ? r.total : r.lr);
    const cv::Rect area(static_cast<int>(t % cols) * panel_w + 2, static_cast<int>(t / cols) * panel_h + 2,
                        panel_w - 4, panel_h - 4);
    detail::draw_panel(canvas, area, titles[t], x, y, epoch_starts);
  }
  detail::write_png_atomically(canvas, path, "trident::viz::draw_training_curves");
}

/// A train::TrainerOptions::draw_curves hook that draws the log into `path` (PNG) whenever the trainer calls it.
inline std::function<void(const train::TrainingLog&)> training_curves_png(std::string path) {
  return [path = std::move(path)](const train::TrainingLog& log) { draw_training_curves(log, path); };
}

}  // namespace trident::viz
