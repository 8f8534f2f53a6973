#pragma once
/// \file trident/data/synthetic.hpp
/// The synthetic person-search benchmark: renders a small dataset of street-like scenes with people and writes
/// it to disk in the CUHK-SYSU layout (pictures in Image/SSM/, annotation/Images.mat, pool.mat, Train.mat and
/// TestG<G>.mat), so that it goes through the real reader, trident::data::read_cuhk_sysu, and the CUHK-SYSU
/// search protocol. It is small enough to train on a CPU in minutes (192 x 320 pictures, people 56..120 pixels
/// tall by default) and not solvable by clothes colour alone: identities share a palette of ten colours, and
/// tell apart by pattern, hair or hat, skin, sleeves, trousers/shorts/skirt, bag and build.
///
///   trident::data::SyntheticOptions options;          // 400 train + 100 test pictures, seed 1
///   auto report = trident::data::write_synthetic_cuhk_sysu("data/synthetic", options);
///   auto dataset = trident::data::read_cuhk_sysu("data/synthetic", {.gallery_size = 50});
///
/// Deterministic: the same options give byte-identical files (std::mt19937 with trident's own distributions,
/// fixed MAT headers, OpenCV's JPEG encoder). The dataset is written into `<root>.partial` and renamed to
/// `<root>` at the end, so a half-written dataset never appears under `root`. docs/datasets.md describes the
/// appearance model and the layout. Part of trident::vision and trident::mat (OpenCV, matio).
#include <trident/config.hpp>
#include <trident/core/random.hpp>
#include <trident/io/mat_writer.hpp>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

namespace trident::data {

/// The CUHK-SYSU gallery sizes (the TestG<G>.mat files).
inline constexpr std::array<int, 6> cuhk_sysu_gallery_sizes{50, 100, 500, 1000, 2000, 4000};

/// What write_synthetic_cuhk_sysu renders. The defaults make a CPU-sized benchmark: 400 training pictures with
/// 200 identities, 100 test pictures with 50 query identities (gallery 50).
struct SyntheticOptions {
  uint32_t seed = 1;  ///< the same seed (and options) gives the same bytes
  int train_images = 400;
  int test_images = 100;          ///< at least 51: a gallery of 50 pictures plus the query's own
  int train_identities = 200;     ///< labeled training identities (Train.mat, the look-up table's rows)
  int test_identities = 50;       ///< test identities, one query each; disjoint from the training ones
  int min_train_appearances = 3;  ///< pictures each training identity appears in
  int max_train_appearances = 6;
  int min_test_appearances = 2;  ///< pictures each test identity appears in (one is its query), at least 2
  int max_test_appearances = 4;
  int min_people = 2;  ///< people in a picture, labeled and unlabeled together
  int max_people = 5;
  int image_height = 192;
  int image_width = 320;
  int min_person_height = 56;  ///< in pixels
  int max_person_height = 120;
  /// About this fraction of the people are unlabeled: random appearances that are no identity, annotated as
  /// boxes only (pictures with fewer labeled people than min_people get more).
  double unlabeled_fraction = 0.2;
  double occlusion_probability = 0.15;  ///< chance that a person is partly hidden by a pole or a box in front
  double clutter = 0.5;                 ///< background clutter, 0 (plain gradients) .. 1 (busy)
  /// The TestG<G>.mat files to write; each G must be a CUHK-SYSU size smaller than test_images. Empty: every
  /// CUHK-SYSU size smaller than test_images.
  std::vector<int> gallery_sizes;
  int jpeg_quality = 95;
  bool overwrite = false;  ///< replace a non-empty `root` (otherwise refused)
};

/// What write_synthetic_cuhk_sysu wrote.
struct SyntheticReport {
  std::string root;
  int64_t images = 0;  ///< train_images + test_images
  int64_t train_images = 0;
  int64_t test_images = 0;
  int64_t boxes = 0;       ///< every annotated person
  int64_t identities = 0;  ///< labeled identities of both splits
  int64_t train_identities = 0;
  int64_t test_identities = 0;
  int64_t queries = 0;              ///< one per test identity
  int64_t unlabeled = 0;            ///< boxes of people who are no identity
  int64_t occluded = 0;             ///< people partly hidden by a foreground object
  std::vector<int> gallery_sizes;   ///< the TestG<G>.mat files written
};

namespace detail::synthetic {

inline constexpr const char* caller = "trident::data::write_synthetic_cuhk_sysu";

/// SplitMix64: turns (seed, stream, index) into independent, well-mixed 64-bit seeds.
inline uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// std::mt19937 with distributions of our own: the standard's uniform_*_distribution may give different numbers
/// on different standard libraries; these give the same everywhere.
class Random {
 public:
  Random(uint64_t seed, uint64_t stream, uint64_t index = 0) {
    const uint64_t s = mix(mix(seed ^ mix(stream)) ^ index);
    std::seed_seq seq{static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32)};
    engine_.seed(seq);
  }
  uint32_t bits() { return engine_(); }
  /// An integer in [lo, hi].
  int integer(int lo, int hi) {
    const uint64_t range = static_cast<uint64_t>(static_cast<int64_t>(hi) - lo) + 1;
    return lo + static_cast<int>((static_cast<uint64_t>(engine_()) * range) >> 32);
  }
  /// A real in [0, 1).
  double real() { return engine_() * (1.0 / 4294967296.0); }
  double real(double lo, double hi) { return lo + (hi - lo) * real(); }
  bool chance(double p) { return real() < p; }
  /// An index drawn with the given (non-negative) weights.
  template <size_t N>
  int weighted(const std::array<int, N>& weights) {
    int total = 0;
    for (int w : weights) total += w;
    int r = integer(0, total - 1);
    for (size_t i = 0; i < N; ++i) {
      if (r < weights[i]) return static_cast<int>(i);
      r -= weights[i];
    }
    return static_cast<int>(N - 1);
  }
  /// Fisher–Yates (core/random.hpp) with integer()'s draws, which keep the benchmark's pictures as they were.
  template <typename T>
  void shuffle(std::vector<T>& v) {
    shuffle_with(v, [this](uint32_t bound) { return integer(0, static_cast<int>(bound) - 1); });
  }

 private:
  std::mt19937 engine_;
};

// Streams of random numbers, one per purpose: changing how one thing is drawn leaves the others alone.
enum Stream : uint64_t { appearance_stream = 1, assignment_stream, scene_stream, query_stream };

/// The clothes palette (BGR) that every identity draws from; the weights make dark and neutral clothes common,
/// so that many identities share a top or bottom colour.
inline constexpr std::array<std::array<int, 3>, 10> palette{{{30, 30, 32},     // black
                                                             {232, 232, 228},  // white
                                                             {128, 128, 128},  // grey
                                                             {105, 45, 25},    // navy
                                                             {45, 40, 200},    // red
                                                             {205, 125, 45},   // blue
                                                             {60, 150, 55},    // green
                                                             {40, 205, 230},   // yellow
                                                             {40, 75, 125},    // brown
                                                             {140, 55, 135}}};  // purple
inline constexpr std::array<int, 10> palette_weights{3, 2, 2, 2, 1, 1, 1, 1, 1, 1};
inline constexpr std::array<std::array<int, 3>, 4> hair_colours{
    {{25, 25, 30}, {30, 55, 95}, {95, 170, 215}, {175, 175, 178}}};  // black, brown, blond, grey
inline constexpr std::array<std::array<int, 3>, 4> skin_tones{
    {{155, 185, 228}, {120, 160, 208}, {80, 122, 172}, {55, 82, 120}}};
inline constexpr std::array<std::array<int, 3>, 3> shoe_colours{{{25, 25, 25}, {225, 225, 225}, {35, 60, 100}}};

enum class Pattern { plain, horizontal_stripes, vertical_stripes, checks, logo };
enum class Bag { none, backpack, shoulder_bag };
enum class Bottom { trousers, shorts, skirt };

/// What a person always looks like (an identity's fixed appearance).
struct Appearance {
  int top = 0;             ///< palette index
  int bottom = 0;          ///< palette index
  Pattern pattern = Pattern::plain;
  int pattern_colour = 0;  ///< palette index, differs from top
  int stripes = 3;         ///< stripes or check rows
  Bottom bottom_style = Bottom::trousers;
  bool long_sleeves = true;
  int hair = 0;            ///< hair colour index
  bool hat = false;
  int hat_colour = 0;      ///< palette index
  int skin = 0;
  int shoes = 0;
  Bag bag = Bag::none;
  int bag_colour = 0;      ///< palette index
  double build = 0.28;     ///< shoulder width / height

  /// The discrete attributes: two identities never share all of them.
  auto key() const {
    return std::make_tuple(top, bottom, int(pattern), pattern == Pattern::plain ? -1 : pattern_colour,
                           pattern == Pattern::plain || pattern == Pattern::logo ? 0 : stripes, int(bottom_style),
                           long_sleeves, hair, hat, hat ? hat_colour : -1, skin, shoes, int(bag),
                           bag == Bag::none ? -1 : bag_colour);
  }
};

inline Appearance random_appearance(Random& r) {
  Appearance a;
  a.top = r.weighted(palette_weights);
  a.bottom = r.weighted(palette_weights);
  a.pattern = static_cast<Pattern>(r.weighted(std::array<int, 5>{4, 2, 2, 1, 2}));
  do a.pattern_colour = r.weighted(palette_weights);
  while (a.pattern_colour == a.top);
  a.stripes = r.integer(3, 5);
  a.bottom_style = static_cast<Bottom>(r.weighted(std::array<int, 3>{6, 2, 2}));
  a.long_sleeves = r.chance(0.6);
  a.hair = r.integer(0, int(hair_colours.size()) - 1);
  a.hat = r.chance(0.25);
  a.hat_colour = r.weighted(palette_weights);
  a.skin = r.integer(0, int(skin_tones.size()) - 1);
  a.shoes = r.integer(0, int(shoe_colours.size()) - 1);
  a.bag = static_cast<Bag>(r.weighted(std::array<int, 3>{5, 3, 2}));
  a.bag_colour = r.weighted(palette_weights);
  a.build = r.real(0.24, 0.32);
  return a;
}

/// How one appearance of a person varies: pose, size, lighting, mirroring.
struct Pose {
  int height = 80;              ///< pixels
  double stride = 0.5;          ///< 0: feet together .. 1: a long step
  double left_arm = 0.0;        ///< radians from vertical, positive outwards
  double right_arm = 0.0;
  bool mirrored = false;
  double brightness = 1.0;
  std::array<double, 3> shift{};  ///< added to each channel
};

inline Pose random_pose(Random& r, int min_height, int max_height) {
  Pose p;
  p.height = r.integer(min_height, max_height);
  p.stride = r.real();
  p.left_arm = r.real(-0.35, 0.6);
  p.right_arm = r.real(-0.35, 0.6);
  p.mirrored = r.chance(0.5);
  p.brightness = r.real(0.82, 1.15);
  for (auto& s : p.shift) s = r.real(-10, 10);
  return p;
}

inline cv::Scalar bgr(const std::array<int, 3>& c, double scale = 1.0) {
  return cv::Scalar(c[0] * scale, c[1] * scale, c[2] * scale);
}

/// A person drawn on a canvas of its own, with the mask of the pixels drawn.
class Sprite {
 public:
  Sprite(int rows, int cols) : image(rows, cols, CV_8UC3, cv::Scalar::all(0)), mask(rows, cols, CV_8UC1, cv::Scalar(0)) {}

  void polygon(const std::vector<cv::Point>& points, const cv::Scalar& colour) {
    cv::fillConvexPoly(image, points, colour, cv::LINE_8);
    cv::fillConvexPoly(mask, points, cv::Scalar(255), cv::LINE_8);
  }
  void line(cv::Point a, cv::Point b, const cv::Scalar& colour, int thickness) {
    cv::line(image, a, b, colour, thickness, cv::LINE_8);
    cv::line(mask, a, b, cv::Scalar(255), thickness, cv::LINE_8);
  }
  void ellipse(cv::Point centre, cv::Size axes, double from, double to, const cv::Scalar& colour) {
    cv::ellipse(image, centre, axes, 0, from, to, colour, cv::FILLED, cv::LINE_8);
    cv::ellipse(mask, centre, axes, 0, from, to, cv::Scalar(255), cv::FILLED, cv::LINE_8);
  }
  void rectangle(cv::Point a, cv::Point b, const cv::Scalar& colour) {
    cv::rectangle(image, a, b, colour, cv::FILLED, cv::LINE_8);
    cv::rectangle(mask, a, b, cv::Scalar(255), cv::FILLED, cv::LINE_8);
  }

  cv::Mat image;
  cv::Mat mask;
};

/// Draws `a` in pose `p`; the person's feet touch the canvas' bottom row and the head its top.
inline Sprite draw_person(const Appearance& a, const Pose& p) {
  const double h = p.height;
  const int cols = static_cast<int>(std::lround(0.84 * h)) | 1;
  Sprite s(p.height, cols);
  const double cx = cols / 2.0;
  const auto pt = [](double x, double y) { return cv::Point(int(std::lround(x)), int(std::lround(y))); };
  const auto px = [&](double fraction) { return std::max(1, int(std::lround(fraction * h))); };
  const cv::Scalar top = bgr(palette[size_t(a.top)]), bottom = bgr(palette[size_t(a.bottom)]);
  const cv::Scalar skin = bgr(skin_tones[size_t(a.skin)]), bag = bgr(palette[size_t(a.bag_colour)]);
  const double shoulder = a.build * h / 2, hip = shoulder * 0.82;
  const double y_shoulder = 0.175 * h, y_hip = 0.53 * h, y_foot = 0.955 * h;

  // Behind the body: a backpack shows on one side.
  if (a.bag == Bag::backpack) s.rectangle(pt(cx + shoulder - 0.05 * h, 0.2 * h), pt(cx + shoulder + 0.06 * h, 0.47 * h), bag);

  // Legs: trousers (bottom colour to the ankles), shorts (skin below the knees) or a skirt over bare legs.
  const double leg_x = hip * 0.5, spread = p.stride * 0.12 * h;
  const cv::Point left_hip = pt(cx - leg_x, y_hip), right_hip = pt(cx + leg_x, y_hip);
  const cv::Point left_foot = pt(cx - leg_x - spread, y_foot - 0.01 * h), right_foot = pt(cx + leg_x + spread, y_foot - 0.01 * h);
  const int leg_width = std::max(2, int(std::lround(hip * 0.9)));
  const cv::Scalar leg_colour = a.bottom_style == Bottom::trousers ? bottom : skin;
  s.line(left_hip, left_foot, leg_colour, leg_width);
  s.line(right_hip, right_foot, leg_colour, leg_width);
  if (a.bottom_style == Bottom::shorts) {
    const auto knee = [&](cv::Point hip_point, cv::Point foot) {
      return cv::Point((hip_point.x * 11 + foot.x * 9) / 20, (hip_point.y * 11 + foot.y * 9) / 20);
    };
    s.line(left_hip, knee(left_hip, left_foot), bottom, leg_width + 1);
    s.line(right_hip, knee(right_hip, right_foot), bottom, leg_width + 1);
  }
  s.rectangle(pt(cx - hip, y_hip - 0.03 * h), pt(cx + hip, y_hip + 0.06 * h), bottom);  // pelvis
  if (a.bottom_style == Bottom::skirt)
    s.polygon({pt(cx - hip, y_hip - 0.02 * h), pt(cx + hip, y_hip - 0.02 * h), pt(cx + hip + 0.05 * h, 0.74 * h),
               pt(cx - hip - 0.05 * h, 0.74 * h)},
              bottom);
  const cv::Scalar shoes = bgr(shoe_colours[size_t(a.shoes)]);
  s.ellipse(pt(left_foot.x - 0.01 * h, y_foot), cv::Size(px(0.035), px(0.022)), 0, 360, shoes);
  s.ellipse(pt(right_foot.x + 0.01 * h, y_foot), cv::Size(px(0.035), px(0.022)), 0, 360, shoes);

  // Torso in the top colour, with the pattern clipped to it.
  const std::vector<cv::Point> torso{pt(cx - shoulder, y_shoulder), pt(cx + shoulder, y_shoulder),
                                     pt(cx + hip, y_hip), pt(cx - hip, y_hip)};
  s.polygon(torso, top);
  if (a.pattern != Pattern::plain) {
    cv::Mat torso_mask(s.mask.size(), CV_8UC1, cv::Scalar(0));
    cv::fillConvexPoly(torso_mask, torso, cv::Scalar(255), cv::LINE_8);
    cv::Mat layer(s.image.size(), CV_8UC3, top);
    const cv::Scalar ink = bgr(palette[size_t(a.pattern_colour)]);
    const double tall = y_hip - y_shoulder, wide = 2 * shoulder;
    const int k = a.stripes;
    switch (a.pattern) {
      case Pattern::horizontal_stripes:
        for (int i = 0; i < k; ++i) {
          const double y0 = y_shoulder + tall * (2 * i + 1) / (2 * k);
          cv::rectangle(layer, pt(0, y0), pt(cols, y0 + tall / (2 * k) - 0.5), ink, cv::FILLED);
        }
        break;
      case Pattern::vertical_stripes:
        for (int i = 0; i < k; ++i) {
          const double x0 = cx - shoulder + wide * (2 * i + 1) / (2 * k + 1);
          cv::rectangle(layer, pt(x0, 0), pt(x0 + wide / (2 * k + 1) - 0.5, h), ink, cv::FILLED);
        }
        break;
      case Pattern::checks: {
        const double cell = tall / k;
        for (int i = 0; i < k; ++i)
          for (int j = 0; j * cell < wide + cell; ++j)
            if ((i + j) % 2 == 0) {
              const double x0 = cx - shoulder + j * cell, y0 = y_shoulder + i * cell;
              cv::rectangle(layer, pt(x0, y0), pt(x0 + cell - 0.5, y0 + cell - 0.5), ink, cv::FILLED);
            }
        break;
      }
      case Pattern::logo:  // off centre, so that mirroring moves it
        cv::rectangle(layer, pt(cx + 0.15 * shoulder, y_shoulder + 0.12 * tall),
                      pt(cx + 0.75 * shoulder, y_shoulder + 0.42 * tall), ink, cv::FILLED);
        break;
      case Pattern::plain: break;
    }
    layer.copyTo(s.image, torso_mask);
  }
  s.rectangle(pt(cx - 0.022 * h, 0.14 * h), pt(cx + 0.022 * h, y_shoulder + 1), skin);  // neck

  // Arms: sleeves in the top colour (short sleeves: skin below the elbow), hands.
  const double arm = 0.33 * h;
  const int arm_width = std::max(2, px(0.055));
  for (const int side : {-1, 1}) {
    const double angle = side < 0 ? p.left_arm : p.right_arm;
    const cv::Point shoulder_point = pt(cx + side * (shoulder - 0.025 * h), y_shoulder + 0.025 * h);
    const cv::Point hand = pt(shoulder_point.x + side * arm * std::sin(angle), shoulder_point.y + arm * std::cos(angle));
    const cv::Point elbow((shoulder_point.x + hand.x) / 2, (shoulder_point.y + hand.y) / 2);
    if (a.long_sleeves) {
      s.line(shoulder_point, hand, top, arm_width);
    } else {
      s.line(elbow, hand, skin, arm_width);
      s.line(shoulder_point, elbow, top, arm_width + 1);
    }
    s.ellipse(hand, cv::Size(px(0.027), px(0.027)), 0, 360, skin);
  }

  // Head, hair or hat.
  const cv::Point head = pt(cx, 0.085 * h);
  s.ellipse(head, cv::Size(px(0.056), px(0.078)), 0, 360, skin);
  if (a.hat) {
    const cv::Scalar hat = bgr(palette[size_t(a.hat_colour)]);
    s.rectangle(pt(cx - 0.058 * h, 0), pt(cx + 0.058 * h, 0.055 * h), hat);
    s.rectangle(pt(cx - 0.085 * h, 0.05 * h), pt(cx + 0.085 * h, 0.05 * h + px(0.018) - 1), hat);
  } else {
    s.ellipse(head, cv::Size(px(0.06), px(0.082)), 180, 360, bgr(hair_colours[size_t(a.hair)]));
  }

  // A shoulder bag: the strap across the chest and the bag at the hip.
  if (a.bag == Bag::shoulder_bag) {
    s.line(pt(cx - shoulder * 0.7, y_shoulder), pt(cx + hip, 0.46 * h), bag, std::max(1, px(0.014)));
    s.rectangle(pt(cx + hip - 0.02 * h, 0.44 * h), pt(cx + hip + 0.07 * h, 0.56 * h), bag);
  } else if (a.bag == Bag::backpack) {
    const int strap = std::max(1, px(0.014));
    s.line(pt(cx - shoulder * 0.5, y_shoulder), pt(cx - shoulder * 0.45, 0.36 * h), bag, strap);
    s.line(pt(cx + shoulder * 0.5, y_shoulder), pt(cx + shoulder * 0.45, 0.36 * h), bag, strap);
  }

  // The appearance's lighting, then mirroring.
  s.image.convertTo(s.image, -1, p.brightness, 0);
  cv::add(s.image, cv::Scalar(p.shift[0], p.shift[1], p.shift[2]), s.image, s.mask);
  if (p.mirrored) {
    cv::flip(s.image, s.image, 1);
    cv::flip(s.mask, s.mask, 1);
  }
  return s;
}

/// A person to place in a scene: who (an identity, or -1 for an unlabeled person) and how they look.
struct Placement {
  int identity = -1;
  Appearance appearance;
};

/// Where a person ended up: x, y, w, h (the tight box) and whether something stands in front of them.
struct Placed {
  int identity = -1;
  cv::Rect box;
  bool occluded = false;
};

inline double iou(const cv::Rect& a, const cv::Rect& b) {
  const double inter = (a & b).area();
  return inter / (a.area() + b.area() - inter);
}

/// A muted colour (walls, ground, clutter), or a palette colour so that clothes colours appear in the
/// background too.
inline cv::Scalar clutter_colour(Random& r) {
  if (r.chance(0.4)) return bgr(palette[size_t(r.weighted(palette_weights))], r.real(0.6, 1.0));
  const double base = r.real(50, 210);
  return cv::Scalar(base + r.real(-25, 25), base + r.real(-25, 25), base + r.real(-25, 25));
}

/// Renders one scene with `people` placed; fills `placed` (same order as `people`).
inline cv::Mat render_scene(Random& r, const SyntheticOptions& o, const std::vector<Placement>& people,
                            std::vector<Placed>& placed) {
  const int rows = o.image_height, cols = o.image_width;
  cv::Mat img(rows, cols, CV_8UC3);

  // Background: a wall or sky gradient above a horizon, a ground gradient below.
  const int horizon = int(rows * r.real(0.35, 0.6));
  const cv::Scalar sky0 = clutter_colour(r), sky1 = clutter_colour(r), ground0 = clutter_colour(r) * 0.8,
                   ground1 = clutter_colour(r) * 0.8;
  for (int y = 0; y < rows; ++y) {
    const bool above = y < horizon;
    const double t = above ? double(y) / std::max(1, horizon) : double(y - horizon) / std::max(1, rows - horizon);
    img.row(y).setTo(above ? sky0 * (1 - t) + sky1 * t : ground0 * (1 - t) + ground1 * t);
  }
  // Clutter: blocks, lines, blobs and two-colour "posters" the size of a torso and legs.
  const double c = o.clutter;
  for (int i = 0, n = int(std::lround(c * r.real(15, 30))); i < n; ++i) {
    const int w = r.integer(6, std::max(6, cols / 4)), h = r.integer(6, std::max(6, rows / 3));
    const cv::Point a(r.integer(-w / 2, cols - w / 2), r.integer(-h / 2, rows - h / 2));
    cv::rectangle(img, a, a + cv::Point(w, h), clutter_colour(r), cv::FILLED);
    if (r.chance(0.3)) cv::rectangle(img, a, a + cv::Point(w, h), clutter_colour(r), r.integer(1, 2));
  }
  for (int i = 0, n = int(std::lround(c * r.real(6, 15))); i < n; ++i)
    cv::line(img, {r.integer(0, cols), r.integer(0, rows)}, {r.integer(0, cols), r.integer(0, rows)},
             clutter_colour(r), r.integer(1, 3));
  for (int i = 0, n = int(std::lround(c * r.real(4, 10))); i < n; ++i)
    cv::ellipse(img, {r.integer(0, cols), r.integer(0, rows)}, {r.integer(3, 25), r.integer(3, 25)},
                r.real(0, 180), 0, 360, clutter_colour(r), cv::FILLED);
  for (int i = 0, n = int(std::lround(c * r.real(1, 4))); i < n; ++i) {
    const int h = r.integer(o.min_person_height, o.max_person_height), w = int(h * r.real(0.22, 0.34));
    const cv::Point a(r.integer(0, std::max(0, cols - w)), r.integer(0, std::max(0, rows - h)));
    cv::rectangle(img, a, a + cv::Point(w, h / 2), bgr(palette[size_t(r.weighted(palette_weights))]), cv::FILLED);
    cv::rectangle(img, a + cv::Point(0, h / 2), a + cv::Point(w, h), bgr(palette[size_t(r.weighted(palette_weights))]),
                  cv::FILLED);
  }

  // People: drawn, placed where they overlap others least, painted far (higher feet) to near.
  struct Drawn {
    Sprite sprite;
    cv::Rect local;  // the person's tight box inside the sprite
    cv::Point at;    // sprite's top-left in the scene
  };
  std::vector<Drawn> drawn;
  placed.assign(people.size(), Placed{});
  for (size_t k = 0; k < people.size(); ++k) {
    Pose pose = random_pose(r, o.min_person_height, o.max_person_height);
    Sprite sprite = draw_person(people[k].appearance, pose);
    const cv::Rect local = cv::boundingRect(sprite.mask);
    cv::Point best_at;
    double best = 2.0;
    for (int attempt = 0; attempt < 30 && best > 0.1; ++attempt) {
      const cv::Point at(r.integer(-local.x, cols - local.x - local.width), r.integer(-local.y, rows - local.y - local.height));
      double worst = 0;
      for (size_t j = 0; j < k; ++j) worst = std::max(worst, iou(local + at, placed[j].box));
      if (worst < best) best = worst, best_at = at;
    }
    placed[k] = {people[k].identity, local + best_at, false};
    drawn.push_back({std::move(sprite), local, best_at});
  }
  std::vector<size_t> order(people.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return placed[a].box.br().y < placed[b].box.br().y; });
  for (const size_t k : order) {
    const auto& d = drawn[k];
    const cv::Rect in_scene = cv::Rect(d.at, d.sprite.image.size()) & cv::Rect(0, 0, cols, rows);
    const cv::Rect in_sprite = in_scene - d.at;
    d.sprite.image(in_sprite).copyTo(img(in_scene), d.sprite.mask(in_sprite));
  }

  // Occluders in front: a pole through the person or a box hiding the legs.
  for (auto& p : placed) {
    if (!r.chance(o.occlusion_probability)) continue;
    p.occluded = true;
    const cv::Rect& b = p.box;
    const cv::Scalar colour = clutter_colour(r);
    if (r.chance(0.5)) {
      const int w = std::max(2, int(b.width * r.real(0.2, 0.4)));
      const int x = b.x + int((b.width - w) * r.real(0.1, 0.9));
      const int top = r.chance(0.5) ? 0 : std::max(0, b.y - r.integer(0, b.height / 2));
      cv::rectangle(img, {x, top}, {x + w - 1, rows - 1}, colour, cv::FILLED);
      cv::line(img, {x, top}, {x, rows - 1}, colour * 0.6, 1);
    } else {
      const int h = std::max(3, int(b.height * r.real(0.25, 0.45)));
      const int x0 = b.x - int(b.width * r.real(0.0, 0.6)), x1 = b.x + int(b.width * r.real(0.5, 1.4));
      const int y0 = b.y + b.height - h;
      cv::rectangle(img, {x0, y0}, {x1, rows - 1}, colour, cv::FILLED);
      cv::rectangle(img, {x0, y0}, {x1, rows - 1}, colour * 0.6, 1);
    }
  }

  // Camera: a slight blur and sensor noise.
  cv::GaussianBlur(img, img, cv::Size(3, 3), 0.6);
  const int amplitude = 4 + int(std::lround(8 * c));
  uint8_t* data = img.ptr<uint8_t>(0);  // continuous: freshly allocated
  const size_t n = img.total() * 3;
  for (size_t i = 0; i < n; i += 4) {
    const uint32_t bits = r.bits();
    for (size_t j = 0; j < 4 && i + j < n; ++j) {
      const int noise = int(((bits >> (8 * j)) & 0xFFu) * uint32_t(2 * amplitude + 1) >> 8) - amplitude;
      data[i + j] = cv::saturate_cast<uint8_t>(int(data[i + j]) + noise);
    }
  }
  return img;
}

/// For each picture of a split, the identities it shows: every identity gets a number of distinct pictures in
/// [min_appearances, max_appearances], spread so that pictures fill evenly, at most max_people each.
inline std::vector<std::vector<int>> assign_identities(Random& r, int images, int identities, int min_appearances,
                                                       int max_appearances, int max_people, const char* split) {
  std::vector<std::vector<int>> shown(static_cast<size_t>(images));
  std::vector<int> order(static_cast<size_t>(identities));
  std::iota(order.begin(), order.end(), 0);
  r.shuffle(order);
  std::vector<uint32_t> tie(static_cast<size_t>(images));
  for (const int id : order) {
    const int count = r.integer(min_appearances, max_appearances);
    std::vector<int> candidates;
    for (int i = 0; i < images; ++i)
      if (int(shown[size_t(i)].size()) < max_people) candidates.push_back(i);
    TRIDENT_CHECK(int(candidates.size()) >= count,
                  "{}: the {} pictures have no room left for identity {} ({} appearances): options.{}_identities "
                  "x options.min_{}_appearances ({} x {}) people do not fit in {} pictures of at most "
                  "options.max_people = {}; raise options.{}_images or options.max_people, or lower the identities",
                  caller, split, id, count, split, split, identities, min_appearances, images, max_people, split);
    for (const int i : candidates) tie[size_t(i)] = r.bits();
    std::sort(candidates.begin(), candidates.end(), [&](int a, int b) {
      const auto sa = shown[size_t(a)].size(), sb = shown[size_t(b)].size();
      return sa != sb ? sa < sb : tie[size_t(a)] != tie[size_t(b)] ? tie[size_t(a)] < tie[size_t(b)] : a < b;
    });
    for (int j = 0; j < count; ++j) shown[size_t(candidates[size_t(j)])].push_back(id);
  }
  return shown;
}

inline void check_options(const SyntheticOptions& o) {
  const auto in = [](auto v, auto lo, auto hi) { return v >= lo && v <= hi; };
  const auto check = [&](bool ok, const char* name, auto value, const char* rule) {
    TRIDENT_CHECK(ok, "{}: options.{} must be {}, got {}", caller, name, rule, value);
  };
  check(o.train_images >= 1, "train_images", o.train_images, ">= 1");
  check(o.test_images >= 51, "test_images", o.test_images,
        ">= 51 (the smallest CUHK-SYSU gallery, 50 pictures, plus the query's own)");
  check(o.train_identities >= 1, "train_identities", o.train_identities, ">= 1");
  check(o.test_identities >= 1, "test_identities", o.test_identities, ">= 1");
  check(o.min_train_appearances >= 1, "min_train_appearances", o.min_train_appearances, ">= 1");
  check(in(o.max_train_appearances, o.min_train_appearances, o.train_images), "max_train_appearances",
        o.max_train_appearances,
        fmt::format("in [min_train_appearances, train_images] = [{}, {}]", o.min_train_appearances, o.train_images)
            .c_str());
  check(o.min_test_appearances >= 2, "min_test_appearances", o.min_test_appearances,
        ">= 2 (the query's picture and at least one gallery picture)");
  check(in(o.max_test_appearances, o.min_test_appearances, o.test_images), "max_test_appearances",
        o.max_test_appearances,
        fmt::format("in [min_test_appearances, test_images] = [{}, {}]", o.min_test_appearances, o.test_images)
            .c_str());
  check(in(o.min_people, 1, 20), "min_people", o.min_people, "in [1, 20]");
  check(in(o.max_people, o.min_people, 20), "max_people", o.max_people,
        fmt::format("in [min_people, 20] = [{}, 20]", o.min_people).c_str());
  check(in(o.image_height, 64, 4096), "image_height", o.image_height, "in [64, 4096]");
  check(in(o.image_width, 64, 4096), "image_width", o.image_width, "in [64, 4096]");
  check(in(o.min_person_height, 24, o.image_height), "min_person_height", o.min_person_height,
        fmt::format("in [24, image_height] = [24, {}]", o.image_height).c_str());
  check(in(o.max_person_height, o.min_person_height, std::min(o.image_height, o.image_width)), "max_person_height",
        o.max_person_height,
        fmt::format("in [min_person_height, min(image_height, image_width)] = [{}, {}]", o.min_person_height,
                    std::min(o.image_height, o.image_width))
            .c_str());
  check(in(o.unlabeled_fraction, 0.0, 0.9), "unlabeled_fraction", o.unlabeled_fraction, "in [0, 0.9]");
  check(in(o.occlusion_probability, 0.0, 1.0), "occlusion_probability", o.occlusion_probability, "in [0, 1]");
  check(in(o.clutter, 0.0, 1.0), "clutter", o.clutter, "in [0, 1]");
  check(in(o.jpeg_quality, 1, 100), "jpeg_quality", o.jpeg_quality, "in [1, 100]");
  for (size_t i = 0; i < o.gallery_sizes.size(); ++i) {
    const int g = o.gallery_sizes[i];
    TRIDENT_CHECK(std::find(cuhk_sysu_gallery_sizes.begin(), cuhk_sysu_gallery_sizes.end(), g) !=
                      cuhk_sysu_gallery_sizes.end(),
                  "{}: options.gallery_sizes[{}] must be a CUHK-SYSU gallery size (50, 100, 500, 1000, 2000 or 4000), "
                  "got {}",
                  caller, i, g);
    TRIDENT_CHECK(g < o.test_images,
                  "{}: options.gallery_sizes[{}] = {} needs more test pictures: options.test_images must be at least "
                  "{}, got {}",
                  caller, i, g, g + 1, o.test_images);
    for (size_t j = 0; j < i; ++j)
      TRIDENT_CHECK(o.gallery_sizes[j] != g, "{}: options.gallery_sizes lists {} twice", caller, g);
  }
}

/// One picture's people as written: the box (x, y, w, h) and who.
struct Annotated {
  std::string name;
  std::vector<Placed> people;
};

inline io::MatVariable box_row(const cv::Rect& b) {
  return io::MatVariable::row({double(b.x), double(b.y), double(b.width), double(b.height)});
}

/// Writes Images.mat, pool.mat, Train.mat and the TestG<G>.mat files under `root`.
inline void write_annotations(const std::filesystem::path& root, const std::vector<Annotated>& pictures,
                              int train_images, int train_identities, int test_identities,
                              const std::vector<int>& gallery_sizes, uint64_t seed) {
  using io::MatVariable;
  const auto annotation = root / "annotation";
  {  // Img(i): imname, nAppear, box(j).idlocate (x, y, w, h), box(j).ishard
    std::vector<std::vector<MatVariable>> elements;
    for (const auto& p : pictures) {
      std::vector<std::vector<MatVariable>> boxes;
      for (const auto& person : p.people) boxes.push_back({box_row(person.box), MatVariable::scalar(0)});
      const size_t n = boxes.size();
      elements.push_back({MatVariable::string(p.name), MatVariable::scalar(double(n)),
                          MatVariable::struct_array(1, n, {"idlocate", "ishard"}, std::move(boxes))});
    }
    const size_t n = elements.size();
    io::write_mat_file(annotation / "Images.mat", "Img",
                       MatVariable::struct_array(1, n, {"imname", "nAppear", "box"}, std::move(elements)));
  }
  {  // pool{k}: the test pictures
    std::vector<MatVariable> pool;
    for (size_t i = size_t(train_images); i < pictures.size(); ++i) pool.push_back(MatVariable::string(pictures[i].name));
    io::write_mat_file(annotation / "pool.mat", "pool", MatVariable::cell_column(std::move(pool)));
  }
  // Where each identity appears: (picture, box), pictures in order.
  const auto appearances = [&](size_t first, size_t last, int identities) {
    std::vector<std::vector<std::pair<size_t, cv::Rect>>> where(static_cast<size_t>(identities));
    for (size_t i = first; i < last; ++i)
      for (const auto& person : pictures[i].people)
        if (person.identity >= 0) where[size_t(person.identity)].emplace_back(i, person.box);
    return where;
  };
  const auto train_split = size_t(train_images);
  const auto scene_fields = std::vector<std::string>{"imname", "idlocate", "ishard"};
  {  // Train{k}: idname, nAppear, scene(s).imname / idlocate / ishard
    const auto where = appearances(0, train_split, train_identities);
    std::vector<MatVariable> people;
    for (size_t k = 0; k < where.size(); ++k) {
      std::vector<std::vector<MatVariable>> scenes;
      for (const auto& [picture, box] : where[k])
        scenes.push_back({MatVariable::string(pictures[picture].name), box_row(box), MatVariable::scalar(0)});
      const size_t n = scenes.size();
      std::vector<std::vector<MatVariable>> person;
      person.push_back({MatVariable::string(fmt::format("p{:05d}", k + 1)), MatVariable::scalar(double(n)),
                        MatVariable::struct_array(1, n, scene_fields, std::move(scenes))});
      people.push_back(MatVariable::struct_array(1, 1, {"idname", "nAppear", "scene"}, std::move(person)));
    }
    io::write_mat_file(annotation / "test" / "train_test" / "Train.mat", "Train",
                       MatVariable::cell_column(std::move(people)));
  }
  // TestG<G>(q): Query (imname, idlocate, idname), Gallery(j) (imname, idlocate or [] when absent, ishard).
  const auto where = appearances(train_split, pictures.size(), test_identities);
  Random r(seed, query_stream);
  std::vector<size_t> query_at(where.size());  // which appearance is the query
  for (size_t q = 0; q < where.size(); ++q) query_at[q] = size_t(r.integer(0, int(where[q].size()) - 1));
  const int smallest = *std::min_element(gallery_sizes.begin(), gallery_sizes.end());
  std::vector<std::vector<MatVariable>> smallest_entries;  // the subsets' queries keep these galleries
  for (const int g : gallery_sizes) {
    Random pick(seed, query_stream, uint64_t(g));
    std::vector<std::vector<MatVariable>> entries;
    for (size_t q = 0; q < where.size(); ++q) {
      const auto& [query_picture, query_box] = where[q][query_at[q]];
      const std::string idname = fmt::format("t{:05d}", q + 1);
      std::vector<std::vector<MatVariable>> query;
      query.push_back({MatVariable::string(pictures[query_picture].name), box_row(query_box),
                       MatVariable::string(idname)});
      std::vector<std::vector<MatVariable>> gallery;
      std::vector<bool> shows(pictures.size(), false);
      for (const auto& [picture, box] : where[q]) {
        shows[picture] = true;
        if (picture != query_picture)
          gallery.push_back({MatVariable::string(pictures[picture].name), box_row(box), MatVariable::scalar(0)});
      }
      std::vector<size_t> distractors;
      for (size_t i = train_split; i < pictures.size(); ++i)
        if (!shows[i]) distractors.push_back(i);
      pick.shuffle(distractors);
      distractors.resize(size_t(g) - gallery.size());
      std::sort(distractors.begin(), distractors.end());
      for (const size_t i : distractors)
        gallery.push_back({MatVariable::string(pictures[i].name), MatVariable::empty(), MatVariable::scalar(0)});
      entries.push_back({MatVariable::struct_array(1, 1, {"imname", "idlocate", "idname"}, std::move(query)),
                         MatVariable::struct_array(1, size_t(g), scene_fields, std::move(gallery))});
    }
    const std::string name = fmt::format("TestG{}", g);
    const size_t n = entries.size();
    if (g == smallest) smallest_entries = entries;
    io::write_mat_file(annotation / "test" / "train_test" / (name + ".mat"), name,
                       MatVariable::struct_array(1, n, {"Query", "Gallery"}, std::move(entries)));
  }
  // The query subsets, as CUHK-SYSU ships them (annotation/test/subset): Occlusion.mat (Occlusion1) holds the
  // queries whose person is partly hidden, Resolution.mat (Test_Size) the third of the queries with the
  // smallest boxes; both with the galleries of the smallest TestG<G>. A subset without any query is not written.
  std::vector<size_t> occluded, small;
  std::vector<std::pair<int, size_t>> heights;
  for (size_t q = 0; q < where.size(); ++q) {
    const auto& [picture, box] = where[q][query_at[q]];
    for (const auto& person : pictures[picture].people)
      if (person.identity == int(q) && person.box == box && person.occluded) occluded.push_back(q);
    heights.emplace_back(box.height, q);
  }
  std::sort(heights.begin(), heights.end());
  for (size_t i = 0; i < heights.size() / 3; ++i) small.push_back(heights[i].second);
  std::sort(small.begin(), small.end());
  const auto write_subset = [&](const std::vector<size_t>& queries, const char* file, const char* variable) {
    if (queries.empty()) return;
    std::vector<std::vector<MatVariable>> entries;
    for (const size_t q : queries) entries.push_back(smallest_entries[q]);
    const size_t n = entries.size();
    io::write_mat_file(annotation / "test" / "subset" / file, variable,
                       MatVariable::struct_array(1, n, {"Query", "Gallery"}, std::move(entries)));
  };
  write_subset(occluded, "Occlusion.mat", "Occlusion1");
  write_subset(small, "Resolution.mat", "Test_Size");
}

}  // namespace detail::synthetic

/// Renders the synthetic benchmark and writes it under `root` in the CUHK-SYSU layout (see the file comment and
/// docs/datasets.md). Pictures s1.jpg .. s<train_images>.jpg are the training split, the rest the test split
/// (pool.mat). Refuses a non-empty existing `root` unless options.overwrite; errors for bad options name the
/// option and its value, and leave nothing behind.
inline SyntheticReport write_synthetic_cuhk_sysu(const std::string& root, const SyntheticOptions& options) {
  namespace fs = std::filesystem;
  using namespace detail::synthetic;
  check_options(options);
  TRIDENT_CHECK(!root.empty(), "{}: root is empty", caller);
  fs::path target = fs::path(root);
  if (!target.has_filename()) target = target.parent_path();  // "out/" -> "out"
  TRIDENT_CHECK(!target.filename().empty() && target.filename() != "." && target.filename() != "..",
                "{}: root '{}' must name a folder of its own (not '/', '.' or '..')", caller, root);
  std::error_code ec;
  if (fs::exists(target, ec)) {
    TRIDENT_CHECK(fs::is_directory(target, ec), "{}: '{}' exists and is not a folder", caller, root);
    TRIDENT_CHECK(options.overwrite || fs::is_empty(target, ec),
                  "{}: '{}' exists and is not empty (set SyntheticOptions::overwrite, or --overwrite, to replace it)",
                  caller, root);
  }
  std::vector<int> gallery_sizes = options.gallery_sizes;
  if (gallery_sizes.empty())
    for (const int g : cuhk_sysu_gallery_sizes)
      if (g < options.test_images) gallery_sizes.push_back(g);
  const int smallest_gallery = *std::min_element(gallery_sizes.begin(), gallery_sizes.end());
  TRIDENT_CHECK(options.max_test_appearances - 1 <= smallest_gallery,
                "{}: options.max_test_appearances must be at most {} (a gallery of {} holds every other picture of "
                "the query's identity), got {}",
                caller, smallest_gallery + 1, smallest_gallery, options.max_test_appearances);

  const uint64_t seed = options.seed;
  // Identities: training ones, then test ones, then (for unlabeled people) anything else; all distinct.
  Random appearance_random(seed, appearance_stream);
  std::set<decltype(Appearance{}.key())> taken;
  const auto fresh_appearance = [&] {
    for (;;) {
      Appearance a = random_appearance(appearance_random);
      if (taken.insert(a.key()).second) return a;
    }
  };
  std::vector<Appearance> train_people, test_people;
  for (int i = 0; i < options.train_identities; ++i) train_people.push_back(fresh_appearance());
  for (int i = 0; i < options.test_identities; ++i) test_people.push_back(fresh_appearance());

  Random assignment(seed, assignment_stream);
  auto shown = assign_identities(assignment, options.train_images, options.train_identities,
                                 options.min_train_appearances, options.max_train_appearances, options.max_people,
                                 "train");
  auto test_shown = assign_identities(assignment, options.test_images, options.test_identities,
                                      options.min_test_appearances, options.max_test_appearances, options.max_people,
                                      "test");
  shown.insert(shown.end(), test_shown.begin(), test_shown.end());

  const fs::path staging = fs::path(target.string() + ".partial");
  fs::remove_all(staging, ec);
  TRIDENT_CHECK(!ec, "{}: cannot remove the stale folder '{}': {}", caller, staging.string(), ec.message());
  SyntheticReport report;
  report.root = root;
  report.train_images = options.train_images;
  report.test_images = options.test_images;
  report.images = options.train_images + options.test_images;
  report.train_identities = options.train_identities;
  report.test_identities = options.test_identities;
  report.identities = report.train_identities + report.test_identities;
  report.queries = options.test_identities;
  report.gallery_sizes = gallery_sizes;
  try {
    const fs::path pictures_dir = staging / "Image" / "SSM";
    fs::create_directories(pictures_dir);
    const double unlabeled_per_labeled = options.unlabeled_fraction / (1.0 - options.unlabeled_fraction);
    std::vector<Annotated> pictures(shown.size());
    const std::vector<int> jpeg{cv::IMWRITE_JPEG_QUALITY, options.jpeg_quality};
    for (size_t i = 0; i < shown.size(); ++i) {
      const bool test = i >= size_t(options.train_images);
      Random r(seed, scene_stream, i);
      std::vector<Placement> people;
      for (const int id : shown[i]) people.push_back({id, test ? test_people[size_t(id)] : train_people[size_t(id)]});
      const int labeled = int(people.size());
      int unlabeled = int(std::floor(labeled * unlabeled_per_labeled + r.real()));
      unlabeled = std::clamp(unlabeled, std::max(0, options.min_people - labeled), std::max(0, options.max_people - labeled));
      for (int u = 0; u < unlabeled; ++u) {
        Appearance a;
        do a = random_appearance(r);
        while (taken.count(a.key()));
        people.push_back({-1, a});
      }
      r.shuffle(people);
      Annotated& picture = pictures[i];
      picture.name = fmt::format("s{}.jpg", i + 1);
      const cv::Mat img = render_scene(r, options, people, picture.people);
      const std::string file = (pictures_dir / picture.name).string();
      TRIDENT_CHECK(cv::imwrite(file, img, jpeg), "{}: cannot write the picture '{}'", caller, file);
      for (const auto& p : picture.people) {
        ++report.boxes;
        report.unlabeled += p.identity < 0;
        report.occluded += p.occluded;
      }
    }
    write_annotations(staging, pictures, options.train_images, options.train_identities, options.test_identities,
                      gallery_sizes, seed);
    if (fs::exists(target)) fs::remove_all(target);
    if (target.has_parent_path()) fs::create_directories(target.parent_path());
    fs::rename(staging, target);
  } catch (const std::exception& e) {
    fs::remove_all(staging, ec);
    if (dynamic_cast<const Error*>(&e)) throw;
    trident::fail("{}: writing '{}' failed: {}", caller, root, e.what());
  }
  return report;
}

}  // namespace trident::data
