#pragma once
// Counts, on any device, the operators whose result the host must read before it can go on: on CUDA each of
// them waits for the device (a stream synchronisation), so a path that calls none of them can run ahead of the
// GPU. LibTorch's RecordFunction callbacks see every operator that goes through the dispatcher, nested ones
// included (boolean indexing calls nonzero), on the thread that installed the probe. What it cannot see: a copy
// to the host of a tensor already on the host (`.cpu()` of a CPU tensor dispatches nothing), so the GPU machine's
// sync debug mode stays the final word (tests/cuda/test_cuda_sync.cpp); this probe is its CPU proxy, which CI runs.
// Reads inside the library's host-only paths (trident::detail::HostPath: CPU kernels checking their own inputs)
// are not counted; run the path under trident::ValueChecksScope(ValueChecks::none) so that argument checks take
// a GPU's branch.
#include <trident/config.hpp>

#include <ATen/record_function.h>

#include <algorithm>
#include <array>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace trident::test {

/// Operators that hand a device value to the host (item(), nonzero and what calls it, data-dependent shapes).
inline bool reads_on_host(std::string_view op) {
  static constexpr std::array<std::string_view, 9> names = {
      "aten::_local_scalar_dense", "aten::nonzero",     "aten::masked_select", "aten::_unique2",
      "aten::unique_consecutive",  "aten::unique_dim", "aten::is_nonzero",    "aten::equal",
      "aten::repeat_interleave"};
  return std::find(names.begin(), names.end(), op) != names.end();
}

/// Installs the probe for its lifetime (this thread only).
class HostReadProbe {
 public:
  HostReadProbe() {
    handle_ = at::addThreadLocalCallback(
        at::RecordFunctionCallback(
            [](const at::RecordFunction& fn) -> std::unique_ptr<at::ObserverContext> {
              auto* self = current();
              if (self != nullptr) self->seen(fn.name());
              return nullptr;
            })
            .scopes({at::RecordScope::FUNCTION}));
    previous_ = current();
    current() = this;
  }
  ~HostReadProbe() {
    at::removeCallback(handle_);
    current() = previous_;
  }
  HostReadProbe(const HostReadProbe&) = delete;
  HostReadProbe& operator=(const HostReadProbe&) = delete;

  /// Host reads so far, in call order; each with the `context` operators called before it.
  const std::vector<std::string>& reads() const { return reads_; }
  int64_t count() const { return static_cast<int64_t>(reads_.size()); }
  /// Host reads by operator name.
  std::map<std::string, int64_t> by_operator() const {
    std::map<std::string, int64_t> out;
    for (const auto& r : reads_) ++out[r.substr(0, r.find(' '))];  // the operator: the entry's first word
    return out;
  }
  int64_t context = 0;

 private:
  static HostReadProbe*& current() {
    thread_local HostReadProbe* probe = nullptr;
    return probe;
  }
  void seen(const char* name) {
    const std::string op = name == nullptr ? std::string() : std::string(name);
    if (reads_on_host(op) && trident::detail::host_path_depth() == 0) {
      std::string entry = op;
      if (context > 0) {
        entry += "  after:";
        const auto n = std::min<size_t>(static_cast<size_t>(context), recent_.size());
        for (size_t i = recent_.size() - n; i < recent_.size(); ++i) entry += " " + recent_[i];
      }
      reads_.push_back(entry);
    }
    if (context > 0) {
      recent_.push_back(op);
      if (recent_.size() > 64) recent_.erase(recent_.begin(), recent_.begin() + 32);
    }
  }

  at::CallbackHandle handle_ = 0;
  HostReadProbe* previous_ = nullptr;
  std::vector<std::string> reads_, recent_;
};

}  // namespace trident::test
