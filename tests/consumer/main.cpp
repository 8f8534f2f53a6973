// A project that uses trident the way its users do, linking only trident::trident (LibTorch, Boost.Hana, fmt):
// the detection primitives, then the paper configuration (ResNet-50, RoIAlign 24 x 8, detection + re-id + part
// branches, AGWF) trained with train::fit on generated scenes, checkpointed, resumed, run with detect() and
// asked to rank a gallery. CTest builds it against the installed package, as a subdirectory, and once more with
// OpenCV, matio and nlohmann_json hidden (consumer.core_only: their headers are replaced by ones that #error).
#include <trident/trident.hpp>
#include <trident/data/toy_scenes.hpp>
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>
#include <trident/search/rank.hpp>
#include <trident/train/trainer.hpp>

#include <ATen/ops/isfinite.h>
#include <ATen/ops/tensor.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <vector>

using namespace trident;

int main(int argc, char** argv) {
  use_all_cores();
  const std::string out = argc > 1 ? argv[1] : "consumer-out";

  // 1. The primitives.
  const auto boxes = at::tensor({0.f, 0.f, 10.f, 10.f, 1.f, 1.f, 10.f, 10.f, 20.f, 20.f, 30.f, 30.f}).view({3, 4});
  const auto keep = ops::nms(boxes, at::tensor({0.9f, 0.8f, 0.7f}), 0.5);
  const auto pooled = roi::RoiAlignPooler<24, 8>{}(at::ones({1, 4, 16, 16}), std::vector<at::Tensor>{boxes});
  if (keep.numel() != 2 || pooled.size(2) != 24) {
    std::cerr << "trident consumer: unexpected primitives result\n";
    return 1;
  }

  // 2. The paper configuration, trained on generated scenes. Fewer proposals and sampled RoIs than the paper's
  //    (its values are NetOptions' defaults) keep an iteration of the full ResNet-50 at a few seconds on 2 cores.
  using Net = TridentNet<PaperConfig<CuhkSysu>>;
  NetOptions options;
  options.rpn.pre_nms_top_n_train = 200;
  options.rpn.post_nms_top_n_train = 32;
  options.rpn.pre_nms_top_n_test = 200;
  options.rpn.post_nms_top_n_test = 32;
  options.sampler.batch_size_per_image = 16;
  options.score_threshold = 0.0;  // report every detection: the network will have trained for two iterations
  at::manual_seed(1);
  const auto scenes = data::make_toy_scenes(4, 2, 6, 128, 192, 3);
  const auto batches = train::split_into_batches(scenes.batch, scenes.targets, 2);
  train::TrainerOptions to;
  to.epochs = 1;
  to.max_iterations = 1;
  to.schedule.warmup_iterations = 0;
  to.clip_grad_norm = 10.0;  // from random weights the first steps are rough (NAE and SeqNet clip at 10 too)
  to.out_dir = out;
  to.print_every = 0;
  std::filesystem::remove_all(out);
  Net net(options);
  train::InMemorySource source(batches, /*shuffle=*/true, /*seed=*/5);
  train::fit(net, source, to);
  to.max_iterations = -1;  // the rest of the epoch, resumed from the checkpoint by a fresh network
  to.resume = true;
  Net resumed(options);
  const auto summary = train::fit(resumed, source, to);
  if (summary.iterations != 2 || summary.resumed_from != 1) {
    std::cerr << "trident consumer: the resumed run did " << summary.iterations << " iterations from "
              << summary.resumed_from << "\n";
    return 1;
  }
  for (const auto& [name, value] : summary.last_losses)
    if (!std::isfinite(value)) {
      std::cerr << "trident consumer: loss " << name << " is " << value << "\n";
      return 1;
    }

  // 3. Inference and search: the detections of the first scene ranked by plain cosine for the first detection's
  //    own embedding: best first, and the best is (up to rounding) the query itself.
  resumed.eval();
  at::NoGradGuard no_grad;
  const auto found = resumed.detect({scenes.batch.images.narrow(0, 0, 1), {scenes.batch.sizes[0]}});
  const auto& d = found.at(0);
  if (d.boxes.size(0) == 0) {
    std::cerr << "trident consumer: no detections (non-finite parameters: "
              << [&] {
                   int64_t bad = 0;
                   for (const auto& p : resumed.parameters()) bad += p.numel() - p.isfinite().sum().template item<int64_t>();
                   return bad;
                 }()
              << ")\n";
    return 1;
  }
  const std::vector<GalleryDetections> gallery{{d.boxes, d.scores, d.outputs.at("embedding")}};
  const auto ranked = search::rank_gallery(d.outputs.at("embedding")[0], gallery,
                                           {.top_k = 3, .score_threshold = 0.0,
                                            .weighting = search::SimilarityWeighting::none});
  bool sorted = ranked.size() == static_cast<size_t>(std::min<int64_t>(3, d.boxes.size(0)));
  for (size_t i = 1; i < ranked.size(); ++i) sorted = sorted && ranked[i - 1].similarity >= ranked[i].similarity;
  if (!sorted || ranked.front().similarity < 1 - 1e-5) {
    std::cerr << "trident consumer: the ranking is not best-first or misses the query itself\n";
    return 1;
  }
  std::cout << "trident consumer: ok (trident " << trident::version << "; " << d.boxes.size(0)
            << " detections, best match similarity " << ranked.front().similarity << ")\n";
  return 0;
}
