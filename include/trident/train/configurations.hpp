#pragma once
/// \file trident/train/configurations.hpp
/// Configurations by name: what a program trains, records in its checkpoints (TrainerOptions::configuration)
/// and builds again from a checkpoint's name alone. A configuration is a type, so a name is turned into one by
/// visiting a compile-time list:
///
///   train::with_configuration(train::example_configurations(), "small-without-part", [&](auto named) {
///     using Cfg = typename decltype(named)::config;     // Ablated<SmallCpuConfig, ablation::WithoutPart>
///     auto recipe = named.recipe();                     // the recipe it trains with by default
///     TridentNet<Cfg> net(recipe.net);
///     ...
///   });
///
/// Your own list is a boost::hana::tuple of NamedConfiguration<Cfg> values; each entry instantiates its network
/// in the program that visits the list, so a list holds what the program needs and no more.

#include <trident/model/ablation.hpp>
#include <trident/model/configs.hpp>
#include <trident/model/options_text.hpp>
#include <trident/train/checkpoint.hpp>
#include <trident/train/recipe.hpp>

#include <boost/hana/for_each.hpp>
#include <boost/hana/front.hpp>
#include <boost/hana/tuple.hpp>

#include <charconv>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace trident::train {

/// A configuration type with its name, a line saying what it is, and the recipe it trains with by default.
template <class Cfg>
struct NamedConfiguration {
  using config = Cfg;
  std::string_view name;
  std::string_view summary;
  Recipe (*recipe)();
};

template <class Cfg>
constexpr NamedConfiguration<Cfg> named_configuration(std::string_view name, std::string_view summary,
                                                      Recipe (*recipe)()) {
  return {name, summary, recipe};
}

/// The configurations of the example programs: the small CPU configuration and its ablation rows (Tables 1
/// and 2 of the paper, model/ablation.hpp), and the paper's configuration for CUHK-SYSU and for PRW.
inline auto example_configurations() {
  using namespace trident::ablation;
  const auto cuhk = +[] { return paper_recipe("cuhk-sysu"); };
  const auto prw = +[] { return paper_recipe("prw"); };
  return boost::hana::make_tuple(
      named_configuration<SmallCpuConfig>("small", "the paper's network on a quarter-width ResNet (CPU)",
                                          &small_recipe),
      named_configuration<Ablated<SmallCpuConfig, WithoutPart>>(
          "small-without-part", "small, Table 1's \"w/o Part cls.\" (no part branch)", &small_recipe),
      named_configuration<Ablated<SmallCpuConfig, WithoutAgwf>>(
          "small-without-agwf", "small, Table 1's \"w/o AGWF\" (alpha = 1 in every loss)", &small_recipe),
      named_configuration<Ablated<SmallCpuConfig, WithoutAgwf, WithoutPart>>(
          "small-without-agwf-and-part", "small, Table 1's \"w/o AGWF & Part cls.\"", &small_recipe),
      named_configuration<Ablated<SmallCpuConfig, WithoutBinAndUn>>(
          "small-without-bin-and-un", "small, Table 2's \"w/o L_bin & L_un\" (re-id with L_id alone)",
          &small_recipe),
      named_configuration<PaperConfig<CuhkSysu>>("paper-cuhk-sysu", "the paper's network for CUHK-SYSU (ResNet-50)",
                                                 cuhk),
      named_configuration<PaperConfig<Prw>>("paper-prw", "the paper's network for PRW (ResNet-50)", prw));
}

/// The name a program's --config means: "paper" is the paper's configuration for the dataset ("paper-prw" for
/// "prw", else "paper-cuhk-sysu", whose look-up table is the larger); any other name is itself.
inline std::string configuration_name(std::string_view config, std::string_view dataset) {
  if (config == "paper") return dataset == "prw" ? "paper-prw" : "paper-cuhk-sysu";
  return std::string(config);
}

/// The names of a list, comma-separated (for messages and --help).
template <class List>
std::string configuration_names(const List& list) {
  std::string names;
  boost::hana::for_each(list, [&](const auto& entry) {
    if (!names.empty()) names += ", ";
    names += entry.name;
  });
  return names;
}

/// Calls f(entry) with the entry of `list` named `name` and returns what it returns (every entry's call must
/// return the same type); a name not in the list is an error naming it and the list's names.
template <class List, class F>
auto with_configuration(const List& list, std::string_view name, F&& f) {
  using Result = decltype(f(boost::hana::front(list)));
  constexpr bool returns = !std::is_void_v<Result>;
  std::optional<std::conditional_t<returns, std::decay_t<Result>, bool>> result;  // set once the name is found
  boost::hana::for_each(list, [&](const auto& entry) {
    if (result.has_value() || entry.name != name) return;
    if constexpr (returns) {
      result.emplace(f(entry));
    } else {
      f(entry);
      result.emplace(true);
    }
  });
  TRIDENT_CHECK(result.has_value(), "trident::train::with_configuration: no configuration is named '{}' (known: {})",
                name, configuration_names(list));
  if constexpr (returns) return std::move(*result);
}

/// TrainerOptions::metadata of a run (02_train records it): the recipe's name, the picture sizes the network
/// trained at, and the network options, each of their lines prefixed "net.".
inline std::string run_metadata(const NetOptions& net, int64_t min_size, int64_t max_size, std::string_view recipe) {
  std::string out = fmt::format("recipe = {}\nmin_size = {}\nmax_size = {}\n", recipe, min_size, max_size);
  trident::detail::for_each_line(net_options_text(net), [&](std::string_view line) { out += fmt::format("net.{}\n", line); });
  return out;
}

/// The network a checkpoint holds, as a program rebuilds it: its configuration's name, its network options and
/// the picture sizes it trained at (0: the pictures' own size).
struct TrainedNetwork {
  std::string configuration;
  NetOptions net;
  int64_t min_size = 0, max_size = 0;
  /// Whether the checkpoint recorded the options and sizes (run_metadata); false: they are its configuration's
  /// recipe's (a checkpoint from before trident recorded them).
  bool recorded = false;
};

/// The network of `checkpoint`: its configuration (`configuration` when given, which loading then checks against
/// the checkpoint's), with the options and sizes its metadata records, or else its configuration's recipe's. The
/// name must be in `list`; a checkpoint that names no configuration needs `configuration`. Errors name the file,
/// the entry and the value.
template <class List>
TrainedNetwork trained_network(const List& list, const std::string& checkpoint, std::string_view configuration = {}) {
  static constexpr const char* caller = "trident::train::trained_network";
  const CheckpointInfo info = checkpoint_info(checkpoint);
  TrainedNetwork out;
  out.configuration = configuration.empty() ? info.configuration : std::string(configuration);
  TRIDENT_CHECK(!out.configuration.empty(),
                "{}: '{}' names no configuration (entry 'configuration' is empty: an unnamed run); say which it is "
                "(one of {})", caller, checkpoint, configuration_names(list));
  const Recipe recipe = with_configuration(list, out.configuration, [](const auto& entry) { return entry.recipe(); });
  out.net = recipe.net;
  out.min_size = recipe.loader.transform.min_size;
  out.max_size = recipe.loader.transform.max_size;
  if (info.metadata.empty()) return out;
  out.recorded = true;
  std::string net_text;
  trident::detail::for_each_line(info.metadata, [&](std::string_view line) {
    if (line.rfind("net.", 0) == 0) net_text += fmt::format("{}\n", line.substr(4));
  });
  out.net = parse_net_options(net_text, fmt::format("{}: '{}', entry 'metadata' (net.*)", caller, checkpoint));
  for (auto [key, size] : {std::pair{"min_size", &out.min_size}, std::pair{"max_size", &out.max_size}}) {
    const auto value = info.value(key);
    if (!value) continue;
    int64_t parsed = -1;
    const auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), parsed);
    TRIDENT_CHECK(ec == std::errc() && end == value->data() + value->size() && parsed >= 0,
                  "{}: '{}', entry 'metadata': {} must be an integer >= 0, got '{}'", caller, checkpoint, key, *value);
    *size = parsed;
  }
  return out;
}

}  // namespace trident::train
