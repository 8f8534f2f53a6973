#pragma once
/// \file trident/train/checkpoint.hpp
/// Training checkpoints: everything a run needs to continue exactly where it stopped — the model's parameters
/// and buffers (which include the re-id memory: look-up table, circular queue and its head, batch-norm
/// statistics), the optimizer's state (momentum buffers), the position in the schedule and in the data
/// (epoch, iteration), the seed and the CPU random generator's state, the mixed-precision loss scale, and the
/// name of the configuration that wrote it.
///
/// The file (version 2; docs/training.md, "Checkpoints"):
///
///   offset 0   16 bytes  magic "trident-ckpt\r\n\x1a\n"
///   offset 16  u32 LE    version (2)
///   offset 20  u32 LE    checksum: CRC-32 of the payload (core/files.hpp: crc32)
///   offset 24  u64 LE    payload_length: the payload's size in bytes (the file is 32 + payload_length bytes)
///   offset 32            payload: one LibTorch archive (torch::serialize) with the entries format, version,
///                        configuration, model, optimizer, epoch, iteration, iterations_per_epoch, seed,
///                        loss_scale, good_steps, cpu_rng_state
///
/// It is written atomically (core/files.hpp: a temporary file beside it, synced, then renamed over `<path>`), so
/// a crash or a full disk while writing never leaves a half-written checkpoint (the previous one stays intact).
/// Loading checks, before anything is changed: the magic, the version, the length, the checksum, the format
/// and version entries, the configuration's name (when both sides have one), every entry, the shape and type of
/// every parameter and buffer, and the random generator's state; then loads the optimizer (another kind of
/// optimizer is refused there, before the model is touched), the model and the generator. Every refusal names
/// the function, the file, the field and the values. A truncated or damaged file is never loaded, not even in
/// part.
///
/// Version 1 (trident before issue 16: the bare LibTorch archive, no header) is still read — with LibTorch's own
/// checks of the archive only, since it carries no checksum; its configuration is unknown (not checked).
#include <trident/config.hpp>
#include <trident/core/files.hpp>
#include <trident/io/tensor_file.hpp>

#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/scalar_tensor.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <c10/util/StringUtil.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace trident::train {

inline constexpr const char* checkpoint_format = "trident-checkpoint";
inline constexpr int64_t checkpoint_version = 2;
/// The file's first 16 bytes (version 2 on); "\r\n\x1a\n" catches a file that went through a text conversion.
inline constexpr std::string_view checkpoint_magic{"trident-ckpt\r\n\x1a\n", 16};
inline constexpr size_t checkpoint_header_size = 32;

/// Where a run stands. `iteration` counts completed iterations since the start of training; the next one is
/// batch `iteration - epoch * iterations_per_epoch` of epoch `epoch`.
struct TrainState {
  int64_t epoch = 0;                ///< the epoch the next iteration belongs to (0-based)
  int64_t iteration = 0;            ///< completed iterations
  int64_t iterations_per_epoch = 0; ///< as when the checkpoint was written (a resume with another value is refused)
  int64_t seed = 0;
  double loss_scale = 1.0;          ///< mixed precision's dynamic loss scale (1 without mixed precision)
  int64_t good_steps = 0;           ///< steps since the loss scale last changed
  /// The name of the configuration that wrote the checkpoint (TrainerOptions::configuration, e.g. "small"); empty:
  /// unnamed (a version-1 checkpoint, or a program that names none).
  std::string configuration;
  /// What the program recorded to rebuild the network from the checkpoint alone (TrainerOptions::metadata):
  /// `name = value` lines; empty when it recorded nothing (and in checkpoints written before the entry existed).
  std::string metadata;
};

namespace detail {

inline int64_t read_int(torch::serialize::InputArchive& ar, const std::string& key, const std::string& path,
                        std::string_view caller) {
  c10::IValue v;
  TRIDENT_CHECK(ar.try_read(key, v) && v.isInt(), "{}: '{}' has no integer entry '{}'", caller, path, key);
  return v.toInt();
}

inline double read_double(torch::serialize::InputArchive& ar, const std::string& key, const std::string& path,
                          std::string_view caller) {
  c10::IValue v;
  TRIDENT_CHECK(ar.try_read(key, v) && v.isDouble(), "{}: '{}' has no number entry '{}'", caller, path, key);
  return v.toDouble();
}

/// The 32-byte header of a version-2 checkpoint whose payload is `payload` (see the file comment).
inline std::string checkpoint_header(std::string_view payload) {
  std::string header(checkpoint_magic);
  header.resize(checkpoint_header_size);
  write_le(header.data(), 16, static_cast<uint32_t>(checkpoint_version));
  write_le(header.data(), 20, crc32(payload));
  write_le(header.data(), 24, static_cast<uint64_t>(payload.size()));
  return header;
}

/// The archive's bytes (in memory: the checksum is written before them).
inline std::string archive_bytes(torch::serialize::OutputArchive& archive, const std::string& path,
                                 std::string_view caller) {
  std::string bytes;
  try {
    archive.save_to([&bytes](const void* data, size_t n) -> size_t {
      bytes.append(static_cast<const char*>(data), n);
      return n;
    });
  } catch (const c10::Error& e) {
    fail("{}: cannot serialize the checkpoint for '{}': {}", caller, path, e.what_without_backtrace());
  }
  return bytes;
}

/// The device of a module's first parameter or buffer (the CPU for an empty module): where its checkpoint's
/// tensors are loaded, so a checkpoint written on one device resumes on another.
inline c10::Device module_device(const torch::nn::Module& model) {
  for (const auto& p : model.parameters()) return p.device();
  for (const auto& b : model.buffers()) return b.device();
  return c10::Device(c10::kCPU);
}

/// The LibTorch archive inside a checkpoint file's bytes, once the header's magic, version, length and checksum
/// are verified (version 2), or the whole file (version 1, which starts with a ZIP archive's "PK\3\4"). Sets
/// `version` to the file's version.
inline std::string_view checkpoint_payload(std::string_view file, const std::string& path, std::string_view caller,
                                           int64_t& version) {
  static constexpr std::string_view zip_magic{"PK\x03\x04", 4};
  if (file.substr(0, zip_magic.size()) == zip_magic) {
    version = 1;
    return file;
  }
  const size_t head = std::min(file.size(), checkpoint_magic.size());
  TRIDENT_CHECK(file.substr(0, head) == checkpoint_magic.substr(0, head),
                "{}: '{}' is not a trident checkpoint (field 'magic': its first bytes are neither \"trident-ckpt\" "
                "nor a LibTorch archive's \"PK\")",
                caller, path);
  TRIDENT_CHECK(file.size() >= checkpoint_header_size,
                "{}: '{}' is truncated: {} bytes, fewer than the {}-byte header (field 'header')", caller, path,
                file.size(), checkpoint_header_size);
  version = read_le<uint32_t>(file.data(), 16);
  TRIDENT_CHECK(version == checkpoint_version,
                "{}: '{}' has version {} (header field 'version'); this trident reads versions 1 and {} (written by "
                "another trident, or damaged)",
                caller, path, version, checkpoint_version);
  const auto length = read_le<uint64_t>(file.data(), 24);
  const uint64_t present = file.size() - checkpoint_header_size;
  TRIDENT_CHECK(length == present,
                "{}: '{}' is {}: header field 'payload_length' is {} bytes, the file has {} after the header", caller,
                path, present < length ? "truncated" : "damaged (bytes beyond its end)", length, present);
  const std::string_view payload = file.substr(checkpoint_header_size);
  const auto stored = read_le<uint32_t>(file.data(), 20);
  const uint32_t actual = crc32(payload);
  TRIDENT_CHECK(stored == actual,
                "{}: '{}' is damaged: header field 'checksum' is {:#010x}, the CRC-32 of its {} payload bytes is "
                "{:#010x}",
                caller, path, stored, payload.size(), actual);
  return payload;
}

/// Walks every pickle of the archive `payload` with io::detail::check_pickle_lengths before LibTorch's Unpickler
/// reads it: the Unpickler sizes strings and its memo from the lengths and indexes a file declares (4 GB and
/// 26 GB from files of 1.4 KB, found by fuzzing the weights reader; docs/reliability.md). A checksum only proves
/// that a file is the one written, not that whoever wrote it was trident. The zip reader's own errors are left
/// to load_from, which reports them.
inline void check_archive_pickles(std::string_view payload, const std::string& path, std::string_view caller) {
  std::optional<caffe2::serialize::PyTorchStreamReader> reader;
  try {
    reader.emplace(std::make_shared<io::detail::BoundedView>(payload.data(), payload.size()));
  } catch (const c10::Error&) {
    return;  // not a zip archive: load_from says so
  }
  for (const std::string& name : reader->getAllRecords()) {
    if (name.size() < 4 || name.compare(name.size() - 4, 4, ".pkl") != 0) continue;
    const auto record = reader->getRecord(name);
    io::detail::check_pickle_lengths(static_cast<const unsigned char*>(std::get<0>(record).get()),
                                     std::get<1>(record), path, caller, name);
  }
}

/// Reads the checkpoint at `path` (or in `bytes`, its contents read elsewhere: data-parallel processes receive
/// rank 0's checkpoint this way), verifies its header (checkpoint_payload), opens the archive onto `device`,
/// and checks its format and version entries.
inline torch::serialize::InputArchive open_archive(const std::string& path, std::string_view caller,
                                                   c10::Device device,
                                                   std::optional<std::string_view> bytes = std::nullopt) {
  std::string own;
  if (!bytes) {
    TRIDENT_CHECK(std::filesystem::is_regular_file(path), "{}: '{}' does not exist (or is not a file)", caller, path);
    own = read_whole_file(path, caller);
    bytes = own;
  }
  int64_t version = 0;
  const std::string_view payload = checkpoint_payload(*bytes, path, caller, version);
  torch::serialize::InputArchive ar;
  try {
    check_archive_pickles(payload, path, caller);
    ar.load_from(payload.data(), payload.size(), device);
  } catch (const c10::Error& e) {
    fail("{}: '{}' is not a trident checkpoint: its {} is not a LibTorch archive: {}", caller, path,
         version == 1 ? "content" : "payload", e.what_without_backtrace());
  }
  c10::IValue format;
  TRIDENT_CHECK(ar.try_read("format", format) && format.isString() && format.toStringRef() == checkpoint_format,
                "{}: '{}' is not a trident checkpoint (no entry 'format' \"{}\")", caller, path, checkpoint_format);
  const int64_t entry = read_int(ar, "version", path, caller);
  TRIDENT_CHECK(entry == version,
                "{}: '{}' has version {} (entry 'version'), {}; this trident reads versions 1 and {}", caller, path,
                entry, version == 1 ? "and no header (version 1)" : "its header says 2", checkpoint_version);
  return ar;
}

/// The configuration named in the archive ("" for version 1 or an unnamed run), refused when both it and
/// `expected` are named and differ.
inline std::string check_configuration(torch::serialize::InputArchive& ar, std::string_view expected,
                                       const std::string& path, std::string_view caller) {
  c10::IValue v;
  std::string name;
  if (ar.try_read("configuration", v)) {
    TRIDENT_CHECK(v.isString(), "{}: '{}' has an entry 'configuration' that is not a string", caller, path);
    name = v.toStringRef();
  }
  TRIDENT_CHECK(name.empty() || expected.empty() || name == expected,
                "{}: '{}' was written by configuration '{}' (entry 'configuration'); this run is configuration '{}'",
                caller, path, name, expected);
  return name;
}

/// The archive's entry 'metadata' ("" when it has none: checkpoints written before it existed).
inline std::string read_metadata(torch::serialize::InputArchive& ar, const std::string& path,
                                 std::string_view caller) {
  c10::IValue v;
  if (!ar.try_read("metadata", v)) return {};
  TRIDENT_CHECK(v.isString(), "{}: '{}' has an entry 'metadata' that is not a string", caller, path);
  return v.toStringRef();
}

/// Throws unless `model` can take the archive `ar` whole: every parameter and buffer, in every serializable
/// submodule, present with the model's shape and type (LibTorch's own loading would take another shape).
inline void check_model_entry(torch::serialize::InputArchive& ar, const torch::nn::Module& model,
                              const std::string& prefix, const std::string& path, std::string_view caller) {
  const auto check = [&](const std::string& key, const at::Tensor& mine, bool buffer) {
    const char* what = buffer ? "buffer" : "parameter";
    at::Tensor stored;
    TRIDENT_CHECK(ar.try_read(key, stored, buffer),
                  "{}: '{}': the model does not match the checkpoint (another configuration?): the network's {} '{}{}' "
                  "is not in it",
                  caller, path, what, prefix, key);
    TRIDENT_CHECK(stored.sizes() == mine.sizes() && stored.scalar_type() == mine.scalar_type(),
                  "{}: '{}': the model does not match the checkpoint (another configuration?): {} '{}{}' is {} {} in "
                  "the checkpoint, {} {} in the network",
                  caller, path, what, prefix, key, std::string(c10::toString(stored.scalar_type())),
                  c10::str(stored.sizes()), std::string(c10::toString(mine.scalar_type())),
                  c10::str(mine.sizes()));
  };
  for (const auto& p : model.named_parameters(/*recurse=*/false)) check(p.key(), p.value(), false);
  for (const auto& b : model.named_buffers(/*recurse=*/false)) check(b.key(), b.value(), true);
  for (const auto& child : model.named_children()) {
    if (!child.value()->is_serializable()) continue;
    torch::serialize::InputArchive child_ar;
    TRIDENT_CHECK(ar.try_read(child.key(), child_ar),
                  "{}: '{}': the model does not match the checkpoint (another configuration?): the network's module "
                  "'{}{}' is not in it",
                  caller, path, prefix, child.key());
    check_model_entry(child_ar, *child.value(), prefix + child.key() + ".", path, caller);
  }
}

/// The archive's "model" entry, checked against `model` (check_model_entry).
inline torch::serialize::InputArchive model_entry(torch::serialize::InputArchive& ar, const torch::nn::Module& model,
                                                  const std::string& path, std::string_view caller) {
  torch::serialize::InputArchive model_ar;
  TRIDENT_CHECK(ar.try_read("model", model_ar), "{}: '{}' has no entry 'model'", caller, path);
  check_model_entry(model_ar, model, "", path, caller);
  return model_ar;
}

/// Loads a checked "model" entry into `model`.
inline void load_model_entry(torch::serialize::InputArchive& model_ar, torch::nn::Module& model,
                             const std::string& path, std::string_view caller) {
  try {
    model.load(model_ar);
  } catch (const c10::Error& e) {
    fail("{}: '{}': the model does not match the checkpoint (another configuration?): {}", caller, path,
         e.what_without_backtrace());
  }
}

}  // namespace detail

/// Writes a checkpoint atomically (see the file comment). A failed write (a full disk, a file size limit) stops
/// with the system's reason and leaves the previous file at `path` as it was.
inline void save_checkpoint(const std::string& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                            const TrainState& state) {
  static constexpr const char* caller = "trident::train::save_checkpoint";
  torch::serialize::OutputArchive ar, model_ar, optim_ar;
  ar.write("format", c10::IValue(std::string(checkpoint_format)));
  ar.write("version", c10::IValue(checkpoint_version));
  ar.write("configuration", c10::IValue(state.configuration));
  ar.write("metadata", c10::IValue(state.metadata));
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
  const std::string payload = detail::archive_bytes(ar, path, caller);
  const std::string header = detail::checkpoint_header(payload);
  write_stream_atomically(path, caller, [&](std::ostream& out) {
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    out.write(payload.data(), static_cast<std::streamsize>(payload.size()));
  });
}

/// Loads every part of a checkpoint into `model` and `optimizer` (onto the device `model` is on, whatever device
/// wrote it), restores the CPU random generator, and returns the training state; nothing is changed unless the
/// whole checkpoint is good (see the file comment). Errors name the file and the field.
/// `bytes`: the file's contents, when they were read elsewhere (data-parallel processes receive rank 0's);
/// otherwise the file at `path` is read. `configuration`: this run's configuration name; a checkpoint that names
/// another is refused (an empty name on either side is not checked).
inline TrainState load_checkpoint(const std::string& path, torch::nn::Module& model,
                                  torch::optim::Optimizer& optimizer,
                                  std::optional<std::string_view> bytes = std::nullopt,
                                  std::string_view configuration = {}) {
  static constexpr const char* caller = "trident::train::load_checkpoint";
  auto ar = detail::open_archive(path, caller, detail::module_device(model), bytes);
  TrainState s;
  s.configuration = detail::check_configuration(ar, configuration, path, caller);
  s.metadata = detail::read_metadata(ar, path, caller);
  s.epoch = detail::read_int(ar, "epoch", path, caller);
  s.iteration = detail::read_int(ar, "iteration", path, caller);
  s.iterations_per_epoch = detail::read_int(ar, "iterations_per_epoch", path, caller);
  s.seed = detail::read_int(ar, "seed", path, caller);
  s.loss_scale = detail::read_double(ar, "loss_scale", path, caller);
  s.good_steps = detail::read_int(ar, "good_steps", path, caller);
  TRIDENT_CHECK(s.epoch >= 0 && s.iteration >= 0 && s.iterations_per_epoch >= 0 && s.good_steps >= 0,
                "{}: '{}' has a negative entry: epoch {}, iteration {}, iterations_per_epoch {}, good_steps {}", caller,
                path, s.epoch, s.iteration, s.iterations_per_epoch, s.good_steps);
  at::Tensor rng;
  TRIDENT_CHECK(ar.try_read("cpu_rng_state", rng, /*is_buffer=*/true), "{}: '{}' has no entry 'cpu_rng_state'",
                caller, path);
  rng = rng.cpu();
  try {  // tried on a generator of its own first: a bad state must not be found after the model is loaded
    at::make_generator<at::CPUGeneratorImpl>().set_state(rng);
  } catch (const c10::Error& e) {
    fail("{}: '{}': entry 'cpu_rng_state' is not a CPU generator's state: {}", caller, path,
         e.what_without_backtrace());
  }
  auto model_ar = detail::model_entry(ar, model, path, caller);
  torch::serialize::InputArchive optim_ar;
  TRIDENT_CHECK(ar.try_read("optimizer", optim_ar), "{}: '{}' has no entry 'optimizer'", caller, path);
  try {
    optimizer.load(optim_ar);
  } catch (const c10::Error& e) {
    fail("{}: '{}': the optimizer state does not match (entry 'optimizer'; the model was not changed): {}", caller,
         path, e.what_without_backtrace());
  }
  detail::load_model_entry(model_ar, model, path, caller);
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  generator.set_state(rng);
  return s;
}

/// Loads only the model's parameters and buffers from a checkpoint (for evaluation and search), with the checks
/// of load_checkpoint (a refused checkpoint changes nothing). `configuration`: as for load_checkpoint.
inline void load_model(const std::string& path, torch::nn::Module& model, std::string_view configuration = {}) {
  static constexpr const char* caller = "trident::train::load_model";
  auto ar = detail::open_archive(path, caller, detail::module_device(model));
  detail::check_configuration(ar, configuration, path, caller);
  auto model_ar = detail::model_entry(ar, model, path, caller);
  detail::load_model_entry(model_ar, model, path, caller);
}

/// What a checkpoint says about the run that wrote it, read without a model: its configuration's name and its
/// metadata (TrainerOptions::metadata), with the file's checks (magic, version, length, checksum, format).
struct CheckpointInfo {
  std::string configuration;
  std::string metadata;
  /// The value of the metadata line `name = value` (spaces around the value trimmed); nullopt when absent.
  std::optional<std::string> value(std::string_view name) const {
    std::string_view rest = metadata;
    while (!rest.empty()) {
      const auto end = rest.find('\n');
      std::string_view line = rest.substr(0, end);
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
      const auto eq = line.find('=');
      if (eq == std::string_view::npos) continue;
      auto key = line.substr(0, eq), val = line.substr(eq + 1);
      while (!key.empty() && key.back() == ' ') key.remove_suffix(1);
      while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
      while (!val.empty() && val.front() == ' ') val.remove_prefix(1);
      while (!val.empty() && (val.back() == ' ' || val.back() == '\r')) val.remove_suffix(1);
      if (key == name) return std::string(val);
    }
    return std::nullopt;
  }
};

inline CheckpointInfo checkpoint_info(const std::string& path) {
  static constexpr const char* caller = "trident::train::checkpoint_info";
  auto ar = detail::open_archive(path, caller, c10::kCPU);
  CheckpointInfo info;
  info.configuration = detail::check_configuration(ar, {}, path, caller);
  info.metadata = detail::read_metadata(ar, path, caller);
  return info;
}

}  // namespace trident::train
