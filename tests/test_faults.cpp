// Training that survives faults (issue 16): checkpoints that are truncated, damaged, of another configuration or
// of another version are refused by name and never loaded in part; a full disk (a file size limit) while a
// checkpoint or a results file is written leaves the previous file intact and stops with the system's reason;
// a training process killed (SIGKILL) at random points and in the middle of checkpoint writes, then resumed, ends
// bit-identical to an uninterrupted run. docs/reliability.md lists these faults.
#include "support/fixtures.hpp"
#include "support/toy_training.hpp"
#include "support/workers.hpp"

#include <trident/core/files.hpp>
#include <trident/data/toy_scenes.hpp>
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>
#include <trident/train/checkpoint.hpp>
#include <trident/train/foreach_sgd.hpp>
#include <trident/train/trainer.hpp>

#if TRIDENT_TESTS_WITH_JSON
#include <trident/eval/results_file.hpp>
#endif

#include <ATen/ops/equal.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/output-archive.h>
#include <caffe2/serialize/inline_container.h>

#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

using namespace trident;
namespace fs = std::filesystem;

namespace {

std::string faults_dir(const std::string& name) { return test::fresh_folder("faults", name).string(); }

using test::file_bytes;

void put_file(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

/// CRC-32 one bit at a time, straight from the definition (reflected polynomial 0xEDB88320): the reference for
/// the table-driven trident::crc32.
uint32_t crc32_bitwise(std::string_view bytes) {
  uint32_t crc = 0xffffffffu;
  for (const char ch : bytes) {
    crc ^= static_cast<unsigned char>(ch);
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1u) != 0 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
  }
  return ~crc;
}

/// A small model with a submodule, a buffer, and an SGD with momentum that has taken one step (so the checkpoint
/// holds momentum buffers).
struct Tiny : torch::nn::Module {
  explicit Tiny(int64_t out = 3) {
    fc = register_module("fc", torch::nn::Linear(4, out));
    steps = register_buffer("steps", at::zeros({1}, at::kLong));
  }
  torch::nn::Linear fc{nullptr};
  at::Tensor steps;
};

struct TinyRun {
  explicit TinyRun(int64_t out = 3)
      : model(std::make_shared<Tiny>(out)),
        sgd(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9)) {}
  void step() {
    sgd.zero_grad();
    model->fc(at::ones({2, 4})).pow(2).sum().backward();
    sgd.step();
    model->steps += 1;
  }
  std::shared_ptr<Tiny> model;
  torch::optim::SGD sgd;
};

/// Copies of a module's parameters and buffers, to see that a refused load changed nothing.
std::vector<at::Tensor> snapshot(const torch::nn::Module& m) {
  std::vector<at::Tensor> out;
  for (const auto& p : m.parameters()) out.push_back(p.detach().clone());
  for (const auto& b : m.buffers()) out.push_back(b.clone());
  return out;
}

bool unchanged(const torch::nn::Module& m, const std::vector<at::Tensor>& before) {
  const auto now = snapshot(m);
  if (now.size() != before.size()) return false;
  for (size_t i = 0; i < now.size(); ++i)
    if (!now[i].sizes().equals(before[i].sizes()) || !at::equal(now[i], before[i])) return false;
  return true;
}

/// The state of a version-2 file header as docs/training.md describes it, written here independently of
/// train::detail::checkpoint_header: magic, version, CRC-32 of the payload, payload length, all little-endian.
std::string header_for(std::string_view payload, uint32_t version) {
  std::string h("trident-ckpt\r\n\x1a\n", 16);
  const auto le = [&h](uint64_t v, int n) {
    for (int i = 0; i < n; ++i) h.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  le(version, 4);
  le(crc32_bitwise(payload), 4);
  le(payload.size(), 8);
  return h;
}

/// The entries of a checkpoint archive (as the file comment of train/checkpoint.hpp lists them), with a chosen
/// version entry and optionally without the configuration (version 1 had none).
std::string archive_payload(TinyRun& run, int64_t version, const char* configuration) {
  torch::serialize::OutputArchive ar, model_ar, optim_ar;
  ar.write("format", c10::IValue(std::string("trident-checkpoint")));
  ar.write("version", c10::IValue(version));
  if (configuration != nullptr) ar.write("configuration", c10::IValue(std::string(configuration)));
  run.model->save(model_ar);
  ar.write("model", model_ar);
  run.sgd.save(optim_ar);
  ar.write("optimizer", optim_ar);
  for (const char* key : {"epoch", "iteration", "iterations_per_epoch", "seed", "good_steps"})
    ar.write(key, c10::IValue(int64_t{4}));
  ar.write("loss_scale", c10::IValue(1.0));
  ar.write("cpu_rng_state", at::detail::getDefaultCPUGenerator().get_state(), /*is_buffer=*/true);
  std::string bytes;
  ar.save_to([&bytes](const void* data, size_t n) -> size_t {
    bytes.append(static_cast<const char*>(data), n);
    return n;
  });
  return bytes;
}

/// A refused load: the message names the file and `field`, and the model, the optimizer's state and the CPU
/// generator are as they were.
void check_refused(const std::string& path, TinyRun& into, const std::string& field) {
  const auto before = snapshot(*into.model);
  const auto generator = at::detail::getDefaultCPUGenerator().get_state();
  const size_t optimizer_entries = into.sgd.state().size();
  const auto refusal = [&](auto&& load) {
    try {
      load();
    } catch (const trident::Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const std::string full = refusal([&] { train::load_checkpoint(path, *into.model, into.sgd); });
  CHECK_MESSAGE(full.find("trident::train::load_checkpoint: '" + path + "'") != std::string::npos, full);
  CHECK_MESSAGE(full.find(field) != std::string::npos, full);
  const std::string model_only = refusal([&] { train::load_model(path, *into.model); });
  CHECK_MESSAGE(model_only.find("trident::train::load_model: '" + path + "'") != std::string::npos, model_only);
  CHECK_MESSAGE(model_only.find(field) != std::string::npos, model_only);
  CHECK(unchanged(*into.model, before));
  CHECK(into.sgd.state().size() == optimizer_entries);
  CHECK(at::equal(at::detail::getDefaultCPUGenerator().get_state(), generator));
}

/// While alive, writes beyond `bytes` bytes into any file fail with EFBIG (RLIMIT_FSIZE, SIGXFSZ ignored), as
/// they would on a full disk (ENOSPC); restores the limit and the signal's action after.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved_) == 0);
    old_action_ = ::signal(SIGXFSZ, SIG_IGN);
    rlimit limit = saved_;
    limit.rlim_cur = saved_.rlim_max == RLIM_INFINITY ? bytes : std::min<rlim_t>(bytes, saved_.rlim_max);
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    ::signal(SIGXFSZ, old_action_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  sighandler_t old_action_ = SIG_DFL;
};

/// Runs `write` under a file size limit of `limit` bytes and returns its error message ("" when it succeeded).
template <class Write>
std::string message_under_limit(rlim_t limit, Write&& write) {
  std::string message;
  {
    FileSizeLimit guard(limit);
    try {
      write();
    } catch (const trident::Error& e) {
      message = e.what();
    }
  }
  return message;
}

// ---- the training of the SIGKILL test ----------------------------------------------------------------------

using Small = SmallConfig<4, 64>;

constexpr int64_t fault_epochs = 4;  // 2 batches an epoch: 8 iterations
constexpr int64_t fault_iterations = 8;
constexpr const char* fault_configuration = "small-faults";

train::TrainerOptions fault_options(const std::string& out) {
  train::TrainerOptions o;
  o.epochs = fault_epochs;
  o.schedule.warmup_iterations = 2;
  o.schedule.milestones = {3};
  o.clip_grad_norm = 10.0;
  o.seed = 7;
  o.print_every = 0;
  o.checkpoint_every = 1;  // a checkpoint after every iteration: many writes to be killed in
  o.out_dir = out;
  o.configuration = fault_configuration;
  return o;
}

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

void sigkill_self(int /*signal*/) { ::kill(::getpid(), SIGKILL); }

}  // namespace

// A training process of the SIGKILL test: trains (resuming when a checkpoint exists) in TRIDENT_FAULTS_OUT and
// writes one byte to the descriptor TRIDENT_FAULTS_READY_FD when it starts fit(). TRIDENT_FAULTS_MODE:
//   run                 train to the end (unless the test kills it)
//   kill-at-epoch-end   SIGKILL itself at the first epoch end (after that epoch's checkpoint)
//   kill-in-write       at the first epoch end, limit files to 64 KiB with SIGXFSZ turned into SIGKILL: the
//                       next checkpoint write dies in its middle, deterministically
TRIDENT_TEST_WORKER("faults-train") {
  const std::string out = env_or_empty("TRIDENT_FAULTS_OUT"), mode = env_or_empty("TRIDENT_FAULTS_MODE");
  const int ready = std::atoi(env_or_empty("TRIDENT_FAULTS_READY_FD").c_str());
  at::set_num_threads(1);  // every process of the test the same (reductions round by thread count)
  auto source = test::toy_training_source();
  at::manual_seed(7);  // the initialisation (a resume overwrites it)
  TridentNet<Small> net(test::toy_training_options());
  train::TrainerOptions o = fault_options(out);
  o.resume = fs::exists(fs::path(out) / "checkpoint.pt");
  if (mode == "kill-at-epoch-end") o.on_epoch_end = [](int64_t) { ::kill(::getpid(), SIGKILL); };
  if (mode == "kill-in-write")
    o.on_epoch_end = [](int64_t) {
      rlimit none{0, 0};
      ::setrlimit(RLIMIT_CORE, &none);
      ::signal(SIGXFSZ, sigkill_self);
      rlimit limit{};
      ::getrlimit(RLIMIT_FSIZE, &limit);
      limit.rlim_cur = 64 << 10;
      ::setrlimit(RLIMIT_FSIZE, &limit);
    };
  if (ready > 0) {
    const char byte = 'r';
    if (::write(ready, &byte, 1) != 1) return 3;
    ::close(ready);
  }
  train::fit(net, source, o);
  return 0;
}

namespace {

/// A training process started from this executable (TRIDENT_TEST_WORKER=faults-train).
struct Trainer {
  pid_t pid = -1;
  int ready_fd = -1;
};

Trainer start_trainer(const std::string& out, const std::string& mode, const std::string& worker = "faults-train") {
  const std::string exe = fs::read_symlink("/proc/self/exe").string();
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    if (entry.rfind("TRIDENT_TEST_WORKER=", 0) != 0 && entry.rfind("TRIDENT_FAULTS_", 0) != 0) env.emplace_back(entry);
  }
  env.push_back("TRIDENT_TEST_WORKER=" + worker);
  env.push_back("TRIDENT_FAULTS_OUT=" + out);
  env.push_back("TRIDENT_FAULTS_MODE=" + mode);
  env.push_back("TRIDENT_FAULTS_READY_FD=" + std::to_string(fds[1]));
  env.push_back("OMP_WAIT_POLICY=PASSIVE");
  std::vector<char*> envp, argv{const_cast<char*>(exe.c_str()), nullptr};
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    ::execve(exe.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

/// Waits (at most `seconds`) for the trainer's ready byte; false when it ended first.
bool wait_ready(Trainer& t, int seconds) {
  pollfd p{t.ready_fd, POLLIN, 0};
  if (::poll(&p, 1, seconds * 1000) <= 0) return false;
  char byte = 0;
  return ::read(t.ready_fd, &byte, 1) == 1;
}

/// The trainer's wait status, once it ended (killed after `limit_seconds` as a hung process: a failure).
int finish(Trainer& t, double limit_seconds = 600) {  // generous: sanitizer builds train ~10x slower
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit_seconds);
  while (::waitpid(t.pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      FAIL_CHECK("a training process did not end within ", limit_seconds, " s: killed");
      ::kill(t.pid, SIGKILL);
      ::waitpid(t.pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::close(t.ready_fd);
  return status;
}

/// Kills the trainer `delay` seconds after it started training, unless it ended before.
int kill_after(Trainer& t, double delay) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(delay);
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(t.pid, &status, WNOHANG) == t.pid) {
      ::close(t.ready_fd);
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ::kill(t.pid, SIGKILL);
  return finish(t);
}

/// Reads (and forgets) the events waiting on a non-blocking inotify descriptor.
void drain(int inotify_fd) {
  alignas(inotify_event) char buffer[4096];
  while (::read(inotify_fd, buffer, sizeof buffer) > 0) {
  }
}

/// Kills the trainer the moment it creates its `nth` temporary checkpoint file (inotify), i.e. while it writes
/// a checkpoint, unless it ended before.
int kill_in_nth_write(Trainer& t, int inotify_fd, int nth) {
  int seen = 0;
  int status = 0;
  alignas(inotify_event) char buffer[4096];
  for (;;) {
    if (::waitpid(t.pid, &status, WNOHANG) == t.pid) {
      ::close(t.ready_fd);
      return status;
    }
    pollfd p{inotify_fd, POLLIN, 0};
    if (::poll(&p, 1, 5) <= 0) continue;
    const ssize_t n = ::read(inotify_fd, buffer, sizeof buffer);
    for (ssize_t at = 0; at < n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
      const std::string name = event->len > 0 ? std::string(event->name) : std::string();
      if (name.size() > 8 && name.compare(name.size() - 8, 8, ".partial") == 0 && ++seen == nth) {
        ::kill(t.pid, SIGKILL);
        return finish(t);
      }
      at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
    }
  }
}

/// The iteration of the checkpoint in `out` (loaded whole: it must be good), or -1 when there is none.
int64_t checkpoint_iteration(const std::string& out) {
  const auto path = (fs::path(out) / "checkpoint.pt").string();
  if (!fs::exists(path)) return -1;
  TridentNet<Small> net(test::toy_training_options());
  train::ForeachSgd sgd(train::detail::trainable(net), torch::optim::SGDOptions(0.1).momentum(0.9));
  return train::load_checkpoint(path, net, sgd, std::nullopt, fault_configuration).iteration;
}

std::string describe(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return fmt::format("status {}", status);
}

}  // namespace

TEST_CASE("crc32: the standard check value, zlib's values, continuation, and a bitwise reference") {
  CHECK(crc32("") == 0u);
  CHECK(crc32("123456789") == 0xCBF43926u);  // the check value of CRC-32 (ISO-HDLC, zlib)
  CHECK(crc32("a") == 0xE8B7BE43u);
  CHECK(crc32("The quick brown fox jumps over the lazy dog") == 0x414FA339u);
  CHECK(crc32("6789", crc32("12345")) == 0xCBF43926u);
  std::string bytes(10007, '\0');
  std::mt19937 rng(5);
  for (auto& b : bytes) b = static_cast<char>(rng() & 0xff);
  for (const size_t n : {0, 1, 7, 8, 9, 63, 64, 65, 4096, 10007}) {
    CAPTURE(n);
    CHECK(crc32(std::string_view(bytes).substr(0, n)) == crc32_bitwise(std::string_view(bytes).substr(0, n)));
    CHECK(crc32(std::string_view(bytes).substr(3, n / 2), crc32(std::string_view(bytes).substr(0, 3))) ==
          crc32_bitwise(std::string_view(bytes).substr(0, 3 + n / 2)));
  }
}

TEST_CASE("checkpoint format: header, length and checksum as documented; version 1 files still load") {
  const auto dir = faults_dir("format");
  TinyRun run;
  run.step();
  train::TrainState state;
  state.iteration = 5;
  state.configuration = "tiny";
  train::save_checkpoint(dir + "/c.pt", *run.model, run.sgd, state);
  const std::string file = file_bytes(dir + "/c.pt");
  REQUIRE(file.size() > 32);
  const std::string_view payload = std::string_view(file).substr(32);
  CHECK(file.substr(0, 32) == header_for(payload, 2));  // the layout of docs/training.md, checked independently
  CHECK(payload.substr(0, 4) == std::string_view("PK\x03\x04", 4));  // the payload is a LibTorch (ZIP) archive

  TinyRun other;
  const auto initial = snapshot(*other.model);
  const auto loaded = train::load_checkpoint(dir + "/c.pt", *other.model, other.sgd);
  CHECK(loaded.iteration == 5);
  CHECK(loaded.configuration == "tiny");
  CHECK(!unchanged(*other.model, initial));
  CHECK(unchanged(*other.model, snapshot(*run.model)));

  // Version 1: the bare archive with version entry 1 and no configuration.
  put_file(dir + "/v1.pt", archive_payload(run, 1, nullptr));
  TinyRun old;
  const auto v1 = train::load_checkpoint(dir + "/v1.pt", *old.model, old.sgd, std::nullopt, "small");
  CHECK(v1.iteration == 4);
  CHECK(v1.configuration.empty());
  CHECK(unchanged(*old.model, snapshot(*run.model)));
  // ... but a version-1 archive that says version 2 (or a version-2 payload without its header) is refused.
  put_file(dir + "/headless.pt", archive_payload(run, 2, "tiny"));
  TinyRun third;
  check_refused(dir + "/headless.pt", third, "has version 2 (entry 'version'), and no header (version 1)");
}

TEST_CASE("checkpoint: truncated at any of several offsets, refused naming the file and the field; nothing loaded") {
  const auto dir = faults_dir("truncated");
  TinyRun run;
  run.step();
  train::save_checkpoint(dir + "/good.pt", *run.model, run.sgd, {});
  const std::string file = file_bytes(dir + "/good.pt");
  const size_t n = file.size();
  TinyRun into;  // other weights (a fresh initialisation), no optimizer state
  for (const size_t cut : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{31}, size_t{32}, size_t{33},
                           size_t{100}, n / 3, n / 2, n - 100, n - 1}) {
    CAPTURE(cut);
    put_file(dir + "/cut.pt", std::string_view(file).substr(0, cut));
    check_refused(dir + "/cut.pt", into,
                  cut < 32 ? fmt::format("is truncated: {} bytes, fewer than the 32-byte header (field 'header')", cut)
                           : fmt::format("is truncated: header field 'payload_length' is {} bytes, the file has {}",
                                         n - 32, cut - 32));
  }
  // Bytes beyond the end are refused too (two files written over each other).
  put_file(dir + "/long.pt", file + "xyz");
  check_refused(dir + "/long.pt", into, "bytes beyond its end): header field 'payload_length'");
}

TEST_CASE("checkpoint: a damaged byte anywhere is refused naming the file and the field; nothing loaded") {
  const auto dir = faults_dir("damaged");
  TinyRun run;
  run.step();
  train::save_checkpoint(dir + "/good.pt", *run.model, run.sgd, {});
  const std::string file = file_bytes(dir + "/good.pt");
  const size_t n = file.size();
  TinyRun into;
  std::mt19937 rng(11);
  std::vector<size_t> offsets{0, 5, 15, 16, 19, 20, 23, 24, 31, 32, 33, 40, n / 4, n / 2, 3 * n / 4, n - 30, n - 1};
  for (int i = 0; i < 8; ++i) offsets.push_back(32 + rng() % (n - 32));
  for (const size_t at : offsets) {
    for (const unsigned char mask : {0x01, 0x80, 0xff}) {
      CAPTURE(at);
      CAPTURE(static_cast<int>(mask));
      std::string bad = file;
      bad[at] = static_cast<char>(static_cast<unsigned char>(bad[at]) ^ mask);
      put_file(dir + "/bad.pt", bad);
      const std::string field = at < 16   ? "(field 'magic'"
                                : at < 20 ? "(header field 'version')"
                                : at < 24 ? "header field 'checksum'"
                                : at < 32 ? "header field 'payload_length'"
                                          : "is damaged: header field 'checksum'";
      check_refused(dir + "/bad.pt", into, field);
    }
  }
  // Two bytes swapped inside the payload: the length is right, the checksum is not.
  std::string swapped = file;
  std::swap(swapped[n / 2], swapped[n / 2 + 1]);
  if (swapped != file) {
    put_file(dir + "/swapped.pt", swapped);
    check_refused(dir + "/swapped.pt", into, "is damaged: header field 'checksum'");
  }
  put_file(dir + "/junk.pt", "not a checkpoint at all, but long enough to have a header");
  check_refused(dir + "/junk.pt", into, "is not a trident checkpoint (field 'magic'");
}

TEST_CASE("checkpoint: a pickle declaring more bytes or memo entries than it has is refused before it is read") {
  // Checksums prove a file is the one written, not that trident wrote it: a crafted archive with a valid header
  // reaches LibTorch's Unpickler, which would allocate what the pickle declares (4 GB for a string, a memo of
  // 1.7e9 entries: the weights reader's fuzzing findings 3-4). Each archive holds one record, data.pkl.
  const auto dir = faults_dir("pickle");
  const auto crafted = [&](const std::string& name, const std::string& pickle) {
    std::string payload;
    {
      caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t n) -> size_t {
        payload.append(static_cast<const char*>(data), n);
        return n;
      });
      writer.writeRecord("data.pkl", pickle.data(), pickle.size());
      writer.writeEndOfFile();
    }
    const std::string path = dir + "/" + name;
    put_file(path, train::detail::checkpoint_header(payload) + payload);
    return path;
  };
  const auto le32 = [](uint32_t v) {
    std::string out(4, '\0');
    write_le(out.data(), 0, v);
    return out;
  };
  // PROTO 2, BINUNICODE ('X') of 0xFFFFFFF0 bytes followed by 3.
  TinyRun into;
  check_refused(crafted("string.pt", std::string("\x80\x02X", 3) + le32(0xFFFFFFF0u) + "abc"), into,
                "the pickle (data.pkl) declares 4294967280 bytes for opcode 0x58 at offset 2, but only 3 follow");
  // PROTO 2, EMPTY_DICT, LONG_BINPUT ('r') at memo index 1.7e9 when nothing was memoized.
  check_refused(crafted("memo.pt", std::string("\x80\x02}r", 4) + le32(1700000000u) + "."), into,
                "the pickle (data.pkl) stores memo index 1700000000 with opcode 0x72 at offset 3, but only 0 values "
                "were memoized before it");
}

TEST_CASE("checkpoint: another configuration, another version or another model is refused by name") {
  const auto dir = faults_dir("mismatch");
  TinyRun run;
  run.step();
  train::TrainState state;
  state.configuration = "small";
  train::save_checkpoint(dir + "/small.pt", *run.model, run.sgd, state);
  TinyRun into;
  const auto before = snapshot(*into.model);
  const std::string expected =
      "small.pt' was written by configuration 'small' (entry 'configuration'); this run is configuration 'paper-prw'";
  CHECK_THROWS_WITH_AS(train::load_checkpoint(dir + "/small.pt", *into.model, into.sgd, std::nullopt, "paper-prw"),
                       doctest::Contains(expected.c_str()), trident::Error);
  CHECK_THROWS_WITH_AS(train::load_model(dir + "/small.pt", *into.model, "paper-prw"),
                       doctest::Contains(expected.c_str()), trident::Error);
  CHECK(unchanged(*into.model, before));
  CHECK(train::load_checkpoint(dir + "/small.pt", *into.model, into.sgd, std::nullopt, "small").configuration ==
        "small");
  CHECK(unchanged(*into.model, snapshot(*run.model)));

  // Another version: a header of version 3 (everything else right), a payload whose entry says version 7.
  const std::string file = file_bytes(dir + "/small.pt");
  const std::string_view payload = std::string_view(file).substr(32);
  put_file(dir + "/v3.pt", header_for(payload, 3) + std::string(payload));
  TinyRun fresh;
  check_refused(dir + "/v3.pt", fresh, "has version 3 (header field 'version'); this trident reads versions 1 and 2");
  const std::string seven = archive_payload(run, 7, "small");
  put_file(dir + "/v7.pt", header_for(seven, 2) + seven);
  check_refused(dir + "/v7.pt", fresh, "has version 7 (entry 'version'), its header says 2");

  // Another model: a layer of another width is named with both shapes, before anything is loaded.
  TinyRun wider(5);
  check_refused(dir + "/small.pt", wider,
                "the model does not match the checkpoint (another configuration?): parameter 'fc.weight' is Float "
                "[3, 4] in the checkpoint, Float [5, 4] in the network");

  // The trainer records its configuration's name and refuses to resume another's.
  auto source = test::dummy_source();
  train::TrainerOptions o;
  o.epochs = 2;
  o.print_every = 0;
  o.out_dir = dir + "/run";
  o.configuration = "paper-cuhk-sysu";
  o.max_iterations = 1;
  test::Quadratic a;
  train::fit(a, source, o);
  o.max_iterations = -1;
  o.resume = true;
  o.configuration = "paper-prw";
  test::Quadratic b;
  CHECK_THROWS_WITH_AS(train::fit(b, source, o),
                       doctest::Contains("was written by configuration 'paper-cuhk-sysu' (entry 'configuration'); "
                                         "this run is configuration 'paper-prw'"),
                       trident::Error);
  o.configuration = "paper-cuhk-sysu";
  CHECK(train::fit(b, source, o).resumed_from == 1);
}

TEST_CASE("a full disk while a checkpoint is written leaves the previous one intact and stops with the reason") {
  const auto dir = faults_dir("full_checkpoint");
  const std::string path = dir + "/checkpoint.pt";
  TinyRun run;
  run.step();
  train::TrainState first;
  first.iteration = 1;
  train::save_checkpoint(path, *run.model, run.sgd, first);
  const std::string previous = file_bytes(path);
  run.step();
  train::TrainState second;
  second.iteration = 2;
  train::save_checkpoint(dir + "/size.pt", *run.model, run.sgd, second);  // how long the new file is
  const size_t n = fs::file_size(dir + "/size.pt");
  fs::remove(dir + "/size.pt");
  for (const size_t limit : {size_t{0}, size_t{1}, size_t{32}, size_t{100}, n / 2, n - 1}) {
    CAPTURE(limit);
    const std::string message =
        message_under_limit(limit, [&] { train::save_checkpoint(path, *run.model, run.sgd, second); });
    CHECK(message.find("trident::train::save_checkpoint: writing '" + path + ".") != std::string::npos);
    CHECK(message.find(fmt::format("failed after {} bytes: File too large", limit)) != std::string::npos);
    CHECK(message.find("'" + path + "' is left as it was") != std::string::npos);
    CHECK(file_bytes(path) == previous);
    CHECK(test::partial_files(dir).empty());
    TinyRun into;
    CHECK(train::load_checkpoint(path, *into.model, into.sgd).iteration == 1);
  }
  // Room for exactly the new file: it replaces the old one.
  CHECK(message_under_limit(n, [&] { train::save_checkpoint(path, *run.model, run.sgd, second); }).empty());
  TinyRun into;
  CHECK(train::load_checkpoint(path, *into.model, into.sgd).iteration == 2);
  CHECK(test::partial_files(dir).empty());
}

// A process of "a real full disk": in a mount namespace of its own, mounts a tmpfs just larger than one
// checkpoint over TRIDENT_FAULTS_OUT, writes a checkpoint there, then another one, which fills the file system
// (ENOSPC, the real error, not a file size limit). Exit 0: every check held; 1: a check failed (stderr says
// which); 77: this machine does not let the process mount a file system (stderr says why).
TRIDENT_TEST_WORKER("faults-enospc") {
  const std::string dir = env_or_empty("TRIDENT_FAULTS_OUT");
  const std::string path = dir + "/checkpoint.pt";
  const auto cannot = [](const char* what) {
    std::fprintf(stderr, "faults-enospc: %s: %s\n", what, std::strerror(errno));
    return 77;
  };
  const auto failed = [](const std::string& what) {
    std::fprintf(stderr, "faults-enospc: %s\n", what.c_str());
    return 1;
  };
  // Root may make a mount namespace directly; anyone else through a user namespace of their own (first, while the
  // process is single-threaded, which unshare(CLONE_NEWUSER) needs).
  const uid_t uid = ::geteuid();
  const gid_t gid = ::getegid();
  if (uid == 0) {
    if (::unshare(CLONE_NEWNS) != 0) return cannot("unshare(CLONE_NEWNS)");
  } else {
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return cannot("unshare(CLONE_NEWUSER | CLONE_NEWNS)");
    const auto put = [](const char* file, const std::string& text) {
      std::ofstream out(file);
      out << text;
      out.close();
      return static_cast<bool>(out);
    };
    if (!put("/proc/self/setgroups", "deny") || !put("/proc/self/uid_map", fmt::format("0 {} 1", uid)) ||
        !put("/proc/self/gid_map", fmt::format("0 {} 1", gid)))
      return cannot("writing the user namespace's id maps");
  }
  TinyRun run(8192);  // 32768 weights: a checkpoint of about 300 kB (weights and momentum), ~75 pages
  run.step();
  train::TrainState first;
  first.iteration = 1;
  train::save_checkpoint(path, *run.model, run.sgd, first);  // on the real disk: its size
  const auto n = static_cast<size_t>(fs::file_size(path));
  fs::remove(path);
  // Mounts made here must not reach the rest of the machine.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return cannot("making / private");
  const size_t page = 4096, room = (n + n / 2 + page - 1) / page * page;  // one checkpoint and half another
  if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, fmt::format("size={}", room).c_str()) != 0)
    return cannot("mounting a tmpfs");
  try {
    train::save_checkpoint(path, *run.model, run.sgd, first);
  } catch (const trident::Error& e) {
    return failed(fmt::format("the first checkpoint ({} bytes) did not fit in {} bytes: {}", n, room, e.what()));
  }
  const std::string previous = read_whole_file(path, "test");
  run.step();
  train::TrainState second;
  second.iteration = 2;
  std::string message;
  try {
    train::save_checkpoint(path, *run.model, run.sgd, second);
  } catch (const trident::Error& e) {
    message = e.what();
  }
  std::fprintf(stderr, "faults-enospc: a %zu-byte checkpoint beside another in a %zu-byte tmpfs: %s\n", n, room,
               message.c_str());
  if (message.find("trident::train::save_checkpoint: writing '" + path + ".") == std::string::npos ||
      message.find("No space left on device") == std::string::npos ||
      message.find("'" + path + "' is left as it was") == std::string::npos)
    return failed("the second checkpoint's error does not name the file, ENOSPC and the previous file");
  if (read_whole_file(path, "test") != previous) return failed("the previous checkpoint changed");
  if (!test::partial_files(dir).empty()) return failed("a temporary file was left");
  TinyRun into(8192);
  if (train::load_checkpoint(path, *into.model, into.sgd).iteration != 1)
    return failed("the previous checkpoint does not load as iteration 1");
  // With the previous file removed there is room again: the write succeeds.
  fs::remove(path);
  try {
    train::save_checkpoint(path, *run.model, run.sgd, second);
  } catch (const trident::Error& e) {
    return failed(fmt::format("with room again the checkpoint was not written: {}", e.what()));
  }
  TinyRun again(8192);
  if (train::load_checkpoint(path, *again.model, again.sgd).iteration != 2) return failed("the rewrite does not load");
  return 0;
}

TEST_CASE("a real full disk (ENOSPC on a small tmpfs) while a checkpoint is written leaves the previous one intact") {
  const auto dir = faults_dir("enospc");
  Trainer worker = start_trainer(dir, "", "faults-enospc");
  const int status = finish(worker, 300);
  REQUIRE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) {
    MESSAGE("not run: this machine does not let a process mount a small file system (unshare and mount refused; "
            "the reason is on stderr); the file size limit tests above take the same code path");
    return;
  }
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(fs::is_empty(dir));  // the tmpfs was the worker's own: nothing reached the real folder
}

TEST_CASE("a full disk while bytes are written atomically: the error names the file and the reason") {
  const auto dir = faults_dir("full_bytes");
  const std::string path = dir + "/data.bin";
  write_bytes_atomically(path, "previous", "test");
  const std::string big(200000, 'x');
  const std::string message = message_under_limit(70000, [&] { write_bytes_atomically(path, big, "caller-x"); });
  CHECK(message.find("caller-x: writing '" + path + ".") != std::string::npos);
  CHECK(message.find("failed after 70000 bytes: File too large") != std::string::npos);
  CHECK(file_bytes(path) == "previous");
  CHECK(test::partial_files(dir).empty());
  // A stale temporary file of a killed writer is removed by remove_stale_partials, other files are not.
  put_file(path + ".0123abcd.partial", "half");
  put_file(path + ".keep", "other");
  put_file(path + ".0123abcz.partial", "not hex");
  CHECK(remove_stale_partials(path) == 1);
  CHECK(!fs::exists(path + ".0123abcd.partial"));
  CHECK(fs::exists(path + ".keep"));
  CHECK(fs::exists(path + ".0123abcz.partial"));
}

#if TRIDENT_TESTS_WITH_JSON
TEST_CASE("a full disk while a results file is written leaves the previous one intact and stops with the reason") {
  const auto dir = faults_dir("full_results");
  SearchOutputs outputs;
  outputs.gallery_images = {"g1.jpg", "g2.jpg"};
  const auto boxes = [](int64_t k) {
    const auto corner = at::rand({k, 2}) * 100;
    return at::cat({corner, corner + 1 + at::rand({k, 2}) * 50}, 1);
  };
  const auto unit = [](int64_t k) {
    const auto e = at::randn({k, 16});
    return e / e.norm(2, {1}, true);
  };
  for (int i = 0; i < 2; ++i) outputs.gallery.push_back(GalleryDetections{boxes(50), at::rand({50}), unit(50)});
  outputs.query_images = {"q.jpg"};
  outputs.query_boxes = boxes(1);
  outputs.query_embeddings = unit(1);
  for (const char* name : {"results.trs", "results.json"}) {
    CAPTURE(name);
    const std::string path = dir + "/" + name;
    eval::save_search_outputs(outputs, path);
    const std::string previous = file_bytes(path);
    SearchOutputs changed = outputs;
    changed.gallery_images[0] = "other.jpg";
    changed.query_embeddings = unit(1);
    eval::save_search_outputs(changed, dir + "/size_" + name);
    const size_t n = fs::file_size(dir + "/size_" + name);
    fs::remove(dir + "/size_" + name);
    for (const size_t limit : {size_t{0}, size_t{7}, n / 2, n - 1}) {
      CAPTURE(limit);
      const std::string message = message_under_limit(limit, [&] { eval::save_search_outputs(changed, path); });
      CHECK(message.find("writing '" + path + ".") != std::string::npos);
      CHECK(message.find(fmt::format("failed after {} bytes: File too large", limit)) != std::string::npos);
      CHECK(message.find("'" + path + "' is left as it was") != std::string::npos);
      CHECK(file_bytes(path) == previous);
      CHECK(test::partial_files(dir).empty());
      CHECK(eval::load_search_outputs(path).gallery_images[0] == "g1.jpg");
    }
    CHECK(message_under_limit(n, [&] { eval::save_search_outputs(changed, path); }).empty());
    CHECK(eval::load_search_outputs(path).gallery_images[0] == "other.jpg");
  }
}
#endif

TEST_CASE("training killed (SIGKILL) at random points and inside checkpoint writes, then resumed, ends bit-identical") {
  // Every training runs in its own process started from this executable (the worker above), one thread each:
  // an uninterrupted run, then one run killed again and again and resumed from its last checkpoint each time.
  const auto reference = faults_dir("sigkill_reference"), faulted = faults_dir("sigkill_faulted");
  const auto started = std::chrono::steady_clock::now();
  Trainer t = start_trainer(reference, "run");
  REQUIRE(wait_ready(t, 60));
  const auto training_start = std::chrono::steady_clock::now();
  const int reference_status = finish(t);
  REQUIRE_MESSAGE((WIFEXITED(reference_status) && WEXITSTATUS(reference_status) == 0), describe(reference_status));
  const double training_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - training_start).count();
  REQUIRE(checkpoint_iteration(reference) == fault_iterations);

  // The random kill points come from TRIDENT_FAULTS_SEED when given (to replay a failure), else a fresh seed.
  const std::string seed_text = env_or_empty("TRIDENT_FAULTS_SEED");
  const uint64_t seed = seed_text.empty() ? std::random_device{}() : std::stoull(seed_text);
  MESSAGE("SIGKILL test: kill points drawn with TRIDENT_FAULTS_SEED=", seed, "; uninterrupted training ",
          training_seconds, " s");
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> fraction(0.05, 0.95);
  const double per_iteration = training_seconds / static_cast<double>(fault_iterations);

  const int inotify_fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  REQUIRE(inotify_fd >= 0);
  REQUIRE(::inotify_add_watch(inotify_fd, faulted.c_str(), IN_CREATE) >= 0);

  enum class Fault { at_epoch_end, in_write_deterministic, in_write_watched, random_delay };
  const std::vector<Fault> plan{Fault::at_epoch_end,     Fault::in_write_deterministic, Fault::random_delay,
                                Fault::in_write_watched, Fault::random_delay,           Fault::in_write_watched,
                                Fault::random_delay};
  int64_t last = -1;
  int killed = 0, left_partial = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    CAPTURE(i);
    const Fault fault = plan[i];
    const char* mode = fault == Fault::at_epoch_end             ? "kill-at-epoch-end"
                       : fault == Fault::in_write_deterministic ? "kill-in-write"
                                                                : "run";
    Trainer child = start_trainer(faulted, mode);
    REQUIRE(wait_ready(child, 60));
    int status = 0;
    std::string where;
    if (fault == Fault::random_delay) {
      const int64_t remaining = fault_iterations - std::max<int64_t>(last, 0);
      const double delay = fraction(rng) * per_iteration * static_cast<double>(remaining);
      where = fmt::format("after {:.3f} s", delay);
      status = kill_after(child, delay);
    } else if (fault == Fault::in_write_watched) {
      drain(inotify_fd);  // the files of earlier runs
      const int nth = 1 + static_cast<int>(rng() % 2);
      where = fmt::format("when it created its temporary checkpoint file number {}", nth);
      status = kill_in_nth_write(child, inotify_fd, nth);
    } else {
      where = mode;
      status = finish(child);
    }
    const auto partials = test::partial_files(faulted);
    const int64_t now = checkpoint_iteration(faulted);  // the checkpoint left behind loads whole
    MESSAGE("fault ", i, " (", where, "): ", describe(status), "; checkpoint at iteration ", now, ", ",
            partials.size(), " temporary file(s) left");
    const bool sigkill = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    CHECK_MESSAGE((sigkill || (WIFEXITED(status) && WEXITSTATUS(status) == 0)), describe(status));
    CHECK(now >= last);  // a kill never takes a run back before its last checkpoint
    killed += sigkill ? 1 : 0;
    left_partial += partials.empty() ? 0 : 1;
    if (fault == Fault::at_epoch_end) {
      // Resumed from `last` (or started), killed right after its first epoch end's checkpoint.
      CHECK(sigkill);
      CHECK(now == (std::max<int64_t>(last, 0) / 2 + 1) * 2);
    }
    if (fault == Fault::in_write_deterministic) {
      // Killed inside the write of the checkpoint after the first epoch end: that epoch end's checkpoint stays,
      // and the half-written temporary file is there (a resume removes it).
      CHECK(sigkill);
      CHECK(now == (std::max<int64_t>(last, 0) / 2 + 1) * 2);
      CHECK(partials.size() == 1);
    }
    last = now;
  }
  ::close(inotify_fd);
  // The last run goes to the end.
  Trainer final_run = start_trainer(faulted, "run");
  REQUIRE(wait_ready(final_run, 60));
  const int final_status = finish(final_run);
  REQUIRE_MESSAGE((WIFEXITED(final_status) && WEXITSTATUS(final_status) == 0), describe(final_status));
  CHECK(test::partial_files(faulted).empty());  // the resumes removed what the killed writers left
  MESSAGE("SIGKILL test: ", killed, " of ", plan.size(), " runs killed, ", left_partial,
          " of them inside a checkpoint write (a temporary file left); ",
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), " s in all");
  CHECK(killed >= 2);  // the two deterministic kills at least

  // Bit for bit: every parameter and buffer (the re-id memory included), every momentum buffer, the position.
  const auto load = [](const std::string& out, TridentNet<Small>& net, train::ForeachSgd& sgd) {
    return train::load_checkpoint((fs::path(out) / "checkpoint.pt").string(), net, sgd);
  };
  at::manual_seed(1);
  TridentNet<Small> a(test::toy_training_options()), b(test::toy_training_options());
  train::ForeachSgd sgd_a(train::detail::trainable(a), torch::optim::SGDOptions(0.1).momentum(0.9));
  train::ForeachSgd sgd_b(train::detail::trainable(b), torch::optim::SGDOptions(0.1).momentum(0.9));
  const auto state_a = load(reference, a, sgd_a);
  const auto rng_a = at::detail::getDefaultCPUGenerator().get_state();
  const auto state_b = load(faulted, b, sgd_b);
  const auto rng_b = at::detail::getDefaultCPUGenerator().get_state();
  CHECK(state_a.iteration == fault_iterations);
  CHECK(state_b.iteration == fault_iterations);
  CHECK(state_b.epoch == state_a.epoch);
  CHECK(at::equal(rng_a, rng_b));
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (const auto& item : pa) {
    CHECK_MESSAGE(at::equal(item.value(), pb[item.key()]), item.key());
    if (item.value().requires_grad())
      CHECK_MESSAGE(at::equal(sgd_a.momentum_buffer(item.value()), sgd_b.momentum_buffer(pb[item.key()])),
                    "momentum of ", item.key());
  }
  const auto ba = a.named_buffers(), bb = b.named_buffers();
  REQUIRE(ba.size() == bb.size());
  for (const auto& item : ba) CHECK_MESSAGE(at::equal(item.value(), bb[item.key()]), item.key());
}
