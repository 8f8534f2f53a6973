#pragma once
/// \file trident/model/options_text.hpp
/// NetOptions as text, one `name = value` line per field, and back: what a checkpoint records so that a program
/// rebuilds the network it was trained as (train/checkpoint.hpp, "metadata"), and what a command line sets one
/// field at a time (02_train --net-option branches.part_loss.scores=probabilities).
///
///   stem.frozen_up_to = layer1
///   rpn.anchors.sizes = 32, 64, 128, 256, 512
///   branches.detection_loss.box_beta = 0.1111111111111111
///
/// Values: integers, numbers (written so that they read back exactly), true / false, the enumerators' names
/// (stem.frozen_up_to: none, conv1, layer1, layer2, layer3; stem.norm: frozen, trainable;
/// branches.part_loss.scores: logits, probabilities), and comma-separated lists. Reading starts from the
/// defaults and sets the fields named: a field missing from the text keeps its default (a checkpoint from before
/// the field existed); an unknown name or a value that does not parse is an error naming the source, the line, the
/// field and the value. The values' own limits (a positive temperature, ...) are checked where they are used.

#include <trident/model/trident_net.hpp>

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

namespace trident {

namespace detail {

/// Calls f(name, field) for every field of `o` (a NetOptions or a const NetOptions), in a fixed order.
template <class O, class F>
void for_each_net_option(O& o, F&& f) {
  f("stem.frozen_up_to", o.stem.frozen_up_to);
  f("stem.norm", o.stem.norm);
  f("rpn.anchors.sizes", o.rpn.anchors.sizes);
  f("rpn.anchors.aspect_ratios", o.rpn.anchors.aspect_ratios);
  f("rpn.anchors.stride", o.rpn.anchors.stride);
  f("rpn.pre_nms_top_n_train", o.rpn.pre_nms_top_n_train);
  f("rpn.post_nms_top_n_train", o.rpn.post_nms_top_n_train);
  f("rpn.pre_nms_top_n_test", o.rpn.pre_nms_top_n_test);
  f("rpn.post_nms_top_n_test", o.rpn.post_nms_top_n_test);
  f("rpn.nms_threshold", o.rpn.nms_threshold);
  f("rpn.fg_iou_threshold", o.rpn.fg_iou_threshold);
  f("rpn.bg_iou_threshold", o.rpn.bg_iou_threshold);
  f("rpn.batch_size_per_image", o.rpn.batch_size_per_image);
  f("rpn.positive_fraction", o.rpn.positive_fraction);
  f("rpn.min_size", o.rpn.min_size);
  f("rpn.score_threshold", o.rpn.score_threshold);
  f("sampler.fg_iou_threshold", o.sampler.fg_iou_threshold);
  f("sampler.bg_iou_threshold", o.sampler.bg_iou_threshold);
  f("sampler.batch_size_per_image", o.sampler.batch_size_per_image);
  f("sampler.positive_fraction", o.sampler.positive_fraction);
  f("sampler.add_ground_truth", o.sampler.add_ground_truth);
  f("sampler.box_coder_weights", o.sampler.box_coder_weights);
  f("pooler.spatial_scale", o.pooler.spatial_scale);
  f("pooler.sampling_ratio", o.pooler.sampling_ratio);
  f("pooler.aligned", o.pooler.aligned);
  f("branches.reid_loss.tau_id", o.branches.reid_loss.tau_id);
  f("branches.reid_loss.tau_bin", o.branches.reid_loss.tau_bin);
  f("branches.reid_loss.s_kappa", o.branches.reid_loss.s_kappa);
  f("branches.reid_loss.lambda_unlabeled", o.branches.reid_loss.lambda_unlabeled);
  f("branches.reid_loss.detach_mean_positive", o.branches.reid_loss.detach_mean_positive);
  f("branches.reid_embedding_norm", o.branches.reid_embedding_norm);
  f("branches.memory.momentum", o.branches.memory.momentum);
  f("branches.memory.queue_background", o.branches.memory.queue_background);
  f("branches.part_loss.tau_part", o.branches.part_loss.tau_part);
  f("branches.part_loss.scores", o.branches.part_loss.scores);
  f("branches.detection_loss.box_beta", o.branches.detection_loss.box_beta);
  f("branches.detection_loss.box_weight", o.branches.detection_loss.box_weight);
  f("score_threshold", o.score_threshold);
  f("nms_threshold", o.nms_threshold);
  f("detections_per_image", o.detections_per_image);
  f("min_box_size", o.min_box_size);
  f("cuda_graphs", o.cuda_graphs);
}

template <class E>
struct enum_names;
template <>
struct enum_names<backbone::FrozenUpTo> {
  static constexpr std::array<std::pair<std::string_view, backbone::FrozenUpTo>, 5> values{{
      {"none", backbone::FrozenUpTo::none},
      {"conv1", backbone::FrozenUpTo::conv1},
      {"layer1", backbone::FrozenUpTo::layer1},
      {"layer2", backbone::FrozenUpTo::layer2},
      {"layer3", backbone::FrozenUpTo::layer3}}};
};
template <>
struct enum_names<backbone::BatchNormMode> {
  static constexpr std::array<std::pair<std::string_view, backbone::BatchNormMode>, 2> values{{
      {"frozen", backbone::BatchNormMode::frozen}, {"trainable", backbone::BatchNormMode::trainable}}};
};
template <>
struct enum_names<losses::PartScores> {
  static constexpr std::array<std::pair<std::string_view, losses::PartScores>, 2> values{{
      {"logits", losses::PartScores::logits}, {"probabilities", losses::PartScores::probabilities}}};
};

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

/// Calls f(line) for every line of `text` ('\n'-separated; a last line without '\n' included).
template <class F>
void for_each_line(std::string_view text, F&& f) {
  while (!text.empty()) {
    const auto end = text.find('\n');
    f(text.substr(0, end));
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
  }
}

template <class T>
std::string option_value_text(const T& v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v ? "true" : "false";
  } else if constexpr (std::is_enum_v<T>) {
    for (const auto& [name, value] : enum_names<T>::values)
      if (value == v) return std::string(name);
    return fmt::format("{}", static_cast<int>(v));
  } else if constexpr (std::is_arithmetic_v<T>) {
    return fmt::format("{}", v);  // the shortest text that reads back as the same double
  } else {
    std::string out;
    for (const auto& x : v) out += (out.empty() ? "" : ", ") + fmt::format("{}", x);
    return out;
  }
}

/// Parses `text` into `v`; false when it is not a value of T.
template <class T>
bool parse_option_value(std::string_view text, T& v) {
  text = trim(text);
  if constexpr (std::is_same_v<T, bool>) {
    if (text == "true" || text == "1") v = true;
    else if (text == "false" || text == "0") v = false;
    else return false;
    return true;
  } else if constexpr (std::is_enum_v<T>) {
    for (const auto& [name, value] : enum_names<T>::values)
      if (name == text) {
        v = value;
        return true;
      }
    return false;
  } else if constexpr (std::is_arithmetic_v<T>) {
    T parsed{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return false;
    v = parsed;
    return true;
  } else {
    using Element = std::decay_t<decltype(*std::begin(v))>;
    std::vector<Element> items;
    while (!text.empty()) {
      const auto comma = text.find(',');
      Element x{};
      if (!parse_option_value(text.substr(0, comma), x)) return false;
      items.push_back(x);
      if (comma == std::string_view::npos) break;
      text.remove_prefix(comma + 1);
    }
    if constexpr (requires { v.push_back(Element{}); }) {
      v.assign(items.begin(), items.end());
    } else {
      if (items.size() != v.size()) return false;  // a fixed-size array
      std::copy(items.begin(), items.end(), v.begin());
    }
    return true;
  }
}

template <class T>
std::string option_kind() {
  if constexpr (std::is_same_v<T, bool>) {
    return "true or false";
  } else if constexpr (std::is_enum_v<T>) {
    std::string names;
    for (const auto& [name, value] : enum_names<T>::values) names += (names.empty() ? "" : ", ") + std::string(name);
    return "one of " + names;
  } else if constexpr (std::is_integral_v<T>) {
    return "an integer";
  } else if constexpr (std::is_arithmetic_v<T>) {
    return "a number";
  } else if constexpr (requires(T t) { t.push_back(0.0); }) {
    return "a comma-separated list of numbers";
  } else {
    return fmt::format("a comma-separated list of {} numbers", std::tuple_size_v<T>);
  }
}

}  // namespace detail

/// Every field of `o` as a `name = value` line (see the file comment).
inline std::string net_options_text(const NetOptions& o) {
  std::string out;
  detail::for_each_net_option(o, [&](std::string_view name, const auto& field) {
    out += fmt::format("{} = {}\n", name, detail::option_value_text(field));
  });
  return out;
}

/// Sets the field `name` of `o` from `value`; an unknown name or a value that does not parse is an error naming
/// `source` (e.g. "--net-option"), the field and the value.
inline void set_net_option(NetOptions& o, std::string_view name, std::string_view value, std::string_view source) {
  bool found = false;
  detail::for_each_net_option(o, [&](std::string_view field_name, auto& field) {
    if (field_name != name) return;
    found = true;
    TRIDENT_CHECK(detail::parse_option_value(value, field), "{}: network option '{}' must be {}, got '{}'", source,
                  name, detail::option_kind<std::decay_t<decltype(field)>>(), detail::trim(value));
  });
  TRIDENT_CHECK(found, "{}: there is no network option '{}' (NetOptions; model/options_text.hpp lists them)", source,
                name);
}

/// Sets a field from a `name=value` (or `name = value`) assignment.
inline void set_net_option(NetOptions& o, std::string_view assignment, std::string_view source) {
  const auto eq = assignment.find('=');
  TRIDENT_CHECK(eq != std::string_view::npos, "{}: expected 'name=value', got '{}'", source, assignment);
  set_net_option(o, detail::trim(assignment.substr(0, eq)), assignment.substr(eq + 1), source);
}

/// NetOptions from net_options_text()'s form: the defaults, with every line's field set. Empty lines and lines
/// starting with '#' are skipped; errors name `source` and the line.
inline NetOptions parse_net_options(std::string_view text, std::string_view source) {
  NetOptions o;
  int line_number = 0;
  detail::for_each_line(text, [&](std::string_view line) {
    ++line_number;
    line = detail::trim(line);
    if (!line.empty() && line.front() != '#') set_net_option(o, line, fmt::format("{}, line {}", source, line_number));
  });
  return o;
}

}  // namespace trident
