#pragma once
/// \file trident/ops/roi_align_params.hpp
/// trident::ops::RoiAlignParams: the geometry of one RoIAlign call (roi_align.hpp, roi_align_cuda.hpp).
#include <cstdint>

namespace trident::ops {

/// The geometry of one RoIAlign call; shared by the kernels and the RoI pooler.
struct RoiAlignParams {
  int64_t output_h = 0;
  int64_t output_w = 0;
  double spatial_scale = 1.0;
  int64_t sampling_ratio = -1;  ///< <= 0: adaptive, ceil(RoI size / output size) samples per bin and axis
  bool aligned = false;         ///< shift the box by -0.5 cell so that sample centres match pixel centres
};

}  // namespace trident::ops
