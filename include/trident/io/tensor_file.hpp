#pragma once
/// \file trident/io/tensor_file.hpp
/// Reads a dict of tensors written by Python's torch.save() (the zip format of PyTorch >= 1.6), e.g.
///   torch.save(dict(torchvision.models.resnet50(weights=...).state_dict()), "resnet50.pt")
/// without Python, through LibTorch's unpickler. Used for torchvision weights and for the test fixtures.

#include <trident/config.hpp>

#include <torch/csrc/jit/serialization/pickle.h>

#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

namespace trident::io {

using TensorDict = std::map<std::string, at::Tensor>;

/// Loads `path`, which must hold a dict whose keys are strings and whose values are tensors (other values,
/// such as the `_metadata` of a state dict, are skipped). Errors name the file and the offending entry.
inline TensorDict load_tensor_dict(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  TRIDENT_CHECK(file.good(), "trident::io::load_tensor_dict: cannot open '{}'", path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  TRIDENT_CHECK(!bytes.empty(), "trident::io::load_tensor_dict: '{}' is empty", path);
  c10::IValue value;
  try {
    value = torch::jit::pickle_load(bytes);
  } catch (const std::exception& e) {
    trident::fail("trident::io::load_tensor_dict: '{}' is not a file written by torch.save ({})", path,
                  std::string(e.what()).substr(0, 300));
  }
  TRIDENT_CHECK(value.isGenericDict(), "trident::io::load_tensor_dict: '{}' holds a {}, expected a dict of tensors",
                path, value.tagKind());
  TensorDict out;
  for (const auto& entry : value.toGenericDict()) {
    TRIDENT_CHECK(entry.key().isString(), "trident::io::load_tensor_dict: '{}' has a key of type {}, expected str",
                  path, entry.key().tagKind());
    if (entry.value().isTensor()) out.emplace(entry.key().toStringRef(), entry.value().toTensor());
  }
  return out;
}

/// The tensor `key` of `dict` (loaded from `path`), or an error naming both.
inline const at::Tensor& get(const TensorDict& dict, const std::string& key, const std::string& path = "<dict>") {
  const auto it = dict.find(key);
  TRIDENT_CHECK(it != dict.end(), "trident::io: '{}' has no tensor named '{}'", path, key);
  return it->second;
}

}  // namespace trident::io
