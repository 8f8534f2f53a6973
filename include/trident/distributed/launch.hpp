#pragma once
/// \file trident/distributed/launch.hpp
/// Starts N processes of a program on this machine with the variables torchrun would give them (RANK,
/// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), waits for them, and stops the rest when
/// one fails: what `02_train --nproc N` does, and how the tests start their ranks. For several machines use
/// torchrun or SLURM (LaunchEnvironment reads both).
#include <trident/config.hpp>

#include <fmt/format.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace trident::distributed {

struct LocalLaunchOptions {
  int processes = 2;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  ///< 0: a free port of this machine
  /// After the first process fails, how long the others get to stop by themselves (their collectives fail as
  /// soon as a peer's connections close) before they are sent SIGTERM, then SIGKILL a second later.
  std::chrono::milliseconds stop_after = std::chrono::seconds(30);
  /// More variables for every process ("NAME", "value").
  std::vector<std::pair<std::string, std::string>> environment;
};

struct LocalLaunchResult {
  std::vector<int> exit_codes;  ///< per rank: the exit status, or 128 + the signal that ended it
  int first_failed = -1;        ///< the rank that failed first, -1 when every process succeeded
  /// 0 when every process succeeded, else the first failure's exit code.
  int exit_code() const { return first_failed < 0 ? 0 : exit_codes[static_cast<size_t>(first_failed)]; }
};

/// A TCP port that was free a moment ago on `addr` (the system's choice).
inline int free_port(const std::string& addr = "127.0.0.1") {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  TRIDENT_CHECK(fd >= 0, "trident::distributed::free_port: socket() failed: {}", std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = 0;
  ::inet_pton(AF_INET, addr.c_str(), &a.sin_addr);
  socklen_t len = sizeof(a);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  const int err = errno;
  ::close(fd);
  TRIDENT_CHECK(ok, "trident::distributed::free_port: no free port on {}: {}", addr, std::strerror(err));
  return ntohs(a.sin_port);
}

/// The running program's path (/proc/self/exe).
inline std::string this_program() {
  std::string path(4096, '\0');
  const auto n = ::readlink("/proc/self/exe", path.data(), path.size());
  TRIDENT_CHECK(n > 0, "trident::distributed::this_program: cannot read /proc/self/exe: {}", std::strerror(errno));
  path.resize(static_cast<size_t>(n));
  return path;
}

/// Runs `argv` (argv[0]: the program's path) as o.processes ranks and waits for all (see the file comment).
inline LocalLaunchResult launch_local(const std::vector<std::string>& argv, const LocalLaunchOptions& o = {}) {
  static constexpr const char* caller = "trident::distributed::launch_local";
  TRIDENT_CHECK(!argv.empty(), "{}: no program to start", caller);
  TRIDENT_CHECK(o.processes >= 1, "{}: processes must be >= 1, got {}", caller, o.processes);
  const int port = o.master_port > 0 ? o.master_port : free_port(o.master_addr);
  const std::vector<std::string> ours = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                                         "MASTER_PORT"};
  std::vector<pid_t> pids;
  LocalLaunchResult result;
  result.exit_codes.assign(static_cast<size_t>(o.processes), -1);
  // This process's environment without the variables set below, then per rank those.
  std::vector<std::string> inherited;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    const auto name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& n : ours) replaced = replaced || n == name;
    for (const auto& [n, v] : o.environment) replaced = replaced || n == name;
    if (!replaced) inherited.push_back(entry);
  }
  for (int rank = 0; rank < o.processes; ++rank) {
    std::vector<std::string> env = inherited;
    env.push_back(fmt::format("RANK={}", rank));
    env.push_back(fmt::format("WORLD_SIZE={}", o.processes));
    env.push_back(fmt::format("LOCAL_RANK={}", rank));
    env.push_back(fmt::format("LOCAL_WORLD_SIZE={}", o.processes));
    env.push_back(fmt::format("MASTER_ADDR={}", o.master_addr));
    env.push_back(fmt::format("MASTER_PORT={}", port));
    for (const auto& [n, v] : o.environment) env.push_back(n + "=" + v);
    std::vector<char*> envp, args;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_copy = argv;
    for (auto& a : argv_copy) args.push_back(a.data());
    args.push_back(nullptr);
    pid_t pid = 0;
    const int err = ::posix_spawn(&pid, argv[0].c_str(), nullptr, nullptr, args.data(), envp.data());
    if (err != 0) {
      for (const pid_t p : pids) ::kill(p, SIGKILL);
      for (const pid_t p : pids) ::waitpid(p, nullptr, 0);
      fail("{}: cannot start '{}' as rank {}: {}", caller, argv[0], rank, std::strerror(err));
    }
    pids.push_back(pid);
  }
  using clock = std::chrono::steady_clock;
  clock::time_point failed_at{};
  bool terminated = false, killed = false;
  size_t running = pids.size();
  while (running > 0) {
    for (size_t r = 0; r < pids.size(); ++r) {
      if (result.exit_codes[r] != -1) continue;
      int status = 0;
      const pid_t done = ::waitpid(pids[r], &status, WNOHANG);
      if (done != pids[r]) continue;
      result.exit_codes[r] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      --running;
      if (result.exit_codes[r] != 0 && result.first_failed < 0) {
        result.first_failed = static_cast<int>(r);
        failed_at = clock::now();
      }
    }
    if (result.first_failed >= 0 && running > 0) {
      const auto since = clock::now() - failed_at;
      if (!terminated && since >= o.stop_after) {
        for (size_t r = 0; r < pids.size(); ++r)
          if (result.exit_codes[r] == -1) ::kill(pids[r], SIGTERM);
        terminated = true;
      } else if (terminated && !killed && since >= o.stop_after + std::chrono::seconds(1)) {
        for (size_t r = 0; r < pids.size(); ++r)
          if (result.exit_codes[r] == -1) ::kill(pids[r], SIGKILL);
        killed = true;
      }
    }
    if (running > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return result;
}

}  // namespace trident::distributed
