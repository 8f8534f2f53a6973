#pragma once
/// \file trident/core/autocast.hpp
/// trident::Autocast: CUDA automatic mixed precision for a scope, for inference
/// (detect(), describe()) as for training (train::fit uses it under TrainerOptions::mixed_precision).
///
///   {
///     trident::Autocast amp(at::kBFloat16);   // convolutions and matrix products in bfloat16 on CUDA
///     auto detections = net.detect(batch);    // boxes, scores and embeddings come back in float32 or bfloat16
///   }
///
/// Only thread-local flags change (no device work), so the scope costs nothing; on its exit the previous state
/// and dtype are restored and autocast's cache of casted weights is cleared. The library's own operations keep
/// what needs float32 in float32 under autocast: RoIAlign's sampling positions and resampling, NMS's IoUs, box
/// decoding (docs/design.md, "Mixed precision"). Spelled for LibTorch 1.13 and for >= 2.4.
#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace trident {

class Autocast {
 public:
  /// Autocast to `dtype` (at::kHalf or at::kBFloat16) on CUDA while this object lives; `on = false` changes
  /// nothing (so that a runtime option can pick it).
  explicit Autocast(at::ScalarType dtype = at::kBFloat16, bool on = true) : on_(on) {
    if (!on_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    previous_ = at::autocast::is_autocast_enabled(at::kCUDA);
    previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
    previous_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(true);
#endif
  }
  ~Autocast() {
    if (!on_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, previous_);
    at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
#else
    at::autocast::set_enabled(previous_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
#endif
    at::autocast::clear_cache();
  }
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

  /// The dtype CUDA autocast casts to in this thread (meaningful while enabled()).
  static at::ScalarType dtype() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    return at::autocast::get_autocast_dtype(at::kCUDA);
#else
    return at::autocast::get_autocast_gpu_dtype();
#endif
  }

  /// Whether CUDA autocast is on in this thread now.
  static bool enabled() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    return at::autocast::is_autocast_enabled(at::kCUDA);
#else
    return at::autocast::is_enabled();
#endif
  }

 private:
  bool on_;
  bool previous_ = false;
  at::ScalarType previous_dtype_ = at::kHalf;
};

}  // namespace trident
