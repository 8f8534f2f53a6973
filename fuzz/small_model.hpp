#pragma once
// The module the checkpoint harness loads into and make_corpus.cpp saves: a parameter, a buffer, a submodule.
#include <torch/torch.h>

namespace trident::fuzz {

struct SmallModel : torch::nn::Module {
  SmallModel() {
    weight = register_parameter("weight", torch::zeros({3, 2}));
    running = register_buffer("running", torch::zeros({3}));
    inner = register_module("inner", torch::nn::Linear(2, 2));
  }
  torch::Tensor weight, running;
  torch::nn::Linear inner{nullptr};
};

}  // namespace trident::fuzz
