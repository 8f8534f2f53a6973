#pragma once
/// \file trident/viz/search_results.hpp
/// One picture of a search: the query picture with its person boxed on the left, then the top-k gallery
/// pictures with the matched box, its rank and similarity; green or red frames when the truth is known.
/// Part of trident::vision (OpenCV).
#include <trident/config.hpp>
#include <trident/data/pictures.hpp>
#include <trident/viz/curves.hpp>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <fmt/format.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace trident::viz {

/// A gallery picture and the match found in it.
struct ShownMatch {
  std::string path;              ///< the picture
  std::array<float, 4> box{};    ///< the matched detection, x1 y1 x2 y2 in the picture's pixels
  double similarity = 0;
  std::optional<bool> correct;   ///< whether it is the query person (when the annotations say)
  std::optional<std::array<float, 4>> truth;  ///< where the query person really is in this picture, if anywhere
};

namespace detail {

inline cv::Rect to_rect(const std::array<float, 4>& b) {
  return {cv::Point(static_cast<int>(b[0]), static_cast<int>(b[1])), cv::Point(static_cast<int>(b[2]), static_cast<int>(b[3]))};
}

/// Scales `m` to height `h` (keeping its aspect) and returns the factor.
inline double fit_height(cv::Mat& m, int h) {
  const double f = static_cast<double>(h) / m.rows;
  cv::resize(m, m, cv::Size(std::max(1, static_cast<int>(m.cols * f + 0.5)), h), 0, 0, cv::INTER_AREA);
  return f;
}

inline std::array<float, 4> scaled(const std::array<float, 4>& b, double f) {
  return {static_cast<float>(b[0] * f), static_cast<float>(b[1] * f), static_cast<float>(b[2] * f),
          static_cast<float>(b[3] * f)};
}

}  // namespace detail

/// Draws the query and its matches side by side (each picture scaled to `height` pixels) into `path` (PNG).
inline void draw_search_results(const std::string& query_path, const std::array<float, 4>& query_box,
                                const std::vector<ShownMatch>& matches, const std::string& path, int height = 240) {
  constexpr const char* caller = "trident::viz::draw_search_results";
  TRIDENT_CHECK(height >= 32, "{}: height must be at least 32 pixels, got {}", caller, height);
  const int band = 28, gap = 6;
  std::vector<cv::Mat> tiles;
  {
    cv::Mat q = data::decode_picture(query_path, caller);
    const double f = detail::fit_height(q, height);
    cv::rectangle(q, detail::to_rect(detail::scaled(query_box, f)), cv::Scalar(255, 160, 0), 3);
    cv::Mat tile(height + band, q.cols, CV_8UC3, cv::Scalar(255, 255, 255));
    q.copyTo(tile(cv::Rect(0, band, q.cols, height)));
    cv::putText(tile, "query", {6, 20}, cv::FONT_HERSHEY_SIMPLEX, 0.6, cv::Scalar(160, 90, 0), 2, cv::LINE_AA);
    tiles.push_back(tile);
  }
  for (size_t r = 0; r < matches.size(); ++r) {
    const auto& m = matches[r];
    cv::Mat g = data::decode_picture(m.path, caller);
    const double f = detail::fit_height(g, height);
    const cv::Scalar colour = !m.correct ? cv::Scalar(0, 200, 255) : *m.correct ? cv::Scalar(0, 170, 0) : cv::Scalar(0, 0, 220);
    if (m.truth && !(m.correct && *m.correct))
      cv::rectangle(g, detail::to_rect(detail::scaled(*m.truth, f)), cv::Scalar(255, 255, 255), 1);
    cv::rectangle(g, detail::to_rect(detail::scaled(m.box, f)), colour, 3);
    cv::Mat tile(height + band, g.cols, CV_8UC3, cv::Scalar(255, 255, 255));
    g.copyTo(tile(cv::Rect(0, band, g.cols, height)));
    const std::string verdict = !m.correct ? "" : *m.correct ? "  correct" : "  wrong";
    cv::putText(tile, fmt::format("#{}  {:.2f}{}", r + 1, m.similarity, verdict), {6, 20}, cv::FONT_HERSHEY_SIMPLEX,
                0.55, colour, 2, cv::LINE_AA);
    tiles.push_back(tile);
  }
  int width = 0;
  for (const auto& t : tiles) width += t.cols + gap;
  cv::Mat canvas(height + band, width - gap, CV_8UC3, cv::Scalar(255, 255, 255));
  int x = 0;
  for (const auto& t : tiles) {
    t.copyTo(canvas(cv::Rect(x, 0, t.cols, t.rows)));
    x += t.cols + gap;
  }
  detail::write_png_atomically(canvas, path, caller);
}

}  // namespace trident::viz
