#pragma once
/// \file trident/ops/roi_align_params.hpp
/// trident::ops::RoiAlignParams: the geometry of one RoIAlign call (roi_align.hpp, roi_align_cuda.hpp), and the
/// autograd function both implementations share (detail::RoiAlignFunction).
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <vector>

namespace trident::ops {

/// The geometry of one RoIAlign call; shared by the kernels and the RoI pooler.
struct RoiAlignParams {
  int64_t output_h = 0;
  int64_t output_w = 0;
  double spatial_scale = 1.0;
  int64_t sampling_ratio = -1;  ///< <= 0: adaptive, ceil(RoI size / output size) samples per bin and axis
  bool aligned = false;         ///< shift the box by -0.5 cell so that sample centres match pixel centres
};

namespace detail {

/// Keeps `p`, the input's sizes, dtype and layout and the RoIs in `ctx` for the backward pass.
inline void save_roi_align_context(torch::autograd::AutogradContext* ctx, const RoiAlignParams& p,
                                   const at::Tensor& input, const at::Tensor& rois) {
  ctx->saved_data["output_h"] = p.output_h;
  ctx->saved_data["output_w"] = p.output_w;
  ctx->saved_data["spatial_scale"] = p.spatial_scale;
  ctx->saved_data["sampling_ratio"] = p.sampling_ratio;
  ctx->saved_data["aligned"] = p.aligned;
  ctx->saved_data["input_sizes"] = input.sizes();
  ctx->saved_data["dtype"] = input.scalar_type();
  ctx->saved_data["channels_last"] = input.is_contiguous(at::MemoryFormat::ChannelsLast) && !input.is_contiguous();
  ctx->save_for_backward({rois});
}

/// What save_roi_align_context kept.
struct RoiAlignContext {
  RoiAlignParams params;
  at::Tensor rois;
  std::vector<int64_t> input_sizes;
  at::ScalarType dtype = at::kFloat;
  at::MemoryFormat format = at::MemoryFormat::Contiguous;
};
inline RoiAlignContext saved_roi_align_context(torch::autograd::AutogradContext* ctx) {
  const auto& d = ctx->saved_data;
  RoiAlignContext c;
  c.params.output_h = d.at("output_h").toInt();
  c.params.output_w = d.at("output_w").toInt();
  c.params.spatial_scale = d.at("spatial_scale").toDouble();
  c.params.sampling_ratio = d.at("sampling_ratio").toInt();
  c.params.aligned = d.at("aligned").toBool();
  c.rois = ctx->get_saved_variables()[0];
  c.input_sizes = d.at("input_sizes").toIntVector();
  c.dtype = d.at("dtype").toScalarType();
  if (d.at("channels_last").toBool()) c.format = at::MemoryFormat::ChannelsLast;
  return c;
}

/// The autograd function of one RoIAlign implementation: `Impl` provides
///   static at::Tensor forward(const at::Tensor& input, const at::Tensor& rois, const RoiAlignParams&);
///   static at::Tensor backward(const at::Tensor& grad_output, const RoiAlignContext&);   // the input's gradient
/// Gradients flow to the input only, as torchvision's (RoIs are constants).
template <class Impl>
struct RoiAlignFunction : public torch::autograd::Function<RoiAlignFunction<Impl>> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, const at::Tensor& rois,
                            int64_t output_h, int64_t output_w, double spatial_scale, int64_t sampling_ratio,
                            bool aligned) {
    const RoiAlignParams p{output_h, output_w, spatial_scale, sampling_ratio, aligned};
    save_roi_align_context(ctx, p, input, rois);
    return Impl::forward(input, rois, p);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    auto grad_input = Impl::backward(grad_outputs[0], saved_roi_align_context(ctx));
    return {grad_input, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace detail

}  // namespace trident::ops
