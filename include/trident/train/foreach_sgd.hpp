#pragma once
/// \file trident/train/foreach_sgd.hpp
/// trident::train::ForeachSgd: torch::optim::SGD whose step updates all parameters of a group with LibTorch's
/// multi-tensor ("foreach") operations instead of a loop of per-parameter operations.
///
/// The arithmetic per element is SGD's, operation for operation: d = grad + weight_decay * p; the momentum buffer
/// starts as a copy of d and then becomes momentum * buf + (1 - dampening) * d; d = buf (or d + momentum * buf with
/// Nesterov); p -= lr * d. On the CPU the foreach operations run the same per-tensor kernels, so the parameters
/// and buffers are bit-identical to torch::optim::SGD's (tested); on CUDA a step is a handful of kernel launches
/// instead of about five per parameter (the paper network has 58 trainable tensors: ~350 launches per step in a
/// host-bound training iteration). The state (SGDParamState's momentum buffers) and its serialisation are
/// SGD's own: checkpoints move freely between the two. Unlike torch::optim::SGD, the step writes the parameters
/// themselves rather than their .data(), so their version counters advance (trident's caches of derived weights
/// watch them; see train::mark_parameters_updated).
#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_foreach_mul.h>
#include <c10/core/GradMode.h>
#include <torch/optim/sgd.h>

#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace trident::train {

class ForeachSgd : public torch::optim::SGD {
 public:
  using torch::optim::SGD::SGD;

  at::Tensor step(LossClosure closure = nullptr) override {
    at::Tensor loss;
    if (closure != nullptr) {
      const at::AutoGradMode enable_grad(true);
      loss = closure();
    }
    const at::NoGradGuard no_grad;
    for (auto& group : param_groups()) {
      const auto& o = static_cast<const torch::optim::SGDOptions&>(group.options());
      std::vector<at::Tensor> params, grads;
      for (auto& p : group.params()) {
        if (!p.grad().defined()) continue;
        params.push_back(p);
        grads.push_back(p.grad());
      }
      if (params.empty()) continue;
      auto d = o.weight_decay() != 0 ? at::_foreach_add(grads, params, o.weight_decay()) : grads;
      if (o.momentum() != 0) {
        std::vector<at::Tensor> buffers(params.size()), old_buffers, old_d;
        for (size_t i = 0; i < params.size(); ++i) {
          const auto key = state_key(state_, params[i]);
          auto found = state_.find(key);
          if (found == state_.end()) {  // the first step: the buffer is a copy of d
            buffers[i] = d[i].clone().detach();
            auto state = std::make_unique<torch::optim::SGDParamState>();
            state->momentum_buffer(buffers[i]);
            state_[key] = std::move(state);
          } else {
            buffers[i] = static_cast<torch::optim::SGDParamState&>(*found->second).momentum_buffer();
            old_buffers.push_back(buffers[i]);
            old_d.push_back(d[i]);
          }
        }
        if (!old_buffers.empty()) {
          at::_foreach_mul_(old_buffers, o.momentum());
          at::_foreach_add_(old_buffers, old_d, 1 - o.dampening());
        }
        d = o.nesterov() ? at::_foreach_add(d, buffers, o.momentum()) : buffers;
      }
      at::_foreach_add_(params, d, -1 * o.lr());
    }
    return loss;
  }

  /// The momentum buffer of parameter `p`; undefined before its first step.
  at::Tensor momentum_buffer(const at::Tensor& p) const {
    const auto found = state_.find(state_key(state_, p));
    if (found == state_.end()) return {};
    return static_cast<const torch::optim::SGDParamState&>(*found->second).momentum_buffer();
  }

 private:
  /// The optimizer state's key of a parameter, as torch::optim::SGD spells it (LibTorch 1.13: the address as
  /// text; 2.x: the address). A template, so that only the branch of the LibTorch at hand is compiled.
  template <class StateMap>
  static typename StateMap::key_type state_key(const StateMap&, const at::Tensor& p) {
    using Key = typename StateMap::key_type;
    if constexpr (std::is_same_v<Key, std::string>) {
      std::ostringstream text;
      text << p.unsafeGetTensorImpl();
      return text.str();
    } else {
      return static_cast<Key>(p.unsafeGetTensorImpl());
    }
  }
};

}  // namespace trident::train
