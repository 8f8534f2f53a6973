// Configurations by name, the training recipes, NetOptions as text, and checkpoints that carry what rebuilds the
// network (train/configurations.hpp, train/recipe.hpp, model/options_text.hpp, train/checkpoint.hpp).
#include "support/fixtures.hpp"
#include "support/toy_training.hpp"

#include <trident/model/options_text.hpp>
#include <trident/train/checkpoint.hpp>
#include <trident/train/configurations.hpp>
#include <trident/train/recipe.hpp>
#include <trident/train/trainer.hpp>

#include <boost/hana/size.hpp>
#include <boost/hana/type.hpp>

#include <torch/optim/sgd.h>

#include <set>

using namespace trident;
using trident::test::check_error;

namespace {

std::vector<std::string> split_lines(std::string_view t) {
  std::vector<std::string> out;
  while (!t.empty()) {
    const auto end = t.find('\n');
    out.emplace_back(t.substr(0, end));
    t.remove_prefix(end == std::string_view::npos ? t.size() : end + 1);
  }
  return out;
}

/// NetOptions with every field away from its default.
NetOptions changed_everywhere() {
  NetOptions o;
  o.stem.frozen_up_to = backbone::FrozenUpTo::conv1;
  o.stem.norm = backbone::BatchNormMode::trainable;
  o.rpn.anchors.sizes = {16, 48.5};
  o.rpn.anchors.aspect_ratios = {0.25, 1.0 / 3.0};
  o.rpn.anchors.stride = 8;
  o.rpn.pre_nms_top_n_train = 11;
  o.rpn.post_nms_top_n_train = 12;
  o.rpn.pre_nms_top_n_test = 13;
  o.rpn.post_nms_top_n_test = 14;
  o.rpn.nms_threshold = 0.65;
  o.rpn.fg_iou_threshold = 0.75;
  o.rpn.bg_iou_threshold = 0.25;
  o.rpn.batch_size_per_image = 100;
  o.rpn.positive_fraction = 0.4;
  o.rpn.min_size = 2e-3;
  o.rpn.score_threshold = 0.01;
  o.sampler.fg_iou_threshold = 0.6;
  o.sampler.bg_iou_threshold = 0.1;
  o.sampler.batch_size_per_image = 77;
  o.sampler.positive_fraction = 0.3;
  o.sampler.add_ground_truth = false;
  o.sampler.box_coder_weights = {1, 2, 3, 4.5};
  o.pooler.spatial_scale = 0.125;
  o.pooler.sampling_ratio = 3;
  o.pooler.aligned = true;
  o.branches.reid_loss.tau_id = 0.1;
  o.branches.reid_loss.tau_bin = 1.5;
  o.branches.reid_loss.s_kappa = 0.9;
  o.branches.reid_loss.lambda_unlabeled = 0.2;
  o.branches.reid_loss.detach_mean_positive = false;
  o.branches.reid_embedding_norm = true;
  o.branches.memory.momentum = 0.7;
  o.branches.memory.queue_background = false;
  o.branches.part_loss.tau_part = 0.2;
  o.branches.part_loss.scores = losses::PartScores::probabilities;
  o.branches.detection_loss.box_beta = 1.0;
  o.branches.detection_loss.box_weight = 10.0;
  o.score_threshold = 0.45;
  o.nms_threshold = 0.35;
  o.detections_per_image = 99;
  o.min_box_size = 0.5;
  o.cuda_graphs = true;
  return o;
}

}  // namespace

TEST_CASE("NetOptions as text: every field is written, and reads back to the same options") {
  const NetOptions defaults;
  const NetOptions changed = changed_everywhere();
  const std::string text = net_options_text(changed);
  // One line per field, each differing from the defaults' line: no field is left out of the text.
  const auto lines = split_lines(text), default_lines = split_lines(net_options_text(defaults));
  REQUIRE(lines.size() == default_lines.size());
  CHECK(lines.size() == 42);
  for (size_t i = 0; i < lines.size(); ++i) CHECK_MESSAGE(lines[i] != default_lines[i], lines[i]);
  // Hand-picked lines, in the documented form.
  CHECK(text.find("stem.frozen_up_to = conv1\n") != std::string::npos);
  CHECK(text.find("rpn.anchors.aspect_ratios = 0.25, 0.3333333333333333\n") != std::string::npos);
  CHECK(text.find("sampler.box_coder_weights = 1, 2, 3, 4.5\n") != std::string::npos);
  CHECK(text.find("branches.part_loss.scores = probabilities\n") != std::string::npos);
  CHECK(text.find("sampler.add_ground_truth = false\n") != std::string::npos);
  // Read back: the same text, and the same values (doubles exactly).
  const NetOptions back = parse_net_options(text, "test");
  CHECK(net_options_text(back) == text);
  CHECK(back.rpn.anchors.aspect_ratios.at(1) == 1.0 / 3.0);
  CHECK(back.branches.part_loss.scores == losses::PartScores::probabilities);
  CHECK(back.sampler.box_coder_weights == std::array<double, 4>{1, 2, 3, 4.5});
  // Missing fields keep their defaults; comments and blank lines are skipped.
  const NetOptions partial = parse_net_options("# a comment\n\n  rpn.nms_threshold =  0.5 \n", "test");
  CHECK(partial.rpn.nms_threshold == 0.5);
  CHECK(net_options_text(partial) == net_options_text([] {
          NetOptions o;
          o.rpn.nms_threshold = 0.5;
          return o;
        }()));
}

TEST_CASE("NetOptions as text: an unknown name or a bad value is refused, naming the source, the field and the value") {
  NetOptions o;
  CHECK_THROWS_WITH_AS(set_net_option(o, "rpn.nms_treshold=0.5", "--net-option"),
                       "--net-option: there is no network option 'rpn.nms_treshold' (NetOptions; model/options_text.hpp "
                       "lists them)",
                       trident::Error);
  CHECK_THROWS_WITH_AS(set_net_option(o, "stem.frozen_up_to=layer9", "--net-option"),
                       "--net-option: network option 'stem.frozen_up_to' must be one of none, conv1, layer1, layer2, "
                       "layer3, got 'layer9'",
                       trident::Error);
  CHECK_THROWS_WITH_AS(set_net_option(o, "rpn.pre_nms_top_n_train=12.5", "--net-option"),
                       "--net-option: network option 'rpn.pre_nms_top_n_train' must be an integer, got '12.5'",
                       trident::Error);
  CHECK_THROWS_WITH_AS(set_net_option(o, "sampler.box_coder_weights=1,2,3", "--net-option"),
                       "--net-option: network option 'sampler.box_coder_weights' must be a comma-separated list of 4 "
                       "numbers, got '1,2,3'",
                       trident::Error);
  CHECK_THROWS_WITH_AS(set_net_option(o, "cuda_graphs=yes", "x"),
                       "x: network option 'cuda_graphs' must be true or false, got 'yes'", trident::Error);
  CHECK_THROWS_WITH_AS(set_net_option(o, "score_threshold", "x"), "x: expected 'name=value', got 'score_threshold'",
                       trident::Error);
  CHECK_THROWS_WITH_AS(parse_net_options("rpn.nms_threshold = 0.5\nrpn.min_size = tiny\n", "file.txt"),
                       "file.txt, line 2: network option 'rpn.min_size' must be a number, got 'tiny'", trident::Error);
  // Nothing was changed by the refused assignments.
  CHECK(net_options_text(o) == net_options_text(NetOptions{}));
  set_net_option(o, "branches.detection_loss.box_weight = 10", "x");
  CHECK(o.branches.detection_loss.box_weight == 10.0);
}

TEST_CASE("recipes: the paper's (Section 5.2) for CUHK-SYSU and PRW, and the main job's for the small configuration") {
  for (const auto& [dataset, epochs] : {std::pair{"cuhk-sysu", 14}, std::pair{"prw", 10}}) {
    CAPTURE(dataset);
    const auto r = train::paper_recipe(dataset);
    CHECK(r.name == std::string("paper-") + dataset);
    CHECK(r.trainer.epochs == epochs);
    CHECK(r.loader.batch_size == 4);  // the loader's own default is 2
    CHECK(r.trainer.optimizer == train::OptimizerKind::sgd);
    CHECK(r.trainer.momentum == 0.9);
    CHECK(r.trainer.weight_decay == 5e-4);
    CHECK(r.trainer.schedule.base_lr == 3e-3);
    CHECK(r.trainer.schedule.warmup_iterations == -1);  // one epoch, from 0
    CHECK(r.trainer.schedule.warmup_start_factor == 0.0);
    CHECK(r.trainer.schedule.milestones == std::vector<int64_t>{8});
    CHECK(r.trainer.schedule.gamma == 0.1);
    CHECK(r.loader.transform.min_size == 900);
    CHECK(r.loader.transform.max_size == 1500);
    CHECK(net_options_text(r.net) == net_options_text(NetOptions{}));  // the network's defaults are the paper's
  }
  CHECK_THROWS_WITH_AS(train::paper_recipe("market1501"),
                       "trident::train::paper_recipe: the paper trains on 'cuhk-sysu' or 'prw', got 'market1501'",
                       trident::Error);
  // The small recipe: what cmake/main-job.toml used to spell out (docs/training.md chose it).
  const auto s = train::small_recipe();
  CHECK(s.trainer.epochs == 12);
  CHECK(s.loader.batch_size == 4);
  CHECK(s.trainer.optimizer == train::OptimizerKind::adamw);
  CHECK(s.trainer.schedule.base_lr == 1e-3);
  CHECK(s.trainer.schedule.warmup_iterations == 30);
  CHECK(s.trainer.schedule.milestones == std::vector<int64_t>{10});
  CHECK(s.trainer.clip_grad_norm == 10.0);
  CHECK(s.net.sampler.batch_size_per_image == 32);
  CHECK(s.loader.transform.min_size == 0);  // the pictures' own size
  auto expected_net = small_net_options();
  expected_net.sampler.batch_size_per_image = 32;
  CHECK(net_options_text(s.net) == net_options_text(expected_net));
}

TEST_CASE("configurations by name: each name visits its type; an unknown name is refused with the known ones") {
  const auto list = train::example_configurations();
  static_assert(decltype(boost::hana::size(list))::value == 7);
  CHECK(train::configuration_names(list) ==
        "small, small-without-part, small-without-agwf, small-without-agwf-and-part, small-without-bin-and-un, "
        "paper-cuhk-sysu, paper-prw");
  // The type each name visits, told apart by what it builds: its branches' names and loss names, and the weighting.
  const auto describe = [&](std::string_view name) {
    return train::with_configuration(list, name, [](const auto& entry) {
      using Cfg = typename std::decay_t<decltype(entry)>::config;
      return fmt::format("{} {} lut {} recipe {}", Cfg::weighting::name, Cfg::backbone::stem_channels,
                         lut_rows_v<Cfg>, entry.recipe().name);
    });
  };
  CHECK(describe("small") == "agwf 256 lut 512 recipe small");
  CHECK(describe("small-without-agwf") == "plain_softmax 256 lut 512 recipe small");
  CHECK(describe("paper-prw") == "agwf 1024 lut 482 recipe paper-prw");
  CHECK(describe("paper-cuhk-sysu") == "agwf 1024 lut 5532 recipe paper-cuhk-sysu");
  // Each name visits exactly its type (the lambda is compiled for every entry, so the test is a run-time one).
  const auto is = [&](std::string_view name, auto type) {
    return train::with_configuration(list, name, [&](const auto& entry) {
      return std::is_same_v<typename std::decay_t<decltype(entry)>::config, typename decltype(type)::type>;
    });
  };
  CHECK(is("small", boost::hana::type_c<SmallCpuConfig>));
  CHECK(is("small-without-part", boost::hana::type_c<Ablated<SmallCpuConfig, ablation::WithoutPart>>));
  CHECK(is("small-without-agwf", boost::hana::type_c<Ablated<SmallCpuConfig, ablation::WithoutAgwf>>));
  CHECK(is("small-without-agwf-and-part",
           boost::hana::type_c<Ablated<SmallCpuConfig, ablation::WithoutAgwf, ablation::WithoutPart>>));
  CHECK(is("small-without-bin-and-un", boost::hana::type_c<Ablated<SmallCpuConfig, ablation::WithoutBinAndUn>>));
  CHECK(is("paper-prw", boost::hana::type_c<PaperConfig<Prw>>));
  CHECK(!is("paper-prw", boost::hana::type_c<PaperConfig<CuhkSysu>>));
  CHECK(train::configuration_name("paper", "prw") == "paper-prw");
  CHECK(train::configuration_name("paper", "json") == "paper-cuhk-sysu");
  CHECK(train::configuration_name("small-without-part", "prw") == "small-without-part");
  check_error([&] { describe("smal"); },
              {"trident::train::with_configuration: no configuration is named 'smal' (known: small, "
               "small-without-part,", "paper-prw)"});
}

TEST_CASE("a checkpoint records the configuration, the picture sizes and the network options: the network is "
          "rebuilt from it alone") {
  const auto dir = test::fresh_folder("configurations", "metadata");
  const auto list = train::example_configurations();
  // fit() writes TrainerOptions::metadata into every checkpoint (run_metadata: 02_train's form).
  NetOptions net = train::small_recipe().net;
  net.branches.part_loss.scores = losses::PartScores::probabilities;
  net.branches.detection_loss.box_weight = 10;
  test::Quadratic model;
  auto source = test::dummy_source(2);
  train::TrainerOptions o;
  o.epochs = 1;
  o.out_dir = dir.string();
  o.print_every = 0;
  o.configuration = "small-without-agwf";
  o.metadata = train::run_metadata(net, 192, 320, "small");
  train::fit(model, source, o);
  const std::string path = (dir / "checkpoint.pt").string();
  const auto info = train::checkpoint_info(path);
  CHECK(info.configuration == "small-without-agwf");
  CHECK(info.value("recipe") == std::optional<std::string>("small"));
  CHECK(info.value("min_size") == std::optional<std::string>("192"));
  CHECK(info.value("net.branches.part_loss.scores") == std::optional<std::string>("probabilities"));
  CHECK(!info.value("nothing").has_value());
  const auto trained = train::trained_network(list, path);
  CHECK(trained.recorded);
  CHECK(trained.configuration == "small-without-agwf");
  CHECK(trained.min_size == 192);
  CHECK(trained.max_size == 320);
  CHECK(net_options_text(trained.net) == net_options_text(net));
  // A resume records the resumed run's metadata.
  o.resume = true;
  o.epochs = 2;
  o.metadata = train::run_metadata(net, 100, 200, "small");
  train::fit(model, source, o);
  CHECK(train::checkpoint_info(path).value("min_size") == std::optional<std::string>("100"));
  CHECK(train::trained_network(list, path).max_size == 200);
  torch::optim::SGD sgd(model.parameters(), torch::optim::SGDOptions(0.1));

  // A checkpoint without metadata (written before trident recorded it): its configuration's recipe.
  train::TrainState bare;
  bare.configuration = "paper-prw";
  const std::string old_path = (dir / "old.pt").string();
  train::save_checkpoint(old_path, model, sgd, bare);
  const auto old = train::trained_network(list, old_path);
  CHECK(!old.recorded);
  CHECK(old.configuration == "paper-prw");
  CHECK(old.min_size == 900);
  CHECK(net_options_text(old.net) == net_options_text(NetOptions{}));
  // An unnamed checkpoint needs the name; a bad metadata value is refused by name.
  bare.configuration.clear();
  train::save_checkpoint(old_path, model, sgd, bare);
  check_error([&] { train::trained_network(list, old_path); },
              {"trident::train::trained_network: '" + old_path + "' names no configuration", "small, "});
  CHECK(train::trained_network(list, old_path, "small").configuration == "small");
  bare.configuration = "small";
  bare.metadata = "min_size = -3\n";
  train::save_checkpoint(old_path, model, sgd, bare);
  check_error([&] { train::trained_network(list, old_path); },
              {"'" + old_path + "', entry 'metadata': min_size must be an integer >= 0, got '-3'"});
  bare.metadata = "net.stem.norm = sometimes\n";
  train::save_checkpoint(old_path, model, sgd, bare);
  check_error([&] { train::trained_network(list, old_path); },
              {"entry 'metadata' (net.*), line 1: network option 'stem.norm' must be one of frozen, trainable, got "
               "'sometimes'"});
}
