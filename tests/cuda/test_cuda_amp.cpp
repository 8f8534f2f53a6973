// Mixed-precision inference of the paper's network against float32 on the same device (docs/cuda-tests.md,
// "Mixed-precision inference"): bfloat16 and float16 autocast with a channels-last input against float32 with TF32
// off, for the RoI pooler on reduced-precision features, the conv4 features and describe()'s embeddings, each
// within a stated tolerance. With TRIDENT_TEST_DEVICE=cpu (LibTorch 2.4 or later) CPU autocast stands in for
// CUDA's: it rounds the same operations (convolutions, linear layers) to the same types, which checks these tests
// and their tolerances without a GPU.
#include "cuda_support.hpp"

#include <trident/data/toy_scenes.hpp>
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>
#include <trident/ops/roi_align.hpp>
#include <trident/train/trainer.hpp>

#include <ATen/autocast_mode.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cdist.h>
#include <ATen/ops/eye.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

using namespace trident;
using cuda_test::relative_l2;
using cuda_test::report_skip;

#define TRIDENT_AMP_DEVICE_GENERIC_AUTOCAST (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))

namespace {

using Paper = PaperConfig<CuhkSysu>;

// Unit roundoff of round-to-nearest (half the relative spacing of the representable numbers): bfloat16 keeps 8
// significand bits, u = 2^-8 = 3.9e-3; float16 keeps 11, u = 2^-11 = 4.9e-4.
double unit_roundoff(at::ScalarType dtype) { return dtype == at::kBFloat16 ? 1.0 / 256 : 1.0 / 2048; }

// conv4 features (ResNet-50's conv1 .. conv4: 40 convolutions) under bfloat16 autocast: each convolution reads its
// input and weights rounded to bfloat16 and rounds its output to bfloat16, about 1.5 u of relative error per
// layer (u = 3.9e-3), independent from layer to layer; over 40 layers that adds up to sqrt(40) x 1.5 u = 3.7% at
// most where nothing averages out. Measured with CPU autocast (the same roundings) on this test's pictures and
// weights: 0.92% (float16: 0.12%). 4% is the estimate above and 4x the measurement.
constexpr double kStemRelL2Bf16 = 0.04;
// describe()'s re-id embeddings (unit rows, 256 = 2 x 128): per box, ||amp - fp32|| (for unit vectors
// sqrt(2 (1 - cos))). Measured with CPU autocast: bfloat16 0.0077 at most (cos 0.99997), float16 0.0009.
// Bounds: 4x the bfloat16 measurement, and a quarter of it for float16 (float16's u is 8x smaller; cuBLAS may
// reduce float16 and bfloat16 products in reduced precision, hence a factor 4, not 8). Why not "cos >= 0.99":
// with random weights the embeddings of different boxes share a large common component (ReLU features) and lie
// within cos 0.977 .. 0.999 of each other (measured: 0.034 .. 0.13 apart); cos >= 0.99 (a distance of 0.14) would
// accept another box's embedding. The test prints the smallest distance between two boxes' float32 embeddings
// and checks, besides the bound, that each box's embedding stays nearest to its own float32 embedding.
constexpr double kEmbeddingDistanceBf16 = 0.03;
constexpr double kEmbeddingDistanceFp16 = 0.0075;
// Any other describe() output (other configurations' branches): relative L2 error, the stem's bound scaled as the
// embeddings' (none in the paper configuration, whose only inference output is the embedding).
constexpr double kOtherRelL2Bf16 = 0.05;
constexpr double kOtherRelL2Fp16 = 0.0125;

/// Autocast to `dtype` for the scope: on CUDA through the trainer's AutocastScope; on the CPU (TRIDENT_TEST_DEVICE=cpu)
/// through LibTorch 2.4's device-generic calls, as a stand-in. available() says whether `device` has it here.
class AmpScope {
 public:
  AmpScope(const c10::Device& device, at::ScalarType dtype) : cuda_(device.is_cuda(), dtype) {
#if TRIDENT_AMP_DEVICE_GENERIC_AUTOCAST
    if (device.is_cpu()) {
      cpu_ = true;
      previous_enabled_ = at::autocast::is_autocast_enabled(at::kCPU);
      previous_dtype_ = at::autocast::get_autocast_dtype(at::kCPU);
      at::autocast::set_autocast_dtype(at::kCPU, dtype);
      at::autocast::set_autocast_enabled(at::kCPU, true);
    }
#endif
  }
  ~AmpScope() {
#if TRIDENT_AMP_DEVICE_GENERIC_AUTOCAST
    if (cpu_) {
      at::autocast::set_autocast_enabled(at::kCPU, previous_enabled_);
      at::autocast::set_autocast_dtype(at::kCPU, previous_dtype_);
      at::autocast::clear_cache();
    }
#endif
  }
  AmpScope(const AmpScope&) = delete;
  AmpScope& operator=(const AmpScope&) = delete;

  static bool available(const c10::Device& device) {
    return device.is_cuda() || (device.is_cpu() && TRIDENT_AMP_DEVICE_GENERIC_AUTOCAST);
  }

 private:
  train::detail::AutocastScope cuda_;
  [[maybe_unused]] bool cpu_ = false;
  [[maybe_unused]] bool previous_enabled_ = false;
  [[maybe_unused]] at::ScalarType previous_dtype_ = at::kBFloat16;
};

/// Skips (with the marker) where autocast cannot run on `device`; true when it can.
bool amp_available(const c10::Device& device) {
  if (AmpScope::available(device)) return true;
  report_skip("autocast on the CPU needs LibTorch 2.4 or later here (the stand-in for CUDA autocast); device " +
              device.str());
  return false;
}

/// Prints and records one measured error against its bound.
void report(const std::string& what, const std::string& metric, double value, double bound) {
  const auto line = fmt::format("trident-amp: {}: {} {:.3g} (bound {:.3g}, {:.0f}% of it)", what, metric, value, bound,
                                bound > 0 ? 100.0 * value / bound : 0.0);
  std::cout << line << std::endl;
  MESSAGE(line);
}

/// The paper's network from a fixed seed (random weights, frozen identity batch norms: the default options), in
/// eval mode on `device`, with two 384 x 576 toy pictures (three people each) and per picture the people's boxes
/// plus two fixed boxes, different in each picture (a large one across the picture and a small one). Activations stay within +-100 (conv4
/// at most 32, conv5 80, measured), far from float16's 65504.
struct PaperSetup {
  TridentNet<Paper> net;
  ImageBatch batch;
  std::vector<at::Tensor> boxes;
};

std::unique_ptr<PaperSetup> paper_setup(const c10::Device& device) {
  at::manual_seed(61);
  auto s = std::make_unique<PaperSetup>();
  s->net.to(device);
  s->net.eval();
  auto scenes = data::make_toy_scenes(2, 3, 6, 384, 576, 62);
  s->batch = ImageBatch{scenes.batch.images.to(device), scenes.batch.sizes};
  const std::vector<at::Tensor> extra{
      at::tensor({20.0f, 30.0f, 300.0f, 370.0f, 400.0f, 100.0f, 430.0f, 170.0f}).view({2, 4}),
      at::tensor({250.0f, 40.0f, 520.0f, 360.0f, 60.0f, 250.0f, 100.0f, 330.0f}).view({2, 4})};
  for (size_t i = 0; i < scenes.targets.size(); ++i)
    s->boxes.push_back(at::cat({scenes.targets[i].boxes, extra[i]}, 0).to(device));
  return s;
}

/// The same batch with its images in the channels-last layout.
ImageBatch channels_last(const ImageBatch& batch) {
  ImageBatch out{batch.images.contiguous(at::MemoryFormat::ChannelsLast), batch.sizes};
  REQUIRE(out.images.is_contiguous(at::MemoryFormat::ChannelsLast));
  return out;
}

bool finite(const at::Tensor& t) { return at::isfinite(t).all().item<bool>(); }

}  // namespace

TEST_CASE("amp: roi_align of bfloat16 / float16 features is float32 pooling of the rounded features, rounded once") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  // The pooler (24 x 8, stride 16, sampling ratio 2) on conv4-sized features of a 608 x 800 picture, 128 RoIs per
  // image. Features F reach it rounded to bfloat16 / float16 (|rnd(F) - F| <= u |F|); it pools in float32 and
  // rounds the result once (roi_align's contract for reduced-precision inputs, on the CPU and on CUDA). Pooling is
  // a weighted mean with weights >= 0 (bilinear taps), computed by the same code for both inputs, so elementwise
  //   |pool(rnd(F)) - pool(F)| <= u pool(|F|)            (the rounded inputs)
  //   |rnd(y) - y| <= u |y|                               (the output, y = pool(rnd(F)))
  //   => |out - ref| <= u (|ref| + A)(1 + u),  A = pool(|F|), plus float32 rounding: 1e-5 A + 1e-7 max A.
  // A rigorous bound, elementwise, for signed features too (A >= |ref|); nonnegative features (ReLU outputs, as
  // conv4's) have A = ref and a bound of 2u relative. Run under autocast, as in the network.
  const auto rois = cuda_test::person_rois(2, 128, 608, 800, 71).to(device);
  at::manual_seed(72);
  const auto options = at::TensorOptions().device(device);
  for (const bool signed_features : {false, true}) {
    const auto raw = at::randn({2, 256, 38, 50}, options);
    const auto features = signed_features ? raw * 10.0 : raw.relu();
    const auto ref = ops::roi_align(features, rois, {24, 8}, 1.0 / 16.0, 2, false);
    const auto a = ops::roi_align(features.abs(), rois, {24, 8}, 1.0 / 16.0, 2, false);
    for (const auto dtype : {at::kBFloat16, at::kHalf}) {
      const std::string what = fmt::format("roi_align, {} {} features", signed_features ? "signed" : "nonnegative",
                                           c10::toString(dtype));
      CAPTURE(what);
      const double u = unit_roundoff(dtype);
      at::Tensor out;
      if (AmpScope::available(device)) {
        AmpScope amp(device, dtype);
        out = ops::roi_align(features.to(dtype), rois, {24, 8}, 1.0 / 16.0, 2, false);
      } else {
        out = ops::roi_align(features.to(dtype), rois, {24, 8}, 1.0 / 16.0, 2, false);
      }
      cuda_test::check_on(out, device, what);
      CHECK_MESSAGE((out.scalar_type() == dtype), what, ": pooled in ", c10::toString(out.scalar_type()));
      REQUIRE(out.sizes() == ref.sizes());
      CHECK_MESSAGE(finite(out), what, ": not finite");
      const auto o = out.to(at::kDouble).cpu(), r = ref.to(at::kDouble).cpu(), s = a.to(at::kDouble).cpu();
      const double max_a = s.max().item<double>();
      const auto bound = (r.abs() + s) * (u * (1 + u)) + s * 1e-5 + max_a * 1e-7;
      const auto ratio = (o - r).abs() / bound;
      const int64_t outside = (ratio > 1).sum().item<int64_t>();
      const int64_t worst = ratio.reshape({-1}).argmax().item<int64_t>();
      report(what, "largest |out - ref| / bound", ratio.max().item<double>(), 1.0);
      MESSAGE(what, ": relative L2 error ", relative_l2(o, r), " (u = ", u, ")");
      CHECK_MESSAGE(outside == 0, what, ": ", outside, " of ", o.numel(), " elements outside u (|ref| + A)(1 + u); worst ",
                    "at flat index ", worst, ": ", o.reshape({-1})[worst].item<double>(), " vs ",
                    r.reshape({-1})[worst].item<double>(), " (A ", s.reshape({-1})[worst].item<double>(), ")");
    }
  }
}

TEST_CASE("amp: conv4 features under bfloat16 autocast with a channels-last input are within 4% of float32") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  if (!amp_available(device)) return;
  auto s = paper_setup(device);
  const at::NoGradGuard no_grad;
  at::Tensor ref, amp;
  {
    const cuda_test::Tf32Off tf32_off;  // the baseline: IEEE float32 products
    ref = s->net.stem()->forward(s->batch.images);
  }
  {
    const auto input = channels_last(s->batch).images;
    AmpScope scope(device, at::kBFloat16);
    amp = s->net.stem()->forward(input);
  }
  cuda_test::check_on(amp, device, "conv4 features");
  // Autocast really ran the convolutions in bfloat16 (else this compares float32 with itself).
  CHECK_MESSAGE((amp.scalar_type() == at::kBFloat16), "conv4 features under autocast are ",
                c10::toString(amp.scalar_type()));
  REQUIRE(amp.sizes() == ref.sizes());
  CHECK_MESSAGE(finite(amp), "conv4 features under bfloat16 autocast are not finite");
  MESSAGE("float32 conv4 features: max ", cuda_test::max_abs(ref));
  const double rel = relative_l2(amp, ref);
  report("conv4 features, bfloat16 autocast, channels-last input", "relative L2 error", rel, kStemRelL2Bf16);
  CHECK(rel <= kStemRelL2Bf16);
}

TEST_CASE("amp: describe() under bfloat16 / float16 autocast with a channels-last input stays close to float32") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  if (!amp_available(device)) return;
  auto s = paper_setup(device);
  const at::NoGradGuard no_grad;
  std::vector<RoiOutputs> ref;
  {
    const cuda_test::Tf32Off tf32_off;
    ref = s->net.describe(s->batch, s->boxes);
  }
  REQUIRE(ref.size() == 2);
  // Every box's float32 embedding, and how far apart those of two boxes are: a swapped or misplaced box would be
  // that far off.
  const auto embeddings = [](const std::vector<RoiOutputs>& outputs) {
    std::vector<at::Tensor> rows;
    for (const auto& r : outputs) rows.push_back(r.at("embedding").to(at::kDouble).cpu());
    return at::cat(rows, 0);
  };
  const auto ref_all = embeddings(ref);
  {
    const auto d = at::cdist(ref_all.unsqueeze(0), ref_all.unsqueeze(0)).squeeze(0) +
                   at::eye(ref_all.size(0), ref_all.options()) * 1e9;
    const double closest = d.min().item<double>();
    MESSAGE("the closest two boxes' float32 embeddings are ", closest, " apart");
    std::cout << "trident-amp: the closest two boxes' float32 embeddings are " << closest << " apart" << std::endl;
  }
  for (const auto dtype : {at::kBFloat16, at::kHalf}) {
    const std::string name = c10::toString(dtype);
    CAPTURE(name);
    const double embedding_bound = dtype == at::kBFloat16 ? kEmbeddingDistanceBf16 : kEmbeddingDistanceFp16;
    const double other_bound = dtype == at::kBFloat16 ? kOtherRelL2Bf16 : kOtherRelL2Fp16;
    std::vector<RoiOutputs> amp;
    {
      const auto batch = channels_last(s->batch);
      AmpScope scope(device, dtype);
      amp = s->net.describe(batch, s->boxes);
    }
    REQUIRE(amp.size() == ref.size());
    // Each box's embedding under autocast is nearest to its own float32 embedding among all boxes' (what a search
    // needs; it fails for a swapped box whatever the distances, and a rounding error would have to be several
    // times the distance between two boxes to move an embedding next to another box's in 256 dimensions).
    {
      const auto amp_all = embeddings(amp);
      REQUIRE(amp_all.sizes() == ref_all.sizes());
      const auto nearest = at::cdist(amp_all.unsqueeze(0), ref_all.unsqueeze(0)).squeeze(0).argmin(1);
      const auto own = at::arange(ref_all.size(0), nearest.options());
      const int64_t wrong = (nearest != own).sum().item<int64_t>();
      CHECK_MESSAGE(wrong == 0, name, " autocast: ", wrong, " of ", ref_all.size(0), " boxes' embeddings are nearer to "
                    "another box's float32 embedding than to their own (nearest: ", nearest, ")");
    }
    for (size_t i = 0; i < ref.size(); ++i) {
      REQUIRE(amp[i].size() == ref[i].size());
      for (const auto& [key, expected] : ref[i]) {
        REQUIRE(amp[i].count(key) == 1);
        const auto& actual = amp[i].at(key);
        const std::string what = fmt::format("describe() {} autocast, image {}, {}", name, i, key);
        cuda_test::check_on(actual, device, what);
        REQUIRE(actual.sizes() == expected.sizes());
        CHECK_MESSAGE(finite(actual), what, ": not finite");
        const auto a = actual.to(at::kDouble).cpu(), e = expected.to(at::kDouble).cpu();
        if (key == "embedding" && e.dim() == 2 && e.size(0) > 0) {
          // Per box: the distance relative to the float32 embedding's length (1: unit rows).
          const auto distance = (a - e).norm(2, {1}) / e.norm(2, {1});
          const auto cosine = (a * e).sum(1) / (a.norm(2, {1}) * e.norm(2, {1}));
          const double worst = distance.max().item<double>();
          report(what, "largest per-box distance", worst, embedding_bound);
          MESSAGE(what, ": smallest cosine similarity ", cosine.min().item<double>());
          CHECK_MESSAGE(worst <= embedding_bound, what, ": a box's embedding is ", worst, " from float32's (bound ",
                        embedding_bound, ")");
        } else {
          const double rel = relative_l2(a, e);
          report(what, "relative L2 error", rel, other_bound);
          CHECK(rel <= other_bound);
        }
      }
    }
  }
}

TEST_CASE("cuDNN epilogue fusion: the paper's stem and head equal the unfused folded path (float32, bfloat16)") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  if (!device.is_cuda()) {
    MESSAGE("cuDNN's fused convolutions are CUDA operators: nothing to compare on ", device.str());
    return;
  }
  // Inference of the ResNet-50 stem (conv1-conv4, every block's conv + shift + ReLU, conv3 + shortcut + ReLU)
  // and head (conv5) with backbone::set_cudnn_epilogue_fusion(true) against the same folded network unfused:
  // the same arithmetic, summed in cuDNN's fused kernels' order (and bf16-rounded once less per layer under
  // autocast, where the fused epilogue adds bias and residual before rounding). Relative L2 error over the
  // whole output: 1e-4 in float32 (TF32 off; ~50 layers of float32 reordering), 2e-2 in bfloat16.
  at::manual_seed(91);
  auto stem = backbone::ResNet50::make_stem();
  auto head = backbone::ResNet50::make_head();
  stem->to(device);
  head->to(device);
  stem->eval();
  head->eval();
  const auto images = at::randn({1, 3, 320, 480}, at::TensorOptions().device(device));
  const auto rois = at::randn({16, 1024, 24, 8}, at::TensorOptions().device(device)).relu();
  const at::NoGradGuard no_grad;
  for (const bool amp : {false, true}) {
    const train::detail::AutocastScope autocast(amp, at::kBFloat16);
    backbone::set_cudnn_epilogue_fusion(false);
    const auto stem_ref = stem->forward(images).to(at::kFloat);
    const auto head_ref = head->forward(rois).to(at::kFloat);
    backbone::set_cudnn_epilogue_fusion(true);
    at::Tensor stem_fused, head_fused;
    try {
      stem_fused = stem->forward(images).to(at::kFloat);
      head_fused = head->forward(rois).to(at::kFloat);
    } catch (const std::exception& e) {
      backbone::set_cudnn_epilogue_fusion(false);
      const std::string what = amp ? "bfloat16 autocast" : "float32";
      FAIL("cuDNN's fused convolution failed (", what, "): ", e.what());
    }
    backbone::set_cudnn_epilogue_fusion(false);
    const double tol = amp ? 2e-2 : 1e-4;
    const std::string what = amp ? "bfloat16 autocast" : "float32";
    const double stem_error = cuda_test::relative_l2(stem_fused, stem_ref);
    const double head_error = cuda_test::relative_l2(head_fused, head_ref);
    std::cout << "trident-amp: cuDNN epilogue fusion, " << what << ": stem " << stem_error << ", head " << head_error
              << " relative L2 (bound " << tol << ")" << std::endl;
    CHECK_MESSAGE(stem_error < tol, what, " stem");
    CHECK_MESSAGE(head_error < tol, what, " head");
    CHECK(stem_fused.min().item<float>() >= 0);  // the last ReLU is in the epilogue
  }
}
