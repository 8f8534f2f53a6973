#pragma once
/// \file trident/ops/box_coder.hpp
/// The Faster R-CNN box parametrisation (torchvision.models.detection._utils.BoxCoder):
///   dx = wx (gx - px) / pw,  dy = wy (gy - py) / ph,  dw = ww log(gw / pw),  dh = wh log(gh / ph)
/// with (px, py, pw, ph) a proposal's centre and size and (gx, gy, gw, gh) its matched box's. Decoding clamps
/// dw and dh at log(1000 / 16) so that exp() cannot overflow. The RoI head uses weights (10, 10, 5, 5), the RPN
/// (1, 1, 1, 1).

#include <trident/ops/boxes.hpp>

#include <ATen/ops/log.h>
#include <ATen/ops/exp.h>

#include <array>
#include <cmath>

namespace trident::ops {

/// The dtype box coordinates are computed in for tensors of dtype `t`: float32 for half and bfloat16 (box
/// coordinates need more than their 8 or 11 bits of mantissa), else `t`.
inline at::ScalarType coordinate_dtype(at::ScalarType t) {
  return t == at::kHalf || t == at::kBFloat16 ? at::kFloat : t;
}

struct BoxCoder {
  /// (wx, wy, ww, wh).
  std::array<double, 4> weights{10.0, 10.0, 5.0, 5.0};
  /// Upper clamp of dw and dh before exp() when decoding.
  double scale_clamp = std::log(1000.0 / 16.0);

  BoxCoder() = default;
  explicit BoxCoder(std::array<double, 4> w, double clamp = std::log(1000.0 / 16.0)) : weights(w), scale_clamp(clamp) {
    for (double v : weights) TRIDENT_CHECK(v > 0, "trident::ops::BoxCoder: weights must be positive, got {}", v);
  }

  /// Regression targets of `matched` boxes relative to `proposals`: [N, 4] x [N, 4] -> [N, 4].
  /// Every proposal must have positive width and height (it is divided by; checked where checks_values() says).
  at::Tensor encode(const at::Tensor& matched, const at::Tensor& proposals) const {
    check_box_shape(matched, "trident::ops::BoxCoder::encode", "matched");
    check_box_shape(proposals, "trident::ops::BoxCoder::encode", "proposals");
    TRIDENT_CHECK(matched.size(0) == proposals.size(0),
                  "trident::ops::BoxCoder::encode: matched {} and proposals {} must have the same number of boxes",
                  shape_of(matched), shape_of(proposals));
    const auto pw = proposals.select(1, 2) - proposals.select(1, 0);
    const auto ph = proposals.select(1, 3) - proposals.select(1, 1);
    if (proposals.size(0) > 0 && checks_values(proposals)) {
      TRIDENT_CHECK(((pw > 0) & (ph > 0)).all().item<bool>(),
                    "trident::ops::BoxCoder::encode: proposals must have positive width and height");
    }
    const auto px = proposals.select(1, 0) + 0.5 * pw;
    const auto py = proposals.select(1, 1) + 0.5 * ph;
    const auto gw = matched.select(1, 2) - matched.select(1, 0);
    const auto gh = matched.select(1, 3) - matched.select(1, 1);
    const auto gx = matched.select(1, 0) + 0.5 * gw;
    const auto gy = matched.select(1, 1) + 0.5 * gh;
    const auto [wx, wy, ww, wh] = weights;
    return at::stack({wx * (gx - px) / pw, wy * (gy - py) / ph, ww * at::log(gw / pw), wh * at::log(gh / ph)}, 1);
  }

  /// Boxes from regression `codes` relative to `boxes`: codes [N, 4K] (K boxes per row, e.g. one per class)
  /// and boxes [N, 4] -> [N, 4K] in the dtype of `codes`, or float32 for half / bfloat16 codes (autocast's
  /// outputs: in bfloat16 coordinates above 1024 are 8 pixels apart).
  at::Tensor decode(const at::Tensor& codes, const at::Tensor& boxes) const {
    TRIDENT_CHECK(codes.defined() && codes.dim() == 2 && codes.size(1) % 4 == 0 && codes.size(1) > 0,
                  "trident::ops::BoxCoder::decode: codes must be a [N, 4K] tensor, got {}", shape_of(codes));
    check_box_shape(boxes, "trident::ops::BoxCoder::decode", "boxes");
    TRIDENT_CHECK(codes.size(0) == boxes.size(0),
                  "trident::ops::BoxCoder::decode: codes {} and boxes {} must have the same number of rows",
                  shape_of(codes), shape_of(boxes));
    const auto dtype = coordinate_dtype(codes.scalar_type());
    const auto b = boxes.to(dtype);
    const auto c = codes.to(dtype);
    const auto w = (b.select(1, 2) - b.select(1, 0)).unsqueeze(1);
    const auto h = (b.select(1, 3) - b.select(1, 1)).unsqueeze(1);
    const auto cx = b.select(1, 0).unsqueeze(1) + 0.5 * w;
    const auto cy = b.select(1, 1).unsqueeze(1) + 0.5 * h;
    const auto dx = c.slice(1, 0, c10::nullopt, 4) / weights[0];
    const auto dy = c.slice(1, 1, c10::nullopt, 4) / weights[1];
    const auto dw = (c.slice(1, 2, c10::nullopt, 4) / weights[2]).clamp_max(scale_clamp);
    const auto dh = (c.slice(1, 3, c10::nullopt, 4) / weights[3]).clamp_max(scale_clamp);
    const auto pcx = dx * w + cx;
    const auto pcy = dy * h + cy;
    const auto half_w = 0.5 * (at::exp(dw) * w);
    const auto half_h = 0.5 * (at::exp(dh) * h);
    return at::stack({pcx - half_w, pcy - half_h, pcx + half_w, pcy + half_h}, 2).flatten(1);
  }
};

}  // namespace trident::ops
