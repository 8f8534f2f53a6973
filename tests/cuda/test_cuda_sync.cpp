// Host-device synchronisation on the inference path (docs/cuda-tests.md, "Synchronisation"). CUDA's sync debug
// mode (c10::cuda::SyncDebugMode::L_WARN) makes LibTorch warn at every call that waits for the device: a copy to
// the host, .item(), nonzero(), a copy from pageable host memory, a stream or device synchronize. SyncRecorder
// installs a c10::WarningHandler that counts those warnings in a scope, keeps a backtrace of each and prints the
// distinct call sites (the ATen operator and trident's functions around it). The RoI pooler must not synchronise
// at all, forward or backward; detect() and describe() report their synchronising calls and stay within a stated
// budget. CUDA only; the recorder's own test runs wherever LibTorch has c10_cuda (no GPU needed).
#include "cuda_support.hpp"

#include <trident/core/host_copy.hpp>
#include <trident/data/toy_scenes.hpp>
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>
#include <trident/ops/nms.hpp>
#include <trident/ops/roi_align.hpp>
#include <trident/roi/pooler.hpp>
#include <trident/train/trainer.hpp>

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randn.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

// The recorder needs c10's CUDA sync debug mode (c10/cuda/CUDAFunctions.h, linked through c10_cuda: CMake defines
// TRIDENT_CUDA_TESTS_WITH_C10_CUDA) and the warning-handler API of LibTorch 2.1 and later (c10::Warning objects,
// c10::WarningUtils). A CPU-only LibTorch (Debian's 1.13) builds these tests as skips.
#if defined(TRIDENT_CUDA_TESTS_WITH_C10_CUDA) && __has_include(<c10/cuda/CUDAFunctions.h>) && \
    __has_include(<cuda_runtime_api.h>) && (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1))
#define TRIDENT_SYNC_DEBUG 1
#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/Backtrace.h>
#include <c10/util/Exception.h>
#else
#define TRIDENT_SYNC_DEBUG 0
#endif

using namespace trident;
using cuda_test::person_rois;
using cuda_test::report_skip;

#if TRIDENT_SYNC_DEBUG

namespace trident::cuda_test {

/// What c10 warns at a synchronising CUDA call in warn mode, and throws in error mode:
/// c10::cuda::warn_or_error_on_sync() (c10/cuda/CUDAFunctions.cpp). The text is in libc10_cuda.so of
/// LibTorch 2.11 (`strings libc10_cuda.so | grep -i synchroniz`), unchanged since the mode appeared (1.10).
inline constexpr std::string_view sync_warning_text = "called a synchronizing CUDA operation";

inline std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

/// Whether a warning or error message is the sync debug mode's: the text above in any letter case, or, should a
/// later LibTorch reword it, any message about "synchroniz..." raised from c10/cuda/CUDAFunctions.
inline bool is_sync_message(std::string_view msg, std::string_view file = {}) {
  const auto m = lowercase(msg);
  if (m.find(lowercase(sync_warning_text)) != std::string::npos) return true;
  return m.find("synchroniz") != std::string::npos && file.find("CUDAFunctions") != std::string_view::npos;
}

/// The function of one line of c10::get_backtrace(), "frame #3: NAME + 0x61 (0x55d0 in /path/lib.so)" -> NAME
/// ("<unknown function>" for an address without a symbol). Another format gives the line itself.
inline std::string frame_function(const std::string& line) {
  if (line.rfind("frame #", 0) != 0) return line;
  const auto start = line.find(": ");
  if (start == std::string::npos) return line;
  const auto end = line.rfind(" + 0x");
  return end == std::string::npos || end < start + 2 ? line.substr(start + 2) : line.substr(start + 2, end - start - 2);
}

/// A demangled function name without its return type, template arguments and parameters:
/// "at::Tensor trident::ops::f<float>(at::Tensor const&)::{lambda()#1}::operator()() const" -> "trident::ops::f",
/// "trident::TridentNet<trident::Config<...> >::detect(trident::ImageBatch const&)" -> "trident::TridentNet<>::detect".
/// A name whose angle brackets do not balance comes back unchanged.
inline std::string short_name(std::string_view name) {
  constexpr std::string_view anonymous = "(anonymous namespace)", op = "operator";
  const auto ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; };
  std::string out;
  int depth = 0;
  size_t i = 0;
  while (i < name.size()) {
    const auto rest = name.substr(i);
    if (rest.substr(0, anonymous.size()) == anonymous) {
      if (depth == 0) out += anonymous;
      i += anonymous.size();
    } else if (rest.substr(0, op.size()) == op && (i == 0 || !ident(name[i - 1])) &&
               (rest.size() == op.size() || !ident(rest[op.size()]))) {
      size_t j = op.size();  // the operator's symbol: "()", "<<", "->", or a conversion's type (" bool")
      if (rest.substr(j, 2) == "()") {
        j += 2;
      } else if (j < rest.size() && rest[j] == ' ') {
        while (j < rest.size() && rest[j] != '(') ++j;
      } else {
        while (j < rest.size() && std::string_view("+-*/%^&|~!=<>,[]").find(rest[j]) != std::string_view::npos) ++j;
      }
      if (depth == 0) out += rest.substr(0, j);
      i += j;
    } else if (name[i] == '<') {
      if (depth == 0) out += "<>";
      ++depth;
      ++i;
    } else if (name[i] == '>') {
      if (--depth < 0) return std::string(name);
      ++i;
    } else if (depth == 0 && name[i] == '(') {
      break;  // the parameter list
    } else if (depth == 0 && name[i] == ' ') {
      // Before a name, what came before was the return type (function templates carry one); else a space to drop
      // ("operator<< <char>").
      if (i + 1 < name.size() && (ident(name[i + 1]) || name[i + 1] == ':')) out.clear();
      ++i;
    } else {
      if (depth == 0) out += name[i];
      ++i;
    }
  }
  return depth == 0 && !out.empty() ? out : std::string(name);
}

/// Counts the synchronising CUDA calls made in its scope on this thread (and, replayed by autograd when
/// backward() returns, on autograd's device threads), keeping a backtrace of each: sets the sync debug mode to warn
/// and installs itself as the thread's c10 warning handler; stop() or the destructor restores both. Other warnings
/// go on to the previous handler.
class SyncRecorder final : public c10::WarningHandler {
 public:
  /// One place that synchronised: the ATen operator (the outermost at::_ops frame below trident's frames) and
  /// trident's functions around it, innermost first.
  struct Site {
    std::string op;
    std::vector<std::string> trident;
    int64_t count = 0;
    std::string backtrace;  ///< of the first call from here
  };

  explicit SyncRecorder(std::string scope)
      : scope_(std::move(scope)),
        previous_handler_(c10::WarningUtils::get_warning_handler()),
        previous_mode_(c10::cuda::warning_state().get_sync_debug_mode()) {
    c10::WarningUtils::set_warning_handler(this);
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_WARN);
  }
  ~SyncRecorder() override { stop(); }
  SyncRecorder(const SyncRecorder&) = delete;
  SyncRecorder& operator=(const SyncRecorder&) = delete;

  /// Ends the recording (the mode and handler before it again); idempotent.
  void stop() {
    if (!active_) return;
    active_ = false;
    c10::cuda::warning_state().set_sync_debug_mode(previous_mode_);
    c10::WarningUtils::set_warning_handler(previous_handler_);
  }

  void process(const c10::Warning& warning) override {
    try {
      if (!is_sync_message(warning.msg(), warning.source_location().file ? warning.source_location().file : "")) {
        {
          const std::lock_guard<std::mutex> lock(mutex_);
          other_warnings_.push_back(warning.msg());
        }
        if (previous_handler_ != nullptr && previous_handler_ != this) previous_handler_->process(warning);
        return;
      }
      const std::lock_guard<std::mutex> lock(mutex_);
      ++count_;
      if (kept_ >= max_backtraces) return;  // counted, not located
      ++kept_;
      add(c10::get_backtrace(/*frames_to_skip=*/0, /*maximum_number_of_frames=*/160));
    } catch (...) {
      // A warning handler must not throw into the operator that warned; count what can be counted.
    }
  }

  int64_t count() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return count_;
  }
  std::vector<std::string> other_warnings() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return other_warnings_;
  }
  /// The sites, most calls first.
  std::vector<Site> sites() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    std::vector<Site> out;
    for (const auto& [key, site] : sites_) out.push_back(site);
    std::stable_sort(out.begin(), out.end(), [](const Site& a, const Site& b) { return a.count > b.count; });
    return out;
  }

  /// "trident-sync: <scope>: N synchronising calls at K sites", then one line per site:
  /// "trident-sync:   12x  at::_ops::item  in  trident::ops::validate_boxes < trident::ops::nms < ...".
  /// With `backtraces`, each site's first backtrace (its named frames) after its line.
  std::string report(bool backtraces = false) const {
    const auto all = sites();
    const int64_t n = count();
    std::ostringstream s;
    s << "trident-sync: " << scope_ << ": " << n << " synchronising call" << (n == 1 ? "" : "s") << " at "
      << all.size() << " site" << (all.size() == 1 ? "" : "s");
    if (n > kept_) s << " (the last " << n - kept_ << " counted without a backtrace)";
    s << "\n";
    for (const auto& site : all) {
      s << "trident-sync:   " << site.count << "x  " << site.op << "  in  ";
      for (size_t i = 0; i < site.trident.size(); ++i) s << (i ? " < " : "") << site.trident[i];
      s << "\n";
      if (backtraces) {
        std::istringstream lines(site.backtrace);
        for (std::string line; std::getline(lines, line);)
          if (line.find("<unknown function>") == std::string::npos) s << "trident-sync:       " << line << "\n";
      }
    }
    const auto others = other_warnings();
    if (!others.empty()) s << "trident-sync: (and " << others.size() << " other warnings, passed on)\n";
    return s.str();
  }

  /// Backtraces kept (symbolising one costs about a millisecond); calls beyond are only counted.
  static constexpr int64_t max_backtraces = 4096;

 private:
  void add(std::string backtrace) {
    std::vector<std::string> functions;
    std::istringstream lines(backtrace);
    for (std::string line; std::getline(lines, line);)
      if (!line.empty()) functions.push_back(frame_function(line));
    std::vector<std::string> trident;
    size_t first_trident = functions.size();
    bool replayed = false;
    for (size_t i = 0; i < functions.size(); ++i) {
      const auto name = short_name(functions[i]);
      if (functions[i].find("replay_warnings") != std::string::npos) replayed = true;
      if (name.rfind("trident::", 0) != 0 || name.find("SyncRecorder") != std::string::npos) continue;
      if (first_trident == functions.size()) first_trident = i;
      if (trident.size() < 8 && (trident.empty() || trident.back() != name)) trident.push_back(name);
    }
    // The operator: the outermost at::_ops frame below trident's first frame; else the first named frame after
    // c10's warning machinery (e.g. c10::cuda::device_synchronize, or autograd's replay after a backward pass).
    std::string op;
    for (size_t i = 0; i < first_trident; ++i) {
      const auto name = short_name(functions[i]);
      if (name.rfind("at::_ops::", 0) == 0) {
        op = name;
        for (const std::string_view tail : {"::call", "::redispatch"})
          if (op.size() > tail.size() && op.compare(op.size() - tail.size(), tail.size(), tail) == 0)
            op.erase(op.size() - tail.size());
      }
    }
    if (op.empty()) {
      for (size_t i = 0; i < first_trident; ++i) {
        const auto name = short_name(functions[i]);
        if (functions[i].find("unknown function") != std::string::npos || name.rfind("c10::warn", 0) == 0 ||
            name.find("warn_or_error_on_sync") != std::string::npos || name.find("SyncRecorder") != std::string::npos ||
            name.rfind("c10::Warning", 0) == 0 || name.rfind("__libc", 0) == 0 || name == "_start")
          continue;
        op = name;
        break;
      }
    }
    if (op.empty()) op = "(no named operator frame)";
    if (replayed)  // trident's frames, if any, are backward()'s caller's
      op = "(a backward pass: autograd replays its device threads' warnings when backward() returns, so the "
           "function that synchronised is not in this backtrace; see the error-mode output)";
    if (trident.empty()) trident.push_back("(no trident frame in the backtrace)");
    std::string key = op;
    for (const auto& t : trident) key += " | " + t;
    auto& site = sites_[key];
    if (site.count++ == 0) {
      site.op = op;
      site.trident = trident;
      site.backtrace = std::move(backtrace);
    }
  }

  std::string scope_;
  c10::WarningHandler* previous_handler_;
  c10::cuda::SyncDebugMode previous_mode_;
  bool active_ = true;
  mutable std::mutex mutex_;
  int64_t count_ = 0, kept_ = 0;
  std::map<std::string, Site> sites_;
  std::vector<std::string> other_warnings_;
};

/// The sync debug mode set to `mode` for the guard's lifetime.
class SyncModeGuard {
 public:
  explicit SyncModeGuard(c10::cuda::SyncDebugMode mode) : previous_(c10::cuda::warning_state().get_sync_debug_mode()) {
    c10::cuda::warning_state().set_sync_debug_mode(mode);
  }
  ~SyncModeGuard() { c10::cuda::warning_state().set_sync_debug_mode(previous_); }
  SyncModeGuard(const SyncModeGuard&) = delete;
  SyncModeGuard& operator=(const SyncModeGuard&) = delete;

 private:
  c10::cuda::SyncDebugMode previous_;
};

/// Runs `fn` in the sync debug mode's error mode, where the first synchronising call throws, on whichever thread
/// it runs (autograd passes a backward pass's error on to backward()'s caller): that error's message and
/// backtrace, or "" when nothing synchronised. Other exceptions propagate.
template <class Fn>
std::string first_sync_error(Fn&& fn) {
  const SyncModeGuard guard(c10::cuda::SyncDebugMode::L_ERROR);
  try {
    fn();
  } catch (const std::exception& e) {
    if (is_sync_message(e.what())) return e.what();
    throw;
  }
  return {};
}

/// Keeps the first `lines` lines of `text` (a c10::Error's message with its backtrace).
inline std::string head_lines(const std::string& text, int lines) {
  std::istringstream in(text);
  std::string out;
  int n = 0;
  for (std::string line; std::getline(in, line) && n < lines; ++n) out += "trident-sync:   | " + line + "\n";
  return out;
}

inline bool full_backtraces_requested() {
  const char* env = std::getenv("TRIDENT_SYNC_BACKTRACES");
  return env != nullptr && *env != '\0' && std::string_view(env) != "0";
}

/// The recorder's self-test: a function in trident's namespace that warns with c10's text, as the sync debug
/// mode does (not inlined, so that it has its own frame).
[[gnu::noinline]] inline void sync_probe_warning() {
  TORCH_WARN(sync_warning_text);
}

/// A backward pass that synchronises (x.sum().item() on autograd's device thread): checks that the recorder sees
/// synchronising calls made in backward().
struct SynchronisingBackward : public torch::autograd::Function<SynchronisingBackward> {
  static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor& x) { return x.clone(); }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list grad) {
    (void)grad[0].sum().item<float>();
    return {grad[0]};
  }
};

}  // namespace trident::cuda_test

namespace {

using cuda_test::first_sync_error;
using cuda_test::SyncRecorder;

/// A warning handler that counts what reaches it (the recorder's "previous handler" in its self-test).
struct CountingHandler final : public c10::WarningHandler {
  void process(const c10::Warning& w) override { messages.push_back(w.msg()); }
  std::vector<std::string> messages;
};

/// The recorder sees a synchronising call on this thread and one in a backward pass; error mode throws for both.
/// Without this a count of 0 would prove nothing.
void require_recorder_sees_syncs(const c10::Device& device) {
  const auto options = at::TensorOptions().device(device);
  const auto t = at::ones({16}, options);
  {
    SyncRecorder rec("canary: tensor.item() on the device");
    (void)t.sum().item<float>();
    rec.stop();
    std::cout << rec.report();
    REQUIRE_MESSAGE(rec.count() >= 1,
                    "the sync debug mode gave the recorder no warning for tensor.item() on ", device.str(),
                    ": it cannot see synchronising calls here (warning text changed? expected '",
                    cuda_test::sync_warning_text, "')");
  }
  {
    const auto x = at::ones({16}, options).requires_grad_(true);
    const auto loss = cuda_test::SynchronisingBackward::apply(x).sum();
    SyncRecorder rec("canary: tensor.item() in a backward pass");
    loss.backward();
    rec.stop();
    std::cout << rec.report();
    CHECK_MESSAGE(rec.count() >= 1,
                  "a synchronising backward pass gave the recorder no warning: backward passes are checked by the "
                  "error-mode pass only");
  }
  {
    const auto x = at::ones({16}, options).requires_grad_(true);
    const auto loss = cuda_test::SynchronisingBackward::apply(x).sum();
    const auto error = first_sync_error([&] { loss.backward(); });
    REQUIRE_MESSAGE(!error.empty(), "error mode did not throw for a synchronising backward pass");
  }
}

/// Prints the recorder's report, and with TRIDENT_SYNC_BACKTRACES=1 (or when `failed`) each site's backtrace.
void print_report(const SyncRecorder& rec, bool failed) {
  const auto text = rec.report(failed || cuda_test::full_backtraces_requested());
  std::cout << text << std::flush;
  MESSAGE(text);
}

/// `forward` and then `backward` (which consumes what `forward` made) make no synchronising call: after a warm-up
/// of both, each is recorded in warn mode, then run again in error mode, which also sees a backward pass wherever
/// autograd runs it (its error reaches backward()'s caller). `what` names the case in the report and messages.
template <class Forward, class Backward>
void check_sync_free(const std::string& what, Forward&& forward, Backward&& backward) {
  forward();  // warm-up: the first calls may load kernels and pick algorithms
  backward();
  {
    SyncRecorder rec(what + ", forward");
    forward();
    rec.stop();
    const bool ok = rec.count() == 0;
    print_report(rec, !ok);
    CHECK_MESSAGE(ok, what, ": the forward pass synchronised ", rec.count(), " times (sites above)");
  }
  {
    SyncRecorder rec(what + ", backward");
    backward();
    rec.stop();
    const bool ok = rec.count() == 0;
    print_report(rec, !ok);
    CHECK_MESSAGE(ok, what, ": the backward pass synchronised ", rec.count(), " times (sites above)");
  }
  const auto forward_error = first_sync_error(forward);
  if (!forward_error.empty())
    std::cout << "trident-sync: " << what << ", forward, error mode:\n" << cuda_test::head_lines(forward_error, 60);
  CHECK_MESSAGE(forward_error.empty(), what, ": error mode threw in the forward pass (first lines above)");
  forward();  // outside error mode: a fresh graph for the backward pass
  const auto backward_error = first_sync_error(backward);
  if (!backward_error.empty())
    std::cout << "trident-sync: " << what << ", backward, error mode:\n" << cuda_test::head_lines(backward_error, 60);
  CHECK_MESSAGE(backward_error.empty(), what, ": error mode threw in the backward pass (first lines above)");
}

/// The sync debug mode watches CUDA only: skips (with the marker) on another device.
bool cuda_only(const c10::Device& device) {
  if (device.is_cuda()) return true;
  report_skip("host-device synchronisation is a CUDA notion: the sync debug mode watches CUDA calls (device " +
              device.str() + ")");
  return false;
}

}  // namespace

#endif  // TRIDENT_SYNC_DEBUG

namespace {

[[maybe_unused]] constexpr std::string_view no_sync_debug =
    "this LibTorch has no c10_cuda (a CPU build) or predates 2.1: no CUDA sync debug mode to record with";

/// The paper's conv4 features of a 608 x 800 picture (stride 16: 38 x 50 cells, 1024 channels): ReLU outputs.
constexpr int64_t feature_h = 38, feature_w = 50, feature_channels = 1024;
constexpr double picture_h = 608, picture_w = 800;

// detect() and describe() of the paper's network on a batch of two 480 x 640 pictures. detect() waits for the
// device once, on purpose: to learn how many detections each picture has (the second NMS's counts), which is the
// size of its output. The RPN's NMS runs on the device and its proposals stay there, padded to the post-NMS count
// (ops::detail::nms_each_padded); everything else (thresholds as masks, the anchors, kept per feature size after
// the warm-up call) needs no wait: 1, whatever the batch size. Before commit 0723cf2 it was about 40 for this
// batch (a nonzero() per threshold, NMS's input checks and copies, per image), then 2 (each NMS's greedy pass on
// the host). Should the first GPU run print more, its report names each extra site: remove it, or raise the
// budget with a comment saying why.
constexpr int64_t kDetectSyncBudget = 1;
// describe() has no selection: the backbone, the RoI pooler (sync-free), the head and the branches' layers. None
// of them needs the host, so the budget is 0; any call the report lists is one to remove.
constexpr int64_t kDescribeSyncBudget = 0;
// A training step's forward pass waits once on purpose: the RPN's NMS of the proposals (the greedy pass runs on
// the device; the wait reads how many proposals each picture kept). Its samplers draw fixed-size samples with device-side counts
// (detector::sample_balanced), its losses select rows by mask, the re-id memory reads the labels from the
// sampler's early host copy (HostCopy, an event rather than a stream synchronisation), and value checks read
// CPU tensors only. The CPU proxy of this test (test_model.cpp, HostReadProbe) runs in CI. Before this budget
// the count was 48 at batch 4 (run D, docs/performance.md). The backward pass and the optimizer step: 0.
constexpr int64_t kTrainForwardSyncBudget = 1;

}  // namespace

TEST_CASE("sync recorder: counts c10's synchronising-call warnings, names the call site, restores mode and handler") {
#if TRIDENT_SYNC_DEBUG
  // No device needed: c10::cuda::warn_or_error_on_sync() is what every synchronising CUDA call runs first.
  using c10::cuda::SyncDebugMode;
  CountingHandler outer;
  const c10::WarningUtils::WarningHandlerGuard outer_guard(&outer);
  const cuda_test::SyncModeGuard disabled(SyncDebugMode::L_DISABLED);
  CHECK(cuda_test::is_sync_message("called a synchronizing CUDA operation"));
  CHECK(cuda_test::is_sync_message("Called a Synchronizing CUDA operation (in mode warn)"));
  CHECK(cuda_test::is_sync_message("synchronizing call", "c10/cuda/CUDAFunctions.cpp"));
  CHECK_FALSE(cuda_test::is_sync_message("synchronizing call", "aten/src/ATen/Foo.cpp"));
  CHECK(cuda_test::short_name("trident::TridentNet<trident::Config<a, b<c> > >::detect(trident::ImageBatch const&)") ==
        "trident::TridentNet<>::detect");
  CHECK(cuda_test::short_name("at::Tensor trident::ops::f<float>(at::Tensor const&)::{lambda(long, long)#1}::"
                              "operator()(long, long) const") == "trident::ops::f<>");
  CHECK(cuda_test::short_name("at::_ops::item::call(at::Tensor const&)") == "at::_ops::item::call");
  CHECK(cuda_test::short_name("std::operator<< <char>(std::ostream&, char const*)") == "std::operator<<<>");
  CHECK(cuda_test::short_name("trident::(anonymous namespace)::g()") == "trident::(anonymous namespace)::g");
  CHECK(cuda_test::frame_function("frame #3: trident::ops::nms(at::Tensor const&) + 0x61 (0x5 in ./x)") ==
        "trident::ops::nms(at::Tensor const&)");
  {
    SyncRecorder rec("self-test");
    CHECK((c10::cuda::warning_state().get_sync_debug_mode() == SyncDebugMode::L_WARN));
    c10::cuda::warn_or_error_on_sync();  // c10's own warning, with its own text
    cuda_test::sync_probe_warning();
    TORCH_WARN("an unrelated warning");
    rec.stop();
    std::cout << rec.report(/*backtraces=*/true);
    CHECK(rec.count() == 2);
    CHECK(rec.other_warnings().size() == 1);
    const auto sites = rec.sites();
    REQUIRE(sites.size() == 2);
    bool probe_named = false;
    for (const auto& site : sites) {
      CHECK(site.count == 1);
      for (const auto& t : site.trident) probe_named = probe_named || t == "trident::cuda_test::sync_probe_warning";
    }
    // Named only where the executable exports trident's symbols (CMake's dynamic list): a note, not a failure.
    if (!probe_named) MESSAGE("the sites do not name trident::cuda_test::sync_probe_warning: the executable's own "
                              "functions have no names in backtraces here (report above)");
    // Stopped: the mode and handler are the previous ones.
    CHECK((c10::cuda::warning_state().get_sync_debug_mode() == SyncDebugMode::L_DISABLED));
    CHECK(c10::WarningUtils::get_warning_handler() == &outer);
  }
  // The unrelated warning went on to the previous handler, the synchronising ones did not.
  REQUIRE(outer.messages.size() == 1);
  CHECK(outer.messages[0].find("an unrelated warning") != std::string::npos);
  // Error mode throws at the first synchronising call.
  const auto error = first_sync_error([] { c10::cuda::warn_or_error_on_sync(); });
  CHECK(cuda_test::is_sync_message(error));
  CHECK(first_sync_error([] {}).empty());
  CHECK((c10::cuda::warning_state().get_sync_debug_mode() == SyncDebugMode::L_DISABLED));
#else
  report_skip(no_sync_debug);
#endif
}

TEST_CASE("sync: the RoI pooler (roi_align, sampling ratio 2) forward and backward never waits for the device") {
  TRIDENT_DEVICE_UNDER_TEST(device);
#if TRIDENT_SYNC_DEBUG
  if (!cuda_only(device)) return;
  require_recorder_sees_syncs(device);
  // The paper's pooler: 24 x 8, stride 16, sampling ratio 2 (torchvision's aligned = false, and aligned = true),
  // 300 RoIs per image (the test-time proposals) on conv4 features of two 608 x 800 pictures, in NCHW and in the
  // channels-last layout the folded backbone produces.
  const auto rois = person_rois(2, 300, picture_h, picture_w, 31).to(device);
  std::vector<at::Tensor> boxes;
  for (int64_t i = 0; i < 2; ++i) boxes.push_back(rois.narrow(0, i * 300, 300).narrow(1, 1, 4).contiguous());
  at::manual_seed(32);
  const auto base = at::randn({2, feature_channels, feature_h, feature_w}, at::TensorOptions().device(device)).relu();
  const auto grad_output = at::randn({600, feature_channels, 24, 8}, at::TensorOptions().device(device));
  for (const bool aligned : {false, true}) {
    for (const bool channels_last : {false, true}) {
      const std::string what = fmt::format("roi_align 24x8 sr 2{}{}", aligned ? " aligned" : "",
                                           channels_last ? ", channels-last features" : "");
      CAPTURE(what);
      const auto features = channels_last ? base.contiguous(at::MemoryFormat::ChannelsLast) : base;
      auto x = features.detach().clone(channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous)
                   .requires_grad_(true);
      at::Tensor y;
      check_sync_free(
          what, [&] { y = ops::roi_align(x, rois, {24, 8}, 1.0 / 16.0, 2, aligned); },
          [&] { (void)torch::autograd::grad({y}, {x}, {grad_output}); });
      // The network's own call: the pooler on per-image boxes, at inference (no autograd).
      roi::RoiAlignPooler<24, 8> pooler(roi::RoiAlignPoolerOptions{1.0 / 16.0, 2, aligned});
      const at::NoGradGuard no_grad;
      (void)pooler(features, boxes);  // warm-up
      SyncRecorder rec(what + ", RoiAlignPooler at inference");
      const auto pooled = pooler(features, boxes);
      rec.stop();
      print_report(rec, rec.count() != 0);
      CHECK_MESSAGE(rec.count() == 0, what, ": RoiAlignPooler synchronised ", rec.count(), " times (sites above)");
      CHECK(pooled.size(0) == 600);
    }
  }
#else
  (void)device;
  report_skip(no_sync_debug);
#endif
}

TEST_CASE("sync: NMS of padded results (the RPN's, in detect()) never waits; nms_each waits once per call") {
  TRIDENT_DEVICE_UNDER_TEST(device);
#if TRIDENT_SYNC_DEBUG
  if (!cuda_only(device)) return;
  require_recorder_sees_syncs(device);
  // Two pictures' RPN candidates at test time: 6000 boxes each at 0.7, masked, capped at 300.
  at::manual_seed(61);
  std::vector<ops::detail::NmsProblem> problems;
  for (int i = 0; i < 2; ++i) {
    ops::detail::NmsProblem p;
    const auto xy = at::rand({6000, 2}, at::TensorOptions().device(device)) * 1200;
    const auto wh = at::rand({6000, 2}, at::TensorOptions().device(device)) * 200 + 8;
    p.boxes = at::cat({xy, xy + wh}, 1);
    p.scores = at::rand({6000}, at::TensorOptions().device(device));
    p.valid = p.scores > 0.02;
    p.iou_threshold = 0.7;
    p.max_keep = 300;
    problems.push_back(p);
  }
  REQUIRE(ops::detail::nms_greedy_on_device(problems));
  (void)ops::detail::nms_each_padded(problems);  // warm-up: the kernel's compilation and loading
  {
    SyncRecorder rec("nms_each_padded, 2 x 6000 candidates (budget 0)");
    const auto kept = ops::detail::nms_each_padded(problems);
    rec.stop();
    print_report(rec, rec.count() != 0);
    CHECK_MESSAGE(rec.count() == 0, "nms_each_padded synchronised ", rec.count(), " times (sites above)");
    CHECK(kept.index.size(1) == 300);
  }
  {
    SyncRecorder rec("nms_each, 2 x 6000 candidates (budget 1: the counts)");
    const auto lists = ops::detail::nms_each(problems);
    rec.stop();
    print_report(rec, rec.count() > 1);
    CHECK_MESSAGE(rec.count() <= 1, "nms_each synchronised ", rec.count(), " times (sites above)");
    CHECK(lists.size() == 2);
  }
#else
  (void)device;
  report_skip(no_sync_debug);
#endif
}

TEST_CASE("sync: a training step's backward pass through roi_align (float32, bfloat16 autocast) never waits") {
  TRIDENT_DEVICE_UNDER_TEST(device);
#if TRIDENT_SYNC_DEBUG
  if (!cuda_only(device)) return;
  require_recorder_sees_syncs(device);
  // Training's geometry: 4 pictures, 128 sampled RoIs each, the pooler's 24 x 8 at sampling ratio 2; the
  // features are the step's leaf (so that the backward pass is roi_align's alone) and the loss a fixed linear
  // function of the pooled values (as the head's first layer would see them).
  const auto rois = person_rois(4, 128, picture_h, picture_w, 41).to(device);
  at::manual_seed(42);
  const auto options = at::TensorOptions().device(device);
  const auto base = at::randn({4, feature_channels, feature_h, feature_w}, options).relu();
  const auto weights = at::randn({512, feature_channels, 24, 8}, options);
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    const std::string what = fmt::format("training step, roi_align backward, {} features{}", c10::toString(dtype),
                                         dtype == at::kFloat ? "" : " (forward under autocast)");
    CAPTURE(what);
    auto features = base.to(dtype).detach().requires_grad_(true);
    at::Tensor loss;
    const auto forward = [&] {
      const train::detail::AutocastScope autocast(dtype != at::kFloat, dtype);
      const auto pooled = ops::roi_align(features, rois, {24, 8}, 1.0 / 16.0, 2, false);
      loss = (pooled.to(at::kFloat) * weights).sum();
    };
    const auto backward = [&] {
      if (!loss.defined()) forward();
      loss.backward();
      loss = at::Tensor();
    };
    forward();  // warm-up
    backward();
    forward();
    SyncRecorder rec(what);
    backward();
    rec.stop();
    print_report(rec, rec.count() != 0);
    CHECK_MESSAGE(rec.count() == 0, what, ": the backward pass synchronised ", rec.count(), " times (sites above)");
    CHECK(features.grad().defined());
    // Error mode: any synchronising call on autograd's device thread throws into backward()'s caller.
    forward();
    const auto error = first_sync_error([&] { backward(); });
    if (!error.empty()) std::cout << "trident-sync: " << what << ", error mode:\n" << cuda_test::head_lines(error, 60);
    CHECK_MESSAGE(error.empty(), what, ": error mode threw in the backward pass (first lines above)");
  }
#else
  (void)device;
  report_skip(no_sync_debug);
#endif
}

TEST_CASE("sync: detect() and describe() of the paper's network report their synchronising calls, within budget") {
  TRIDENT_DEVICE_UNDER_TEST(device);
#if TRIDENT_SYNC_DEBUG
  if (!cuda_only(device)) return;
  require_recorder_sees_syncs(device);
  at::manual_seed(51);
  TridentNet<PaperConfig<CuhkSysu>> net;  // random weights: the calls, not the results, matter here
  net.to(device);
  net.eval();
  auto scenes = data::make_toy_scenes(2, 3, 6, 480, 640, 52);
  const at::NoGradGuard no_grad;
  // A batch of two pictures and of one, in float32 and under bfloat16 autocast (trident::Autocast, the GPU's
  // inference setting): the budgets hold whatever the batch size and type.
  for (const int64_t pictures : {2, 1}) {
    for (const bool amp : {false, true}) {
      const std::string what = fmt::format("{} picture{} of 480 x 640{}", pictures, pictures == 1 ? "" : "s",
                                           amp ? ", bfloat16 autocast" : "");
      CAPTURE(what);
      ImageBatch batch{scenes.batch.images.narrow(0, 0, pictures).to(device),
                       std::vector<ImageSize>(scenes.batch.sizes.begin(), scenes.batch.sizes.begin() + pictures)};
      std::vector<at::Tensor> boxes;
      for (int64_t i = 0; i < pictures; ++i) boxes.push_back(scenes.targets[static_cast<size_t>(i)].boxes.to(device));
      const train::detail::AutocastScope autocast(amp, at::kBFloat16);
      // Warm-up outside the recorder: cuDNN's algorithm choice, the folded weights, the anchors, kernel loading.
      (void)net.detect(batch);
      (void)net.describe(batch, boxes);
      {
        SyncRecorder rec(fmt::format("detect(), paper configuration, {} (budget {})", what, kDetectSyncBudget));
        const auto found = net.detect(batch);
        rec.stop();
        int64_t detections = 0;
        for (const auto& d : found) detections += d.boxes.size(0);
        print_report(rec, rec.count() > kDetectSyncBudget);
        std::cout << "trident-sync: detect() found " << detections << " boxes (random weights)" << std::endl;
        CHECK_MESSAGE(rec.count() <= kDetectSyncBudget, "detect(), ", what, ": synchronised ", rec.count(),
                      " times, budget ", kDetectSyncBudget, " (sites above)");
        CHECK(found.size() == static_cast<size_t>(pictures));
      }
      {
        SyncRecorder rec(fmt::format("describe(), paper configuration, {}, 3 boxes each (budget {})", what,
                                     kDescribeSyncBudget));
        const auto described = net.describe(batch, boxes);
        rec.stop();
        print_report(rec, rec.count() > kDescribeSyncBudget);
        CHECK_MESSAGE(rec.count() <= kDescribeSyncBudget, "describe(), ", what, ": synchronised ", rec.count(),
                      " times, budget ", kDescribeSyncBudget, " (sites above)");
        REQUIRE(described.size() == static_cast<size_t>(pictures));
        CHECK(described[0].at("embedding").size(0) == 3);
      }
    }
  }
#else
  (void)device;
  report_skip(no_sync_debug);
#endif
}

TEST_CASE("sync: a training step of the paper's network waits once in its forward pass (the RPN's NMS), never after") {
  TRIDENT_DEVICE_UNDER_TEST(device);
#if TRIDENT_SYNC_DEBUG
  if (!cuda_only(device)) return;
  require_recorder_sees_syncs(device);
  at::manual_seed(53);
  TridentNet<PaperConfig<CuhkSysu>> net;
  net.to(device);
  net.train();
  auto scenes = data::make_toy_scenes(3, 3, 6, 480, 640, 54);
  for (const int64_t pictures : {3, 1}) {
    for (const bool amp : {false, true}) {
      const std::string what = fmt::format("training step, {} picture{} of 480 x 640{}", pictures,
                                           pictures == 1 ? "" : "s", amp ? ", bfloat16 autocast" : "");
      CAPTURE(what);
      ImageBatch batch{scenes.batch.images.narrow(0, 0, pictures).to(device),
                       std::vector<ImageSize>(scenes.batch.sizes.begin(), scenes.batch.sizes.begin() + pictures)};
      std::vector<Target> targets;
      for (int64_t i = 0; i < pictures; ++i) {
        const auto& t = scenes.targets[static_cast<size_t>(i)];
        targets.push_back({t.boxes.to(device), t.pids.to(device)});
      }
      const auto step = [&] {
        const train::detail::AutocastScope autocast(amp, at::kBFloat16);
        return net.losses(batch, targets).total();
      };
      step().backward();  // warm-up: kernels, cuDNN's choices, the anchors
      at::Tensor total;
      {
        SyncRecorder rec(fmt::format("{}, forward (budget {})", what, kTrainForwardSyncBudget));
        total = step();
        rec.stop();
        print_report(rec, rec.count() > kTrainForwardSyncBudget);
        CHECK_MESSAGE(rec.count() <= kTrainForwardSyncBudget, what, ": the forward pass synchronised ", rec.count(),
                      " times, budget ", kTrainForwardSyncBudget, " (sites above)");
      }
      {
        SyncRecorder rec(what + ", backward (budget 0)");
        total.backward();
        rec.stop();
        print_report(rec, rec.count() > 0);
        CHECK_MESSAGE(rec.count() == 0, what, ": the backward pass synchronised ", rec.count(), " times (sites above)");
      }
      CHECK(std::isfinite(total.item<double>()));
    }
  }
#else
  (void)device;
  report_skip(no_sync_debug);
#endif
}

TEST_CASE("sync: HostCopy and to_device move values between host and device without a synchronising call") {
  TRIDENT_DEVICE_UNDER_TEST(device);
#if TRIDENT_SYNC_DEBUG
  if (!cuda_only(device)) return;
  require_recorder_sees_syncs(device);
  const auto host = at::arange(1000, at::kLong);
  at::Tensor on_device;
  HostCopy back;
  {
    SyncRecorder rec("to_device and HostCopy");
    on_device = to_device(host, device);
    const auto doubled = on_device * 2;
    back = HostCopy(doubled);
    rec.stop();
    print_report(rec, rec.count() > 0);
    CHECK(rec.count() == 0);
  }
  CHECK(on_device.device() == device);
  CHECK(back.get().device().is_cpu());
  CHECK(back.get().equal(host * 2));
#else
  (void)device;
  report_skip(no_sync_debug);
#endif
}
