#pragma once
/// \file trident/backbone/weights.hpp
/// Loads torchvision's ImageNet weights into a ResNetStem + ResNetHead.
///
/// The file is a torchvision state dict saved as a plain dict of tensors. With torchvision >= 0.13 installed:
///
///   python3 -c "import torch, torchvision as tv; torch.save(dict(tv.models.resnet50(
///       weights=tv.models.ResNet50_Weights.IMAGENET1K_V1).state_dict()), 'resnet50.pt')"
///
/// The dict(...) matters: LibTorch's unpickler cannot read the OrderedDict (with its _metadata) that state_dict()
/// returns. IMAGENET1K_V1 are the weights of `pretrained=True`, which SeqNet and NAE start from; older torchvision:
/// `tv.models.resnet50(pretrained=True)`. resnet18 / resnet34 / resnet101 work the same for the matching
/// policies.
///
/// Every key of conv1, bn1 and layer1 .. layer4 lands in the tensor of the same name in the stem (conv1 .. layer3)
/// or the head (layer4); fc.* and *.num_batches_tracked are ignored. The load is strict and all-or-nothing: a
/// missing key, a key this ResNet lacks, a shape that differs or a non-floating-point tensor raise trident::Error
/// naming the file, the key and both shapes, before anything is copied. Values are cast to the module's dtype and
/// device, as torch's load_state_dict does.

#include <trident/backbone/resnet.hpp>
#include <trident/config.hpp>
#include <trident/io/tensor_file.hpp>

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace trident::backbone {

struct WeightsReport {
  int64_t loaded = 0;   ///< tensors copied into the stem and the head
  int64_t ignored = 0;  ///< keys deliberately skipped: fc.* and *.num_batches_tracked
};

namespace detail {

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// The keys of a torchvision ResNet state dict that have no counterpart in trident on purpose.
inline bool ignored_torchvision_key(const std::string& key) {
  return key.rfind("fc.", 0) == 0 || ends_with(key, ".num_batches_tracked");
}

}  // namespace detail

/// Copies `weights` (a torchvision ResNet state dict, read from `source`) into `stem` and `head`.
inline WeightsReport load_torchvision_weights(const io::TensorDict& weights, const ResNetStem& stem,
                                              const ResNetHead& head, const std::string& source = "<dict>") {
  constexpr const char* fn = "trident::backbone::load_torchvision_weights";
  TRIDENT_CHECK(!stem.is_empty() && !head.is_empty(), "{}: the stem and the head must be constructed modules", fn);

  // Every tensor of the two modules, under its torchvision name.
  std::vector<std::pair<std::string, at::Tensor>> targets;
  for (const torch::nn::Module* module :
       {static_cast<const torch::nn::Module*>(stem.get()), static_cast<const torch::nn::Module*>(head.get())}) {
    for (const auto& item : module->named_parameters()) targets.emplace_back(item.key(), item.value());
    for (const auto& item : module->named_buffers()) targets.emplace_back(item.key(), item.value());
  }

  // Check everything first, report the first problem (in module order) and how many others there are.
  std::vector<std::string> problems;
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (destination, source)
  int64_t missing = 0;
  std::string first_missing;
  for (const auto& [key, target] : targets) {
    const auto it = weights.find(key);
    if (it == weights.end()) {
      if (missing++ == 0) {
        first_missing = fmt::format("'{}' has no tensor '{}' (expected {})", source, key, shape_of(target));
      }
      continue;
    }
    const at::Tensor& value = it->second;
    if (value.sizes() != target.sizes()) {
      problems.push_back(
          fmt::format("'{}': '{}' has shape {}, expected {}", source, key, shape_of(value), shape_of(target)));
    } else if (!value.is_floating_point()) {
      problems.push_back(fmt::format("'{}': '{}' has dtype {}, expected a floating-point tensor", source, key,
                                     std::string(c10::toString(value.scalar_type()))));
    } else {
      copies.emplace_back(target, value);
    }
  }
  if (missing > 0) {
    problems.insert(problems.begin(), missing == 1
                                          ? first_missing
                                          : fmt::format("{} and {} more missing keys", first_missing, missing - 1));
  }

  WeightsReport report;
  std::vector<std::string> known;
  known.reserve(targets.size());
  for (const auto& target : targets) known.push_back(target.first);
  std::sort(known.begin(), known.end());
  for (const auto& [key, value] : weights) {
    if (detail::ignored_torchvision_key(key)) {
      ++report.ignored;
    } else if (!std::binary_search(known.begin(), known.end(), key)) {
      problems.push_back(fmt::format("'{}' has '{}' {}, which this ResNet lacks (a different depth or width?)", source,
                                     key, shape_of(value)));
    }
  }
  if (!problems.empty()) {
    trident::fail("{}: {}{}", fn, problems.front(),
                  problems.size() == 1 ? std::string() : fmt::format(" ({} more problems)", problems.size() - 1));
  }

  at::NoGradGuard no_grad;
  for (auto& [destination, value] : copies) destination.copy_(value);
  report.loaded = static_cast<int64_t>(copies.size());
  return report;
}

/// Reads `path` (see the file comment for how to write it) and loads it into `stem` and `head`.
inline WeightsReport load_torchvision_weights(const std::string& path, const ResNetStem& stem, const ResNetHead& head) {
  return load_torchvision_weights(io::load_tensor_dict(path), stem, head, path);
}

}  // namespace trident::backbone
