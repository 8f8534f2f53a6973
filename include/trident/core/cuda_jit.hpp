#pragma once
/// \file trident/core/cuda_jit.hpp
/// trident::CudaJit: CUDA kernels written in a header, compiled at run time with NVRTC for the GPU the program
/// runs on, and launched on LibTorch's current stream. It keeps trident header-only: no nvcc, no CUDA language in
/// the user's build, no library to link beyond LibTorch's own.
///
///   static trident::CudaJit jit("trident::ops::roi_align", kSource, {"roi_align_forward_f32", ...});
///   static const size_t forward = jit.kernel_index("roi_align_forward_f32");   // once: launches take indices
///   jit.launch(forward, device, {blocks, 1}, threads, args);   // void* args[], CUDA's convention
///
/// NVRTC and the CUDA driver are opened with dlopen on first use: NVRTC of the CUDA major version LibTorch was
/// built with, found where LibTorch's CUDA runtime was loaded from (pip's wheels keep it in nvidia/cu*/lib),
/// already loaded, on the library path, or in /usr/local/cuda; the driver as libcuda.so.1. A source is
/// compiled once per program and device kind (sm_XY of the device, or PTX for the newest architecture NVRTC
/// knows when the device is newer), loaded once per device, and each launch is asynchronous on
/// c10::cuda::getCurrentCUDAStream() (CUDA graphs capture it). Compilation errors throw with NVRTC's log.
///
/// `available()` says whether it can work here and, if not, why; callers keep a fallback for that case (a
/// CPU-only LibTorch, TRIDENT_WITH_CUDA unset, no NVRTC library, or TRIDENT_CUDA_JIT=0 in the environment).
#include <trident/config.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <array>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(TRIDENT_WITH_CUDA) && TRIDENT_WITH_CUDA && defined(__has_include) && !defined(TRIDENT_NO_CUDA_JIT)
#if __has_include(<cuda_runtime_api.h>) && __has_include(<c10/cuda/CUDAStream.h>) && __has_include(<dlfcn.h>)
#define TRIDENT_HAS_CUDA_JIT 1
#endif
#endif
#ifndef TRIDENT_HAS_CUDA_JIT
#define TRIDENT_HAS_CUDA_JIT 0
#endif

#if TRIDENT_HAS_CUDA_JIT
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#endif

#include <c10/core/Device.h>

namespace trident {

namespace jit_detail {

/// The NVRTC and driver entry points used, declared with their C signatures (enums as int, handles as void*):
/// no CUDA header is needed for them, and nothing is linked.
struct Nvrtc {
  using Program = void*;
  const char* (*GetErrorString)(int) = nullptr;
  int (*Version)(int*, int*) = nullptr;
  int (*CreateProgram)(Program*, const char*, const char*, int, const char* const*, const char* const*) = nullptr;
  int (*CompileProgram)(Program, int, const char* const*) = nullptr;
  int (*GetProgramLogSize)(Program, size_t*) = nullptr;
  int (*GetProgramLog)(Program, char*) = nullptr;
  int (*GetCUBINSize)(Program, size_t*) = nullptr;
  int (*GetCUBIN)(Program, char*) = nullptr;
  int (*GetPTXSize)(Program, size_t*) = nullptr;
  int (*GetPTX)(Program, char*) = nullptr;
  int (*DestroyProgram)(Program*) = nullptr;
  int (*GetNumSupportedArchs)(int*) = nullptr;
  int (*GetSupportedArchs)(int*) = nullptr;
  std::string path;   ///< the library that was opened
  std::string error;  ///< why it could not be opened (empty when it was)
};

struct Driver {
  int (*GetErrorString)(int, const char**) = nullptr;
  int (*CtxGetCurrent)(void**) = nullptr;
  int (*ModuleLoadData)(void**, const void*) = nullptr;
  int (*ModuleGetFunction)(void**, void*, const char*) = nullptr;
  int (*LaunchKernel)(void*, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void*, void**,
                      void**) = nullptr;
  std::string error;
};

inline bool disabled_by_environment() {
  const char* v = std::getenv("TRIDENT_CUDA_JIT");
  return v != nullptr && (std::string_view(v) == "0" || std::string_view(v) == "off");
}

#if TRIDENT_HAS_CUDA_JIT
template <typename F>
bool bind(void* library, const char* name, F& fn, std::string& error) {
  fn = reinterpret_cast<F>(dlsym(library, name));
  if (fn == nullptr && error.empty()) error = fmt::format("no symbol {}", name);
  return fn != nullptr;
}

/// The folder of the shared library that defines `symbol` (empty if none does).
inline std::string folder_of_symbol(const char* symbol) {
  void* address = dlsym(RTLD_DEFAULT, symbol);
  Dl_info info{};
  if (address == nullptr || dladdr(address, &info) == 0 || info.dli_fname == nullptr) return {};
  const std::string path = info.dli_fname;
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

inline Nvrtc open_nvrtc() {
  Nvrtc api;
  const std::string soname = fmt::format("libnvrtc.so.{}", CUDART_VERSION / 1000);
  std::vector<std::string> candidates;
  if (const auto cudart = folder_of_symbol("cudaGetDevice"); !cudart.empty())
    candidates.push_back(cudart + "/" + soname);
  candidates.insert(candidates.end(), {soname, "libnvrtc.so", "/usr/local/cuda/lib64/" + soname});
  void* library = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);  // already in the process
  if (library != nullptr) api.path = soname;
  std::vector<std::string> failures;
  for (const auto& c : candidates) {
    if (library != nullptr) break;
    library = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (library != nullptr) {
      api.path = c;
    } else {
      const char* why = dlerror();
      failures.push_back(fmt::format("{} ({})", c, why ? why : "not found"));
    }
  }
  if (library == nullptr) {
    api.error = fmt::format("NVRTC not found: tried {}", fmt::join(failures, "; "));
    return api;
  }
  std::string missing;
  bool ok = bind(library, "nvrtcGetErrorString", api.GetErrorString, missing) &&
            bind(library, "nvrtcVersion", api.Version, missing) &&
            bind(library, "nvrtcCreateProgram", api.CreateProgram, missing) &&
            bind(library, "nvrtcCompileProgram", api.CompileProgram, missing) &&
            bind(library, "nvrtcGetProgramLogSize", api.GetProgramLogSize, missing) &&
            bind(library, "nvrtcGetProgramLog", api.GetProgramLog, missing) &&
            bind(library, "nvrtcGetCUBINSize", api.GetCUBINSize, missing) &&
            bind(library, "nvrtcGetCUBIN", api.GetCUBIN, missing) &&
            bind(library, "nvrtcGetPTXSize", api.GetPTXSize, missing) &&
            bind(library, "nvrtcGetPTX", api.GetPTX, missing) &&
            bind(library, "nvrtcDestroyProgram", api.DestroyProgram, missing) &&
            bind(library, "nvrtcGetNumSupportedArchs", api.GetNumSupportedArchs, missing) &&
            bind(library, "nvrtcGetSupportedArchs", api.GetSupportedArchs, missing);
  if (!ok) api.error = fmt::format("{}: {}", api.path, missing);
  return api;
}

inline Driver open_driver() {
  Driver api;
  void* library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* why = dlerror();
    api.error = fmt::format("the CUDA driver libcuda.so.1 could not be opened ({})", why ? why : "not found");
    return api;
  }
  std::string missing;
  const bool ok = bind(library, "cuGetErrorString", api.GetErrorString, missing) &&
                  bind(library, "cuCtxGetCurrent", api.CtxGetCurrent, missing) &&
                  bind(library, "cuModuleLoadData", api.ModuleLoadData, missing) &&
                  bind(library, "cuModuleGetFunction", api.ModuleGetFunction, missing) &&
                  bind(library, "cuLaunchKernel", api.LaunchKernel, missing);
  if (!ok) api.error = fmt::format("libcuda.so.1: {}", missing);
  return api;
}
#endif

#if !TRIDENT_HAS_CUDA_JIT
inline constexpr const char* no_cuda =
    "this build has no CUDA (TRIDENT_WITH_CUDA unset or the CUDA runtime's headers missing)";
inline Nvrtc open_nvrtc() {
  Nvrtc api;
  api.error = no_cuda;
  return api;
}
inline Driver open_driver() {
  Driver api;
  api.error = no_cuda;
  return api;
}
#endif

inline const Nvrtc& nvrtc() {
  static const Nvrtc api = open_nvrtc();
  return api;
}
inline const Driver& driver() {
  static const Driver api = open_driver();
  return api;
}

inline std::string nvrtc_message(int code) {
  const auto& api = nvrtc();
  return api.GetErrorString ? api.GetErrorString(code) : fmt::format("NVRTC error {}", code);
}

}  // namespace jit_detail

/// A CUDA C++ source compiled at run time (see the file comment).
class CudaJit {
 public:
  /// `name` names the source in messages; `kernels` are the extern "C" __global__ functions of `source` that
  /// launch() may call.
  CudaJit(std::string name, std::string source, std::vector<std::string> kernels)
      : name_(std::move(name)), source_(std::move(source)), kernels_(std::move(kernels)) {}

  /// Whether kernels can be compiled and launched in this build and process; otherwise `why` says why.
  static bool available(std::string* why = nullptr) {
    auto say = [&](std::string reason) {
      if (why) *why = std::move(reason);
      return false;
    };
    if (jit_detail::disabled_by_environment()) return say("TRIDENT_CUDA_JIT=0 in the environment");
    if (!jit_detail::nvrtc().error.empty()) return say(jit_detail::nvrtc().error);
    if (!jit_detail::driver().error.empty()) return say(jit_detail::driver().error);
    return true;
  }

  /// Whether compile() works here (NVRTC found; no GPU needed); otherwise `why` says why.
  static bool can_compile(std::string* why = nullptr) {
    const auto& api = jit_detail::nvrtc();
    if (api.error.empty()) return true;
    if (why) *why = api.error;
    return false;
  }

  /// NVRTC's version (major * 1000 + minor * 10, like CUDART_VERSION), 0 when it is not available.
  static int nvrtc_version() {
    const auto& api = jit_detail::nvrtc();
    int major = 0, minor = 0;
    if (!api.error.empty() || api.Version(&major, &minor) != 0) return 0;
    return major * 1000 + minor * 10;
  }

  /// Compiles the source for `arch` ("sm_90": machine code, "compute_90": PTX) and returns the image; throws
  /// with NVRTC's log when it does not compile. Needs no GPU (tests compile the sources on any machine).
  std::string compile(const std::string& arch) const {
    const auto& api = jit_detail::nvrtc();
    TRIDENT_CHECK(api.error.empty(), "{}: cannot compile CUDA kernels: {}", name_, api.error);
    jit_detail::Nvrtc::Program program = nullptr;
    int rc = api.CreateProgram(&program, source_.c_str(), (name_ + ".cu").c_str(), 0, nullptr, nullptr);
    TRIDENT_CHECK(rc == 0, "{}: nvrtcCreateProgram failed: {}", name_, jit_detail::nvrtc_message(rc));
    const std::string arch_option = "--gpu-architecture=" + arch;
    const char* options[] = {arch_option.c_str(), "--std=c++17", "--dopt=on", "-default-device"};
    rc = api.CompileProgram(program, 4, options);
    std::string log;
    size_t log_size = 0;
    if (api.GetProgramLogSize(program, &log_size) == 0 && log_size > 1) {
      log.resize(log_size);
      api.GetProgramLog(program, log.data());
      log.resize(log_size - 1);
    }
    if (rc != 0) {
      api.DestroyProgram(&program);
      trident::fail("{}: NVRTC could not compile it for {}: {}\n{}", name_, arch, jit_detail::nvrtc_message(rc), log);
    }
    const bool machine_code = arch.rfind("sm_", 0) == 0;
    size_t size = 0;
    rc = machine_code ? api.GetCUBINSize(program, &size) : api.GetPTXSize(program, &size);
    std::string image(size, '\0');
    if (rc == 0) rc = machine_code ? api.GetCUBIN(program, image.data()) : api.GetPTX(program, image.data());
    api.DestroyProgram(&program);
    TRIDENT_CHECK(rc == 0, "{}: NVRTC could not return the compiled image: {}", name_, jit_detail::nvrtc_message(rc));
    return image;
  }

  /// The architecture compile() targets for a device of compute capability major.minor: its own sm_XY where
  /// NVRTC knows it, else PTX of the newest architecture NVRTC knows (the driver compiles it for the device).
  static std::string architecture_for(int major, int minor) {
    const auto& api = jit_detail::nvrtc();
    const int wanted = major * 10 + minor;
    int count = 0;
    if (!api.error.empty() || api.GetNumSupportedArchs(&count) != 0 || count <= 0) return fmt::format("sm_{}", wanted);
    std::vector<int> archs(static_cast<size_t>(count));
    api.GetSupportedArchs(archs.data());
    int newest_below = 0;
    for (int a : archs) {
      if (a == wanted) return fmt::format("sm_{}", wanted);
      if (a < wanted && a > newest_below) newest_below = a;
    }
    TRIDENT_CHECK(newest_below > 0, "NVRTC ({}) knows no architecture at or below sm_{}", api.path, wanted);
    return fmt::format("compute_{}", newest_below);
  }

  /// The position of the kernel named `name` among the constructor's names: what launch() takes.
  size_t kernel_index(std::string_view name) const {
    for (size_t k = 0; k < kernels_.size(); ++k)
      if (kernels_[k] == name) return k;
    trident::fail("{}: no kernel named {}", name_, name);
  }

  /// Launches kernel number `kernel` (kernel_index; the constructor's order) on `device` with CUDA's argument
  /// convention (an array of pointers to the arguments), asynchronously on the device's current stream: a grid
  /// of blocks.x * blocks.y blocks of `threads` threads, with `shared_bytes` of dynamic shared memory per block
  /// (at most 48 KiB).
  void launch(size_t kernel, const c10::Device& device, std::array<unsigned, 2> blocks, unsigned threads,
              void** args, unsigned shared_bytes = 0) const {
    TRIDENT_CHECK(kernel < kernels_.size(), "{}: no kernel number {} (it has {})", name_, kernel, kernels_.size());
#if TRIDENT_HAS_CUDA_JIT
    TRIDENT_CHECK(device.is_cuda(), "{}: kernels launch on a CUDA device, not {}", name_, device.str());
    const c10::cuda::CUDAGuard guard(device);
    const auto& functions = loaded(device.index());
    const auto stream = c10::cuda::getCurrentCUDAStream(device.index());
    const int rc = jit_detail::driver().LaunchKernel(functions[kernel], blocks[0], blocks[1], 1, threads, 1, 1,
                                                     shared_bytes, static_cast<void*>(stream.stream()), args, nullptr);
    TRIDENT_CHECK(rc == 0, "{}: launching {} ({} x {} blocks of {}, {} bytes shared) failed: {}", name_,
                  kernels_[kernel], blocks[0], blocks[1], threads, shared_bytes, driver_message(rc));
#else
    (void)device, (void)blocks, (void)threads, (void)args, (void)shared_bytes;
    trident::fail("{}: this build has no CUDA", name_);
#endif
  }

 private:
#if TRIDENT_HAS_CUDA_JIT
  static std::string driver_message(int code) {
    const char* text = nullptr;
    if (jit_detail::driver().GetErrorString) jit_detail::driver().GetErrorString(code, &text);
    return text ? std::string(text) : fmt::format("CUDA driver error {}", code);
  }

  /// The kernels' handles on `device` (the current device): compiled and loaded on first use.
  const std::vector<void*>& loaded(c10::DeviceIndex index) const {
    const std::lock_guard<std::mutex> lock(mutex_);
    auto found = modules_.find(index);
    if (found != modules_.end()) return found->second;
    std::string why;
    TRIDENT_CHECK(available(&why), "{}: CUDA kernels cannot be compiled here: {}", name_, why);
    const auto& drv = jit_detail::driver();
    void* context = nullptr;
    if (drv.CtxGetCurrent(&context) != 0 || context == nullptr) {
      (void)cudaFree(nullptr);  // makes the device's primary context (LibTorch's) current on this thread
      drv.CtxGetCurrent(&context);
    }
    TRIDENT_CHECK(context != nullptr, "{}: no CUDA context on device {}", name_, static_cast<int>(index));
    const auto* props = at::cuda::getDeviceProperties(index);
    const std::string arch = architecture_for(props->major, props->minor);
    auto image = images_.find(arch);
    if (image == images_.end()) image = images_.emplace(arch, compile(arch)).first;
    void* module = nullptr;
    int rc = drv.ModuleLoadData(&module, image->second.data());
    TRIDENT_CHECK(rc == 0, "{}: loading its {} image on device {} failed: {}", name_, arch, static_cast<int>(index),
                  driver_message(rc));
    std::vector<void*> functions;
    for (const auto& k : kernels_) {
      void* f = nullptr;
      rc = drv.ModuleGetFunction(&f, module, k.c_str());
      TRIDENT_CHECK(rc == 0, "{}: the compiled source has no kernel {}: {}", name_, k, driver_message(rc));
      functions.push_back(f);
    }
    return modules_.emplace(index, std::move(functions)).first->second;
  }

  mutable std::mutex mutex_;
  mutable std::unordered_map<std::string, std::string> images_;             // architecture -> image
  mutable std::unordered_map<c10::DeviceIndex, std::vector<void*>> modules_;  // device -> kernel handles
#endif
  std::string name_;
  std::string source_;
  std::vector<std::string> kernels_;
};

}  // namespace trident
