#pragma once
/// \file trident/data/toy_scenes.hpp
/// Tiny in-memory person-search scenes for tests and short examples: coloured "people" (head, shirt,
/// trousers) whose identity is their pair of clothes colours, on a noisy background, with boxes and pids.
/// Deterministic from a seed. (The synthetic benchmark that goes through the real dataset readers is a
/// different thing: it renders a CUHK-SYSU-layout dataset on disk.)
#include <trident/config.hpp>
#include <trident/core/types.hpp>

#include <ATen/ops/rand.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#include <array>
#include <random>
#include <vector>

namespace trident::data {

struct ToyScenes {
  ImageBatch batch;
  std::vector<Target> targets;
};

/// `images` scenes of height x width with `per_image` people each, drawn from `identities` identities
/// (pid = identity; a draw equal to `identities` makes an unlabeled grey person). Pixel values lie in [0, 1].
inline ToyScenes make_toy_scenes(int images, int per_image, int identities, int64_t height = 128, int64_t width = 192,
                          uint32_t seed = 5) {
  TRIDENT_CHECK(images > 0 && per_image > 0 && identities > 0 && height >= 96 && width >= 40 * per_image,
                "trident::data::make_toy_scenes: need images, per_image, identities > 0 and an image of at least 96 x "
                "{} pixels, got {} images of {}x{} with {} people from {} identities",
                40 * per_image, images, height, width, per_image, identities);
  std::mt19937 rng(seed);
  const std::array<std::array<float, 3>, 8> palette{{{0.9f, 0.1f, 0.1f}, {0.1f, 0.3f, 0.9f}, {0.1f, 0.8f, 0.2f},
                                                     {0.9f, 0.8f, 0.1f}, {0.7f, 0.1f, 0.8f}, {0.1f, 0.8f, 0.8f},
                                                     {0.95f, 0.5f, 0.1f}, {0.2f, 0.2f, 0.2f}}};
  ToyScenes s;
  s.batch.images = at::zeros({images, 3, height, width});
  for (int i = 0; i < images; ++i) {
    auto img = s.batch.images[i];
    img.copy_(at::rand({3, height, width}) * 0.25 + 0.35);
    std::vector<float> boxes;
    std::vector<int64_t> pids;
    const int64_t slot = width / per_image;
    for (int p = 0; p < per_image; ++p) {
      const int id = static_cast<int>(rng() % static_cast<uint32_t>(identities + 1));
      const int64_t h = 60 + static_cast<int64_t>(rng() % 30), w = h * 2 / 5;
      const int64_t x = p * slot + static_cast<int64_t>(rng() % static_cast<uint32_t>(std::max<int64_t>(slot - w, 1)));
      const int64_t y = static_cast<int64_t>(rng() % static_cast<uint32_t>(height - h));
      const auto shirt = id == identities ? std::array<float, 3>{0.6f, 0.6f, 0.6f} : palette[id % 8];
      const auto trousers = id == identities ? std::array<float, 3>{0.5f, 0.5f, 0.5f} : palette[(id * 3 + 1) % 8];
      for (int c = 0; c < 3; ++c) {
        img[c].narrow(0, y, h / 6).narrow(1, x + w / 4, w / 2).fill_(0.85);  // head
        img[c].narrow(0, y + h / 6, h / 2 - h / 6).narrow(1, x, w).fill_(shirt[c]);
        img[c].narrow(0, y + h / 2, h - h / 2).narrow(1, x + w / 8, w - w / 4).fill_(trousers[c]);
      }
      boxes.insert(boxes.end(), {float(x), float(y), float(x + w), float(y + h)});
      pids.push_back(id == identities ? unlabeled_identity : id);
    }
    s.targets.push_back({at::tensor(boxes).view({per_image, 4}), at::tensor(pids)});
    s.batch.sizes.push_back({height, width});
  }
  return s;
}

}  // namespace trident::data
