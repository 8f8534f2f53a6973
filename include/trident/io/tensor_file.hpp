#pragma once
/// \file trident/io/tensor_file.hpp
/// Reads a dict of tensors written by Python's torch.save() (the zip format of PyTorch >= 1.6), e.g.
///   torch.save(dict(torchvision.models.resnet50(weights=...).state_dict()), "resnet50.pt")
/// without Python, through LibTorch's unpickler. Used for torchvision weights and for the test fixtures.

#include <trident/config.hpp>

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/csrc/jit/serialization/import_read.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace trident::io {

using TensorDict = std::map<std::string, at::Tensor>;

namespace detail {

/// Bytes for LibTorch's zip reader, never more than are there. LibTorch 1.13's own adapter (the one
/// torch::jit::pickle_load uses) copies whatever the zip reader asks for; a damaged archive makes it ask past the
/// end: a heap-buffer-overflow found by fuzz/tensor_file.cpp (tests/fixtures/fuzz/tensor_file/). A short read
/// here makes the zip reader fail with an error instead. BoundedView reads bytes owned elsewhere (they must
/// outlive it); BoundedBytes owns them.
class BoundedView : public caffe2::serialize::ReadAdapterInterface {
 public:
  BoundedView(const char* data, size_t size) : data_(data), size_(size) {}
  size_t size() const override { return size_; }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= size_) return 0;
    n = static_cast<size_t>(std::min<uint64_t>(n, size_ - pos));
    std::memcpy(buf, data_ + pos, n);
    return n;
  }

 private:
  const char* data_;
  size_t size_;
};

struct OwnedBytes {
  std::vector<char> bytes;
};

class BoundedBytes final : private OwnedBytes, public BoundedView {  // OwnedBytes first: it is constructed first
 public:
  explicit BoundedBytes(std::vector<char> owned)
      : OwnedBytes{std::move(owned)}, BoundedView(bytes.data(), bytes.size()) {}
};

/// Throws unless every length-prefixed opcode of the pickle `data` (`size` bytes) asks for no more bytes than
/// follow it. LibTorch 1.13's Unpickler sizes a string from the length before reading it: a 4-byte length of
/// 4 GB in a 1.4 KB file made it allocate and fill 4 GB, and a memo index of 1.7e9 made it grow
/// its memo to 26 GB (both found by fuzz/tensor_file.cpp); memo indexes must follow the pickler's numbering.
/// The walk stops at STOP or at an opcode it does not know (the Unpickler then refuses it). Errors name `caller`,
/// the file `path` and the pickle's `record` in the archive.
inline void check_pickle_lengths(const unsigned char* data, size_t size, const std::string& path,
                                 std::string_view caller = "trident::io::load_tensor_dict",
                                 std::string_view record = "data.pkl") {
  const auto little = [&](size_t at, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = v << 8 | data[at + static_cast<size_t>(i)];
    return v;
  };
  size_t at = 0;
  uint64_t memoized = 0;  // values stored in the memo so far: a pickler numbers them 0, 1, 2, ...
  while (at < size) {
    const unsigned char op = data[at];
    const size_t start = at++;
    const size_t left = size - at;
    int fixed = -1, length_bytes = 0, lines = 0;
    switch (op) {
      case '.': return;  // STOP
      case '(': case '0': case '1': case '2': case 'N': case 'R': case 'a': case 'b': case 'd': case '}':
      case 'e': case 'l': case ']': case 'o': case 's': case 'u': case 't': case ')': case 'Q': case 0x81:
      case 0x85: case 0x86: case 0x87: case 0x88: case 0x89: case 0x8f: case 0x90: case 0x91: case 0x92:
      case 0x93: case 0x94: case 0x97: case 0x98: fixed = 0; break;
      case 'K': case 'h': case 'q': case 0x80: case 0x82: fixed = 1; break;
      case 'M': case 0x83: fixed = 2; break;
      case 'J': case 'j': case 'r': case 0x84: fixed = 4; break;
      case 'G': case 0x95: fixed = 8; break;
      case 'U': case 'C': case 0x8c: case 0x8a: length_bytes = 1; break;
      case 'T': case 'B': case 'X': case 0x8b: length_bytes = 4; break;
      case 0x8d: case 0x8e: case 0x96: length_bytes = 8; break;
      case 'I': case 'L': case 'F': case 'S': case 'V': case 'P': case 'g': case 'p': lines = 1; break;
      case 'c': case 'i': lines = 2; break;
      default: return;  // not an opcode this walk knows: left to the Unpickler
    }
    if (fixed >= 0) {
      if (static_cast<size_t>(fixed) > left) return;  // truncated: the Unpickler says so
      if (op == 'q' || op == 'r') {  // BINPUT, LONG_BINPUT: the Unpickler grows its memo to the index
        const uint64_t index = little(at, fixed);
        TRIDENT_CHECK(index <= memoized,
                      "{}: '{}': the pickle ({}) stores memo index {} with opcode 0x{:02x} at offset {}, but only {} "
                      "values were memoized before it", caller, path, record, index, op, start, memoized);
        memoized = std::max(memoized, index + 1);
      } else if (op == 0x94) {  // MEMOIZE
        ++memoized;
      }
      at += static_cast<size_t>(fixed);
    } else if (length_bytes > 0) {
      if (static_cast<size_t>(length_bytes) > left) return;
      uint64_t length = little(at, length_bytes);
      if ((op == 'T' || op == 0x8b) && (length & 0x80000000u)) length = 0;  // signed: the Unpickler refuses < 0
      at += static_cast<size_t>(length_bytes);
      TRIDENT_CHECK(length <= size - at,
                    "{}: '{}': the pickle ({}) declares {} bytes for opcode 0x{:02x} at offset {}, but only {} follow",
                    caller, path, record, length, op, start, size - at);
      at += static_cast<size_t>(length);
    } else {
      for (int k = 0; k < lines && at < size; ++k) {
        const void* end = std::memchr(data + at, '\n', size - at);
        if (end == nullptr) return;
        at = static_cast<size_t>(static_cast<const unsigned char*>(end) - data) + 1;
      }
    }
  }
}

}  // namespace detail

/// Loads `path`, which must hold a dict whose keys are strings and whose values are tensors (other values,
/// such as the `_metadata` of a state dict, are skipped). Errors name the file and the offending entry.
inline TensorDict load_tensor_dict(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  TRIDENT_CHECK(file.good(), "trident::io::load_tensor_dict: cannot open '{}'", path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  TRIDENT_CHECK(!bytes.empty(), "trident::io::load_tensor_dict: '{}' is empty", path);
  c10::IValue value;
  try {
    // What torch::jit::pickle_load does, over the bounded adapter: the archive "data" of the zip and its tensors
    // (the empty optionals: {} suits LibTorch 1.13's c10::optional and 2.x's std::optional alike).
    caffe2::serialize::PyTorchStreamReader reader(std::make_shared<detail::BoundedBytes>(std::move(bytes)));
    if (reader.hasRecord("data.pkl")) {
      const auto record = reader.getRecord("data.pkl");
      detail::check_pickle_lengths(static_cast<const unsigned char*>(std::get<0>(record).get()),
                                   std::get<1>(record), path);
    }
    value = torch::jit::readArchiveAndTensors("data", /*pickle_prefix=*/"", /*tensor_prefix=*/"",
                                              /*type_resolver=*/{}, /*obj_loader=*/{}, /*device=*/{}, reader);
  } catch (const trident::Error&) {
    throw;
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
