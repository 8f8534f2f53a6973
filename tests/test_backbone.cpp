// The backbone policy: FrozenBatchNorm2d, the ResNet stem / head against torchvision (narrow networks with random
// weights, tests/fixtures/resnet_small.pt), the full-size networks' key lists and parameter counts, freezing, and
// the weight loader's errors.
#include "support/fixtures.hpp"

#include <trident/backbone/frozen_batch_norm.hpp>
#include <trident/backbone/resnet.hpp>
#include <trident/backbone/weights.hpp>

#include <ATen/ops/batch_norm.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>

#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

using namespace trident;
using namespace trident::backbone;
using trident::test::Fixture;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const Fixture& resnet_fixture() {
  static const Fixture fixture("resnet_small.pt");
  return fixture;
}

/// The state dict saved under "<prefix>." in the fixture, with the prefix removed.
io::TensorDict state_dict_of(const Fixture& f, const std::string& prefix) {
  io::TensorDict out;
  for (const auto& [key, value] : f.tensors) {
    if (key.rfind(prefix + ".", 0) == 0) out.emplace(key.substr(prefix.size() + 1), value);
  }
  return out;
}

/// The parameter count torchvision reports: FrozenBatchNorm2d keeps the affine weight and bias as buffers, where
/// torchvision's BatchNorm2d has parameters, so those are added.
int64_t torchvision_parameter_count(const ResNetStem& stem, const ResNetHead& head) {
  int64_t n = 0;
  for (const torch::nn::Module* m :
       {static_cast<const torch::nn::Module*>(stem.get()), static_cast<const torch::nn::Module*>(head.get())}) {
    for (const auto& p : m->parameters()) n += p.numel();
    for (const auto& b : m->named_buffers()) {
      if (ends_with(b.key(), ".weight") || ends_with(b.key(), ".bias")) n += b.value().numel();
    }
  }
  return n;
}

/// "conv1.weight:64x3x7x7,bn1.num_batches_tracked:,..." (written by the fixture script) -> a state dict whose tensors
/// have those shapes (zeros, expanded from one element so that ResNet-101's costs no memory).
io::TensorDict state_dict_from_key_list(const at::Tensor& chars) {
  const std::string text(chars.data_ptr<uint8_t>(), chars.data_ptr<uint8_t>() + chars.numel());
  io::TensorDict out;
  std::stringstream entries(text);
  for (std::string entry; std::getline(entries, entry, ',');) {
    const auto colon = entry.find(':');
    std::vector<int64_t> shape;
    std::stringstream dims(entry.substr(colon + 1));
    for (std::string d; std::getline(dims, d, 'x');) shape.push_back(std::stoll(d));
    out.emplace(entry.substr(0, colon), at::zeros({}).expand(shape));
  }
  return out;
}

template <class Policy>
void check_against_torchvision(const std::string& prefix) {
  const auto& f = resnet_fixture();
  const auto weights = state_dict_of(f, prefix);
  auto stem = Policy::make_stem();
  auto head = Policy::make_head();
  const auto report = load_torchvision_weights(weights, stem, head, f.path);
  int64_t counters = 0;
  for (const auto& entry : weights) counters += ends_with(entry.first, ".num_batches_tracked");
  CHECK(report.loaded == static_cast<int64_t>(weights.size()) - counters);
  CHECK(report.ignored == counters);
  CHECK(torchvision_parameter_count(stem, head) == f[prefix + "_parameter_count"].item<int64_t>());

  at::NoGradGuard no_grad;
  const auto features = stem(f["image"]);
  CHECK(features.size(1) == Policy::stem_channels);
  TRIDENT_CHECK_CLOSE(features, f[prefix + "_stem"], 1e-4);
  const auto head_out = head(f[prefix + "_stem"]);
  CHECK(head_out.size(1) == Policy::head_channels);
  TRIDENT_CHECK_CLOSE(head_out, f[prefix + "_head"], 1e-4);

  // eval(): each batch norm folded into its convolution, channels-last (the default) -- and with folding off,
  // layer by layer -- both against torchvision's outputs.
  stem->eval();
  head->eval();
  for (const bool fold : {true, false}) {
    CAPTURE(fold);
    set_batch_norm_folding(*stem, fold ? Folding::inference : Folding::off);
    set_batch_norm_folding(*head, fold ? Folding::inference : Folding::off);
    const auto eval_features = stem(f["image"]);
    const auto eval_head = head(f[prefix + "_stem"]);
    CHECK(eval_features.is_contiguous(at::MemoryFormat::ChannelsLast) == fold);
    CHECK(eval_head.is_contiguous(at::MemoryFormat::ChannelsLast) == fold);
    TRIDENT_CHECK_CLOSE(eval_features, f[prefix + "_stem"], 1e-4);
    TRIDENT_CHECK_CLOSE(eval_head, f[prefix + "_head"], 1e-4);
  }
}

/// The names of the parameters whose requires_grad is `flag`.
std::vector<std::string> parameters_with_requires_grad(const torch::nn::Module& m, bool flag) {
  std::vector<std::string> names;
  for (const auto& p : m.named_parameters()) {
    if (p.value().requires_grad() == flag) names.push_back(p.key());
  }
  return names;
}

bool all_start_with_one_of(const std::vector<std::string>& names, const std::vector<std::string>& prefixes) {
  for (const auto& n : names) {
    bool ok = false;
    for (const auto& p : prefixes) ok = ok || n.rfind(p, 0) == 0;
    if (!ok) return false;
  }
  return true;
}

/// Gives every batch norm of `m` a non-trivial affine map (they start as the identity), whether its weight and
/// bias are parameters (trainable) or buffers (frozen): folding them must then change the convolutions' weights.
void randomise_batch_norms(torch::nn::Module& m) {
  at::NoGradGuard no_grad;
  auto randomise = [](const std::string& key, at::Tensor& t) {
    if (t.dim() != 1) return;  // convolution weights are 4-d; num_batches_tracked is 0-d
    if (ends_with(key, "running_mean") || ends_with(key, "bias")) t.uniform_(-0.2, 0.2);
    if (ends_with(key, "running_var") || ends_with(key, "weight")) t.uniform_(0.5, 1.5);
  };
  for (auto& b : m.named_buffers()) randomise(b.key(), b.value());
  for (auto& p : m.named_parameters()) randomise(p.key(), p.value());
}

}  // namespace

TEST_CASE("FrozenBatchNorm2d is eval-mode batch norm with buffers only") {
  FrozenBatchNorm2d bn(5);
  CHECK(bn->parameters().empty());
  CHECK(bn->named_buffers().size() == 4);
  bn->weight.copy_(at::rand({5}) + 0.5);
  bn->bias.copy_(at::randn({5}));
  bn->running_mean.copy_(at::randn({5}));
  bn->running_var.copy_(at::rand({5}) + 0.1);
  const auto x = at::randn({3, 5, 4, 6});
  const auto expected = at::batch_norm(x, bn->weight, bn->bias, bn->running_mean, bn->running_var,
                                       /*training=*/false, 0.1, 1e-5, /*cudnn_enabled=*/false);
  bn->train();  // frozen: training mode changes nothing
  TRIDENT_CHECK_CLOSE(bn(x), expected, 1e-5);
  CHECK_THROWS_WITH_AS(bn(at::randn({3, 4, 4, 6})),
                       "trident::backbone::FrozenBatchNorm2d::forward: x must be [N, 5, H, W], got [3, 4, 4, 6]",
                       trident::Error);
  CHECK_THROWS_WITH_AS(FrozenBatchNorm2d(0),
                       "trident::backbone::FrozenBatchNorm2d: num_features must be positive, got 0", trident::Error);
}

TEST_CASE("ResNetSmall (Bottleneck) matches torchvision with the same weights") {
  static_assert(ResNetSmall::stem_channels == 256 && ResNetSmall::head_channels == 512);
  check_against_torchvision<ResNetSmall>("small");
}

TEST_CASE("a BasicBlock ResNet matches torchvision with the same weights") {
  using Basic = ResNet<BasicBlock, 2, 1, 1, 1, 8>;
  static_assert(Basic::stem_channels == 32 && Basic::head_channels == 64);
  check_against_torchvision<Basic>("basic");
}

TEST_CASE("folded batch norms: trainable ones fold their running statistics in eval() only") {
  at::manual_seed(11);
  auto stem = ResNetSmall::make_stem({.frozen_up_to = FrozenUpTo::none, .norm = BatchNormMode::trainable});
  randomise_batch_norms(*stem);
  const auto images = at::randn({2, 3, 64, 96});
  // Training mode: batch statistics, never folded (the running statistics move, so a folded map would be wrong).
  CHECK_FALSE(stem->forward(images).is_contiguous(at::MemoryFormat::ChannelsLast));
  stem->eval();
  set_batch_norm_folding(*stem, Folding::off);
  at::Tensor layer_by_layer, folded;
  {
    at::NoGradGuard no_grad;
    layer_by_layer = stem->forward(images);
    set_batch_norm_folding(*stem, Folding::always);  // trainable batch norms: eval() folds, train() never
    folded = stem->forward(images);
  }
  CHECK(folded.is_contiguous(at::MemoryFormat::ChannelsLast));
  CHECK(layer_by_layer.abs().max().item<double>() > 0.1);  // not a vacuous comparison
  TRIDENT_CHECK_CLOSE(folded, layer_by_layer, 1e-4);
  {
    // The folded weights are kept between no-grad forwards, and never stale: change a running statistic and a
    // convolution weight in place (as a loaded checkpoint or an optimizer step does), and the next forward
    // follows them.
    at::NoGradGuard no_grad;
    auto& block = *stem->layer2[1]->as<BottleneckImpl>();
    block.bn2->running_var.mul_(3.0);
    block.conv3->weight.mul_(-0.5);
    stem->bn1->running_mean.add_(0.3);
    const auto refolded = stem->forward(images);
    set_batch_norm_folding(*stem, Folding::off);
    const auto changed = stem->forward(images);
    set_batch_norm_folding(*stem, Folding::always);
    CHECK(test::max_abs_diff(changed, layer_by_layer) > 1e-2);  // the change matters
    TRIDENT_CHECK_CLOSE(refolded, changed, 1e-4);
    // a new tensor in place of a weight (new storage) is seen too
    block.conv1->weight.set_data(block.conv1->weight.detach().clone() * 2);
    const auto replaced = stem->forward(images);
    set_batch_norm_folding(*stem, Folding::off);
    TRIDENT_CHECK_CLOSE(replaced, stem->forward(images), 1e-4);
    set_batch_norm_folding(*stem, Folding::always);
  }
  stem->train();
  CHECK_FALSE(stem->forward(images).is_contiguous(at::MemoryFormat::ChannelsLast));
  stem->eval();
  // With autograd on, the folded form is differentiable in the weights (the gradient flows through the scaled
  // weights to the convolution's weight).
  stem->layer3[0]->as<BottleneckImpl>()->conv1->weight.mutable_grad() = at::Tensor();
  stem->forward(images).sum().backward();
  CHECK(stem->layer3[0]->as<BottleneckImpl>()->conv1->weight.grad().defined());
}

TEST_CASE("Folding::always: frozen batch norms fold in training too, with the same outputs and gradients") {
  at::manual_seed(12);
  auto head = ResNetSmall::make_head();  // frozen batch norms
  randomise_batch_norms(*head);
  const auto rois = at::randn({6, ResNetSmall::stem_channels, 12, 4});
  auto forward_backward = [&](Folding folding) {
    set_batch_norm_folding(*head, folding);
    for (auto& p : head->parameters()) p.mutable_grad() = at::Tensor();
    const auto y = head->forward(rois);
    (y * y).sum().backward();
    std::vector<at::Tensor> grads;
    for (auto& p : head->parameters()) grads.push_back(p.grad().clone());
    return std::pair{y.detach(), grads};
  };
  const auto [y_off, g_off] = forward_backward(Folding::inference);  // train() mode: not folded
  const auto [y_on, g_on] = forward_backward(Folding::always);
  CHECK(y_on.is_contiguous(at::MemoryFormat::ChannelsLast));
  CHECK_FALSE(y_off.is_contiguous(at::MemoryFormat::ChannelsLast));
  // no RoIs at all (an image without detections), in both layouts
  for (const auto format : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {
    const auto none = head->forward(at::zeros({0, ResNetSmall::stem_channels, 12, 4}).contiguous(format));
    CHECK(none.sizes() == at::IntArrayRef({0, ResNetSmall::head_channels, 6, 2}));
  }
  TRIDENT_CHECK_CLOSE(y_on, y_off, 1e-4);
  REQUIRE(g_on.size() == g_off.size());
  for (size_t i = 0; i < g_on.size(); ++i) {
    CAPTURE(i);
    const double scale = g_off[i].abs().max().item<double>();
    CHECK(scale > 0);
    TRIDENT_CHECK_CLOSE(g_on[i] / scale, g_off[i] / scale, 1e-4);
  }
}

TEST_CASE("ResNet50: shapes, parameter count and torchvision's key list") {
  static_assert(ResNet50::stem_channels == 1024 && ResNet50::head_channels == 2048 && ResNet50::stem_stride == 16);
  const auto& f = resnet_fixture();
  auto stem = ResNet50::make_stem();
  auto head = ResNet50::make_head();
  CHECK(torchvision_parameter_count(stem, head) == f["resnet50_parameter_count"].item<int64_t>());
  {
    at::NoGradGuard no_grad;
    CHECK(stem(at::randn({1, 3, 224, 160})).sizes() == at::IntArrayRef({1, 1024, 14, 10}));
    CHECK(head(at::randn({2, 1024, 24, 8})).sizes() == at::IntArrayRef({2, 2048, 12, 4}));
  }
  // Strict loading of a dict with torchvision's names and shapes proves both sets are equal.
  const auto dict = state_dict_from_key_list(f["resnet50_keys"]);
  const auto report = load_torchvision_weights(dict, stem, head, "resnet50_keys");
  int64_t fc = 0, counters = 0;
  for (const auto& entry : dict) {
    fc += entry.first.rfind("fc.", 0) == 0;
    counters += ends_with(entry.first, ".num_batches_tracked");
  }
  CHECK(fc == 2);
  CHECK(report.ignored == fc + counters);
  CHECK(report.loaded == static_cast<int64_t>(dict.size()) - fc - counters);
  CHECK(stem->conv1->weight.abs().max().item<float>() == 0.0f);  // the zeros were copied
}

TEST_CASE("ResNet18 and ResNet101 have torchvision's keys and parameter counts") {
  const auto& f = resnet_fixture();
  auto check = [&](const std::string& name, const ResNetStem& stem, const ResNetHead& head) {
    INFO(name);
    CHECK(torchvision_parameter_count(stem, head) == f[name + "_parameter_count"].item<int64_t>());
    const auto dict = state_dict_from_key_list(f[name + "_keys"]);
    const auto report = load_torchvision_weights(dict, stem, head, name);
    CHECK(report.loaded + report.ignored == static_cast<int64_t>(dict.size()));
  };
  check("resnet18", ResNet18::make_stem(), ResNet18::make_head());
  check("resnet101", ResNet101::make_stem(), ResNet101::make_head());
}

TEST_CASE("freezing: conv1 and layer1 by default, batch norms always") {
  auto stem = ResNetSmall::make_stem();
  auto head = ResNetSmall::make_head();
  CHECK(stem->frozen_up_to() == FrozenUpTo::layer1);
  const auto frozen = parameters_with_requires_grad(*stem, false);
  const auto trainable = parameters_with_requires_grad(*stem, true);
  CHECK(frozen.size() == 1 + 2 * 3 + 1);  // conv1, two blocks of three convolutions, one projection
  CHECK(all_start_with_one_of(frozen, {"conv1.", "layer1."}));
  CHECK(!trainable.empty());
  CHECK(all_start_with_one_of(trainable, {"layer2.", "layer3."}));
  CHECK(parameters_with_requires_grad(*head, false).empty());
  for (const auto& p : stem->named_parameters()) CHECK_MESSAGE(p.value().dim() == 4, p.key());  // convolutions only

  // Gradients reach layer2 but not layer1; the frozen batch norms get none.
  auto features = stem(at::randn({1, 3, 64, 48}));
  head(features).sum().backward();
  CHECK(!stem->conv1->weight.grad().defined());
  CHECK(!stem->layer1->named_parameters()["0.conv1.weight"].grad().defined());
  CHECK(stem->layer2->named_parameters()["0.conv1.weight"].grad().defined());
  CHECK(head->layer4->named_parameters()["1.conv3.weight"].grad().defined());
  CHECK(!stem->bn1->weight.requires_grad());

  stem->set_frozen_up_to(FrozenUpTo::none);
  CHECK(parameters_with_requires_grad(*stem, false).empty());
  stem->set_frozen_up_to(FrozenUpTo::layer3);
  CHECK(parameters_with_requires_grad(*stem, true).empty());
  auto conv1_only = ResNetSmall::make_stem({.frozen_up_to = FrozenUpTo::conv1});
  CHECK(parameters_with_requires_grad(*conv1_only, false) == std::vector<std::string>{"conv1.weight"});

  // SeqNet's and NAE's choice: conv1 and bn1's scale and shift frozen, every other batch norm trained, and bn1
  // still normalising with the batch's statistics in train() (its running mean moves, its scale gets no gradient).
  auto references = ResNetSmall::make_stem({.frozen_up_to = FrozenUpTo::conv1, .norm = BatchNormMode::trainable});
  CHECK(parameters_with_requires_grad(*references, false) ==
        std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias"});
  references->train();
  const auto running_before = references->bn1->running_mean.clone();
  references(at::randn({2, 3, 64, 48})).sum().backward();
  CHECK(references->bn1->running_mean.sub(running_before).abs().max().item<double>() > 0);
  CHECK(!references->bn1->weight.grad().defined());
  CHECK(references->layer1->named_parameters()["0.bn1.weight"].grad().defined());
  references->set_frozen_up_to(FrozenUpTo::none);
  CHECK(parameters_with_requires_grad(*references, false).empty());
  CHECK_THROWS_WITH_AS(
      stem->set_frozen_up_to(static_cast<FrozenUpTo>(7)),
      "trident::backbone::ResNetStem::set_frozen_up_to: stage must be a FrozenUpTo value (0..4), got 7",
      trident::Error);
}

TEST_CASE("load_torchvision_weights: errors name the file, the key and the shapes, and load nothing") {
  const auto& f = resnet_fixture();
  const auto good = state_dict_of(f, "small");
  auto stem = ResNetSmall::make_stem();
  auto head = ResNetSmall::make_head();
  const auto before = stem->conv1->weight.clone();
  const std::string fn = "trident::backbone::load_torchvision_weights: ";

  auto missing = good;
  missing.erase("layer2.1.conv2.weight");
  CHECK_THROWS_WITH_AS(load_torchvision_weights(missing, stem, head, "small.pt"),
                       (fn + "'small.pt' has no tensor 'layer2.1.conv2.weight' (expected [32, 32, 3, 3])").c_str(),
                       trident::Error);
  missing.erase("layer4.0.downsample.1.running_var");
  CHECK_THROWS_WITH_AS(load_torchvision_weights(missing, stem, head, "small.pt"),
                       (fn + "'small.pt' has no tensor 'layer2.1.conv2.weight' (expected [32, 32, 3, 3]) and 1 more "
                             "missing keys")
                           .c_str(),
                       trident::Error);

  auto wrong_shape = good;
  wrong_shape["layer3.0.bn2.bias"] = at::zeros({63});
  CHECK_THROWS_WITH_AS(load_torchvision_weights(wrong_shape, stem, head, "small.pt"),
                       (fn + "'small.pt': 'layer3.0.bn2.bias' has shape [63], expected [64]").c_str(), trident::Error);

  auto extra = good;
  extra["layer3.2.conv1.weight"] = at::zeros({64, 256, 1, 1});
  CHECK_THROWS_WITH_AS(
      load_torchvision_weights(extra, stem, head, "small.pt"),
      (fn + "'small.pt' has 'layer3.2.conv1.weight' [64, 256, 1, 1], which this ResNet lacks (a different depth or "
            "width?)")
          .c_str(),
      trident::Error);

  auto integer = good;
  integer["conv1.weight"] = at::zeros({16, 3, 7, 7}, at::kLong);
  CHECK_THROWS_WITH_AS(load_torchvision_weights(integer, stem, head, "small.pt"),
                       (fn + "'small.pt': 'conv1.weight' has dtype Long, expected a floating-point tensor").c_str(),
                       trident::Error);

  // ResNet-50's keys into the small policy: every shape differs, the first is reported with a count.
  const auto resnet50 = state_dict_from_key_list(f["resnet50_keys"]);
  CHECK_THROWS_WITH_AS(
      load_torchvision_weights(resnet50, stem, head, "resnet50.pt"),
      doctest::Contains("'resnet50.pt': 'conv1.weight' has shape [64, 3, 7, 7], expected [16, 3, 7, 7] ("),
      trident::Error);

  CHECK(stem->conv1->weight.equal(before));  // none of the failed loads copied anything
  CHECK_THROWS_WITH_AS(load_torchvision_weights("/nonexistent/resnet50.pt", stem, head),
                       "trident::io::load_tensor_dict: cannot open '/nonexistent/resnet50.pt'", trident::Error);
}

TEST_CASE("stem and head name their expected input in errors") {
  auto stem = ResNetSmall::make_stem();
  auto head = ResNetSmall::make_head();
  CHECK_THROWS_WITH_AS(stem(at::zeros({1, 4, 32, 32})),
                       "trident::backbone::ResNetStem::forward: images must be [N, 3, H, W], got [1, 4, 32, 32]",
                       trident::Error);
  CHECK_THROWS_WITH_AS(
      head(at::zeros({2, 128, 24, 8})),
      "trident::backbone::ResNetHead::forward: RoI features must be [K, 256, h, w], got [2, 128, 24, 8]",
      trident::Error);
  CHECK_THROWS_WITH_AS(Bottleneck(16, 8, 3), "trident::backbone::Bottleneck: stride must be 1 or 2, got 3",
                       trident::Error);
}

TEST_CASE("ImageNet ResNet-50 weights from $TRIDENT_RESNET50_WEIGHTS (skipped when unset)") {
  const char* path = std::getenv("TRIDENT_RESNET50_WEIGHTS");
  if (path == nullptr || *path == '\0') {
    MESSAGE("SKIPPED: set TRIDENT_RESNET50_WEIGHTS to a file written as trident/backbone/weights.hpp describes");
    return;
  }
  auto stem = ResNet50::make_stem();
  auto head = ResNet50::make_head();
  const auto report = load_torchvision_weights(std::string(path), stem, head);
  const auto keys = state_dict_from_key_list(resnet_fixture()["resnet50_keys"]);
  CHECK(report.loaded + report.ignored == static_cast<int64_t>(keys.size()));
  at::NoGradGuard no_grad;
  const auto features = stem(at::randn({1, 3, 128, 96}));
  CHECK(at::isfinite(features).all().item<bool>());
  CHECK(features.abs().max().item<float>() > 0.0f);
}
