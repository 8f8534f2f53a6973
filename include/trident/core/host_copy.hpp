#pragma once
/// \file trident/core/host_copy.hpp
/// A tensor's copy on the host, started without waiting and read later. On a GPU, `tensor.cpu()` waits for
/// everything queued on the stream before it; a HostCopy queues the copy instead (into pinned memory, LibTorch's
/// non-blocking device-to-host copy) and records an event behind it, and get() waits for that event only. Taken
/// early (the RoI sampler's pids) and read late (the re-id memory's update), the wait costs the host little
/// and leaves the device busy with what was queued after the copy. A CPU tensor is its own copy.
/// to_device() is the other direction: a host tensor to a device without waiting.

#include <trident/config.hpp>

#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <memory>
#include <thread>

namespace trident {

class HostCopy {
 public:
  HostCopy() = default;
  explicit HostCopy(const at::Tensor& tensor) {
    if (!tensor.defined() || tensor.device().is_cpu()) {
      host_ = tensor;
      return;
    }
    const auto device = tensor.device();
    host_ = tensor.detach().to(at::kCPU, /*non_blocking=*/true);
    const c10::impl::VirtualGuardImpl guard(device.type());
    event_ = std::make_shared<c10::Event>(device.type());
    event_->record(guard.getStream(device));
  }

  /// The host tensor, once the copy has arrived (the first call waits for it).
  const at::Tensor& get() const {
    if (event_) {
      while (!event_->query()) std::this_thread::yield();
      event_.reset();
    }
    return host_;
  }
  bool defined() const { return host_.defined(); }

 private:
  at::Tensor host_;
  mutable std::shared_ptr<c10::Event> event_;
};

/// A host tensor on `device`. To a CUDA device it goes through pinned memory without waiting: a copy from
/// pageable memory waits for everything queued on the stream first. The pinned block is reused only once the
/// copy is done (LibTorch's caching host allocator records the stream).
inline at::Tensor to_device(const at::Tensor& host, const at::Device& device) {
  if (host.device() == device) return host;
  if (device.is_cuda() && host.device().is_cpu()) return host.pin_memory().to(device, /*non_blocking=*/true);
  return host.to(device);
}

}  // namespace trident
