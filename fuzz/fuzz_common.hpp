#pragma once
// What every harness shares: the input bytes as a file of this process's own (the readers take paths), and the
// rule that a trident::Error is the right answer to a bad input. Anything else that escapes a reader (another
// exception, a crash, a sanitizer report, a hang, an allocation past libFuzzer's limits) is a finding.
#include <trident/config.hpp>

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace trident::fuzz {

/// This process's own folder for input files, removed at exit.
inline const std::filesystem::path& work_dir() {
  static const std::filesystem::path dir = [] {
    const char* base = std::getenv("TRIDENT_FUZZ_TMP");
    auto d = std::filesystem::path(base != nullptr ? base : std::filesystem::temp_directory_path().string()) /
             ("trident-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(work_dir(), ec);
    });
    return d;
  }();
  return dir;
}

/// Writes `size` bytes to `path` (replacing it) and returns `path`.
inline std::string write_input(const std::filesystem::path& path, const uint8_t* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) std::abort();  // the harness's own failure, not the reader's
  return path.string();
}

/// Runs `read`; true when it returned, false when it threw a trident::Error, which is the correct outcome for a
/// malformed input (its message must name the function, "trident::...", as every trident message does). What
/// the harness then does with an accepted input runs outside: an error there is a finding.
template <class Read>
bool accepted(Read&& read) {
  try {
    read();
    return true;
  } catch (const trident::Error& e) {
    if (std::string_view(e.what()).find("trident::") == std::string_view::npos) std::abort();
    return false;
  }
}

}  // namespace trident::fuzz
