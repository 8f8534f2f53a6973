#pragma once
/// \file trident/train/checkpoint.hpp
/// Training checkpoints: everything a run needs to continue exactly where it stopped — the model's parameters
/// and buffers (which include the re-id memory: look-up table, circular queue and its head, batch-norm
/// statistics), the optimizer's state (momentum buffers), the position in the schedule and in the data
/// (epoch, iteration), the seed and the CPU random generator's state, and the mixed-precision loss scale.
///
/// One file in LibTorch's archive format (torch::serialize), written atomically (core/files.hpp: a temporary
/// file beside it, synced, then renamed over `<path>`), so a crash while writing never leaves a half-written
/// checkpoint (the previous one stays intact). Loading checks the format tag and names the file and the entry on
/// any error.
#include <trident/config.hpp>
#include <trident/core/files.hpp>

#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/scalar_tensor.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace trident::train {

inline constexpr const char* checkpoint_format = "trident-checkpoint";
inline constexpr int64_t checkpoint_version = 1;

/// Where a run stands. `iteration` counts completed iterations since the start of training; the next one is
/// batch `iteration - epoch * iterations_per_epoch` of epoch `epoch`.
struct TrainState {
  int64_t epoch = 0;                ///< the epoch the next iteration belongs to (0-based)
  int64_t iteration = 0;            ///< completed iterations
  int64_t iterations_per_epoch = 0; ///< as when the checkpoint was written (a resume with another value is refused)
  int64_t seed = 0;
  double loss_scale = 1.0;          ///< mixed precision's dynamic loss scale (1 without mixed precision)
  int64_t good_steps = 0;           ///< steps since the loss scale last changed
};

namespace detail {

inline int64_t read_int(torch::serialize::InputArchive& ar, const std::string& key, const std::string& path) {
  c10::IValue v;
  TRIDENT_CHECK(ar.try_read(key, v) && v.isInt(), "trident::train::load_checkpoint: '{}' has no integer entry '{}'",
                path, key);
  return v.toInt();
}

inline double read_double(torch::serialize::InputArchive& ar, const std::string& key, const std::string& path) {
  c10::IValue v;
  TRIDENT_CHECK(ar.try_read(key, v) && v.isDouble(), "trident::train::load_checkpoint: '{}' has no number entry '{}'",
                path, key);
  return v.toDouble();
}

/// Writes `archive` to `path` atomically (core/files.hpp).
inline void save_archive_atomically(torch::serialize::OutputArchive& archive, const std::string& path,
                                    std::string_view caller) {
  write_file_atomically(path, caller, [&](const std::string& temporary) {
    try {
      archive.save_to(temporary);
    } catch (const c10::Error& e) {
      fail("{}: cannot write '{}': {}", caller, temporary, e.what_without_backtrace());
    }
  });
}

/// The device of a module's first parameter or buffer (the CPU for an empty module): where its checkpoint's
/// tensors are loaded, so a checkpoint written on one device resumes on another.
inline c10::Device module_device(const torch::nn::Module& model) {
  for (const auto& p : model.parameters()) return p.device();
  for (const auto& b : model.buffers()) return b.device();
  return c10::Device(c10::kCPU);
}

/// Opens the archive at `path`, or, when `bytes` is given, the archive in those bytes (read from `path`
/// elsewhere: data-parallel processes receive rank 0's checkpoint this way).
inline torch::serialize::InputArchive open_archive(const std::string& path, std::string_view caller,
                                                   c10::Device device,
                                                   std::optional<std::string_view> bytes = std::nullopt) {
  if (!bytes)
    TRIDENT_CHECK(std::filesystem::is_regular_file(path), "{}: '{}' does not exist (or is not a file)", caller, path);
  torch::serialize::InputArchive ar;
  try {
    if (bytes)
      ar.load_from(bytes->data(), bytes->size(), device);
    else
      ar.load_from(path, device);
  } catch (const c10::Error& e) {
    fail("{}: '{}' is not a LibTorch archive: {}", caller, path, e.what_without_backtrace());
  }
  c10::IValue format;
  TRIDENT_CHECK(ar.try_read("format", format) && format.isString() && format.toStringRef() == checkpoint_format,
                "{}: '{}' is not a trident checkpoint (no 'format' entry \"{}\")", caller, path, checkpoint_format);
  return ar;
}

/// Loads the archive's "model" entry into `model`; a mismatch names the file.
inline void load_model_entry(torch::serialize::InputArchive& ar, torch::nn::Module& model, const std::string& path,
                             std::string_view caller) {
  torch::serialize::InputArchive model_ar;
  TRIDENT_CHECK(ar.try_read("model", model_ar), "{}: '{}' has no 'model' entry", caller, path);
  try {
    model.load(model_ar);
  } catch (const c10::Error& e) {
    fail("{}: '{}': the model does not match the checkpoint (another configuration?): {}", caller, path,
         e.what_without_backtrace());
  }
}

}  // namespace detail

/// Writes a checkpoint atomically (see the file comment).
inline void save_checkpoint(const std::string& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                            const TrainState& state) {
  torch::serialize::OutputArchive ar, model_ar, optim_ar;
  ar.write("format", c10::IValue(std::string(checkpoint_format)));
  ar.write("version", c10::IValue(checkpoint_version));
  model.save(model_ar);
  ar.write("model", model_ar);
  optimizer.save(optim_ar);
  ar.write("optimizer", optim_ar);
  ar.write("epoch", c10::IValue(state.epoch));
  ar.write("iteration", c10::IValue(state.iteration));
  ar.write("iterations_per_epoch", c10::IValue(state.iterations_per_epoch));
  ar.write("seed", c10::IValue(state.seed));
  ar.write("loss_scale", c10::IValue(state.loss_scale));
  ar.write("good_steps", c10::IValue(state.good_steps));
  ar.write("cpu_rng_state", at::detail::getDefaultCPUGenerator().get_state(), /*is_buffer=*/true);
  detail::save_archive_atomically(ar, path, "trident::train::save_checkpoint");
}

/// Loads every part of a checkpoint into `model` and `optimizer` (onto the device `model` is on, whatever device
/// wrote it), restores the CPU random generator, and returns the training state. Errors name the file and the entry.
/// `bytes`: the file's contents, when they were read elsewhere (data-parallel processes receive rank 0's);
/// otherwise the file at `path` is read.
inline TrainState load_checkpoint(const std::string& path, torch::nn::Module& model,
                                  torch::optim::Optimizer& optimizer,
                                  std::optional<std::string_view> bytes = std::nullopt) {
  static constexpr const char* caller = "trident::train::load_checkpoint";
  auto ar = detail::open_archive(path, caller, detail::module_device(model), bytes);
  const int64_t version = detail::read_int(ar, "version", path);
  TRIDENT_CHECK(version == checkpoint_version, "{}: '{}' has version {}, this trident reads version {}", caller, path,
                version, checkpoint_version);
  detail::load_model_entry(ar, model, path, caller);
  torch::serialize::InputArchive optim_ar;
  TRIDENT_CHECK(ar.try_read("optimizer", optim_ar), "{}: '{}' has no 'optimizer' entry", caller, path);
  try {
    optimizer.load(optim_ar);
  } catch (const c10::Error& e) {
    fail("{}: '{}': the optimizer state does not match: {}", caller, path, e.what_without_backtrace());
  }
  TrainState s;
  s.epoch = detail::read_int(ar, "epoch", path);
  s.iteration = detail::read_int(ar, "iteration", path);
  s.iterations_per_epoch = detail::read_int(ar, "iterations_per_epoch", path);
  s.seed = detail::read_int(ar, "seed", path);
  s.loss_scale = detail::read_double(ar, "loss_scale", path);
  s.good_steps = detail::read_int(ar, "good_steps", path);
  at::Tensor rng;
  TRIDENT_CHECK(ar.try_read("cpu_rng_state", rng, /*is_buffer=*/true), "{}: '{}' has no 'cpu_rng_state' entry", caller,
                path);
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  generator.set_state(rng.cpu());
  return s;
}

/// Loads only the model's parameters and buffers from a checkpoint (for evaluation and search).
inline void load_model(const std::string& path, torch::nn::Module& model) {
  static constexpr const char* caller = "trident::train::load_model";
  auto ar = detail::open_archive(path, caller, detail::module_device(model));
  detail::load_model_entry(ar, model, path, caller);
}

}  // namespace trident::train
