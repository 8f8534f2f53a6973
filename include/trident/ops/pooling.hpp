#pragma once
/// \file trident/ops/pooling.hpp
/// Max pooling of horizontal strips: g-hat and g (one strip, the global max of a RoI's map) and the part
/// branch's N_p strips of the conv5 map.
#include <ATen/core/Tensor.h>
#include <ATen/ops/adaptive_max_pool2d.h>
#include <ATen/ops/max.h>

#include <cstdint>
#include <tuple>

namespace trident::ops {

/// The max over each of `strips` horizontal strips of `x` [K, C, H, W]: [K, C, strips, 1], as
/// at::adaptive_max_pool2d(x, {strips, 1}) (strip j covers rows [floor(j H / strips), ceil((j + 1) H / strips))),
/// with the same gradient (to one maximal element of each strip).
///  - CPU, or `strips` not dividing H: at::adaptive_max_pool2d itself (results and timings as they always were).
///  - other devices with `strips` dividing H: a max reduction over a view [K, C, strips, H / strips * W] (no copy
///    for contiguous and channels-last maps). ATen's adaptive max-pooling CUDA kernel is slow on channels-last
///    maps: 2.4 ms of a 12 ms detect() and 8.6 ms of a training step at batch 4 on an H100 (bfloat16,
///    docs/performance.md).
namespace detail {
/// The reduction form of max_pool_strips (any device; `strips` must divide H).
inline at::Tensor max_pool_strips_by_reduction(const at::Tensor& x, int64_t strips) {
  const auto rows = x.reshape({x.size(0), x.size(1), strips, x.size(2) / strips * x.size(3)});
  return std::get<0>(rows.max(3, /*keepdim=*/true));
}
}  // namespace detail

inline at::Tensor max_pool_strips(const at::Tensor& x, int64_t strips) {
  const int64_t height = x.dim() == 4 ? x.size(2) : 0;
  if (x.device().is_cpu() || strips <= 0 || height % strips != 0 || x.numel() == 0)
    return std::get<0>(at::adaptive_max_pool2d(x, {strips, 1}));
  return detail::max_pool_strips_by_reduction(x, strips);
}

}  // namespace trident::ops
