#pragma once
// A numerical gradient checker reused by every differentiable piece of trident (ops, losses, layers):
// compares autograd's gradient of sum(f(x) * w) for a random weight w with central differences in double.
// The weights and the elements drawn come from the checker's own generator (seed given), never from LibTorch's
// default one, which starts from a nondeterministic seed: a check gives the same figures on every run. Each
// weight is +-[0.5, 1.5), so no output is weighted near zero (a scalar loss weighted 0.003 once made a
// gradient look absent).
#include <trident/config.hpp>

#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/where.h>
#include <ATen/ops/randperm.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/autograd.h>

#include <functional>

namespace trident::test {

struct GradcheckResult {
  double max_abs_error = 0;  ///< max |analytic - numeric|
  double max_abs_grad = 0;   ///< max |numeric|, for scale
};

/// f maps a double tensor to a tensor. x must be a double tensor; eps the finite-difference step.
/// max_elements > 0 checks that many elements of x, drawn at random (always including the element with the
/// largest analytic gradient), instead of all of them — for inputs too large for 2 * numel evaluations.
inline GradcheckResult gradcheck(const std::function<at::Tensor(const at::Tensor&)>& f, const at::Tensor& x,
                                 double eps = 1e-6, int64_t max_elements = 0, uint64_t seed = 20211010) {
  TRIDENT_CHECK(x.scalar_type() == at::kDouble, "gradcheck: x must be double, got {}",
                std::string(c10::toString(x.scalar_type())));
  auto xv = x.detach().clone().requires_grad_(true);
  const auto y0 = f(xv);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto y_cpu = y0.detach().to(at::kCPU, at::kDouble);
  const auto magnitude = at::rand(y_cpu.sizes(), gen, y_cpu.options()) + 0.5;
  const auto sign = at::rand(y_cpu.sizes(), gen, y_cpu.options()) < 0.5;
  const auto w = at::where(sign, -magnitude, magnitude).to(y0.device(), y0.scalar_type());
  const auto analytic = torch::autograd::grad({(y0 * w).sum()}, {xv})[0].detach();
  auto numeric = at::zeros_like(x);
  auto xd = x.detach().clone().contiguous();
  auto flat = xd.view({-1});
  auto num_flat = numeric.view({-1});
  auto checked = at::zeros({flat.numel()}, at::kBool);
  {
    at::NoGradGuard no_grad;
    at::Tensor chosen = at::arange(flat.numel(), at::kLong);
    if (max_elements > 0 && max_elements < flat.numel()) {
      chosen = at::randperm(flat.numel(), gen, at::TensorOptions(at::kLong)).narrow(0, 0, max_elements);
      chosen[0] = analytic.abs().reshape({-1}).argmax();
    }
    for (int64_t c = 0; c < chosen.numel(); ++c) {
      const int64_t i = chosen[c].item<int64_t>();
      checked[i] = true;
      const double orig = flat[i].item<double>();
      flat[i] = orig + eps;
      const double up = (f(xd) * w).sum().item<double>();
      flat[i] = orig - eps;
      const double down = (f(xd) * w).sum().item<double>();
      flat[i] = orig;
      num_flat[i] = (up - down) / (2 * eps);
    }
  }
  const auto mask = checked.view(x.sizes());
  return {(analytic - numeric).masked_select(mask).abs().max().item<double>(),
          numeric.masked_select(mask).abs().max().item<double>()};
}

}  // namespace trident::test
