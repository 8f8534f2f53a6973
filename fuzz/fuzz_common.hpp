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
#include <iterator>
#include <map>
#include <string>
#include <string_view>
#include <vector>

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

/// The harness of a reader of a dataset folder (cuhk_sysu, prw): `write_folder(dir)` writes a valid folder once,
/// under work_dir() / `name`; the input's first byte picks one of `files`, which the rest of the input replaces;
/// `read(dir)` runs the reader on the folder; the file's valid bytes are put back after the run.
template <class WriteFolder, class Read>
int fuzz_folder_file(const char* name, const std::vector<std::string>& files, WriteFolder&& write_folder, Read&& read,
                     const uint8_t* data, size_t size) {
  static const std::filesystem::path root = [&] {
    const auto dir = work_dir() / name;
    write_folder(dir);
    return dir;
  }();
  static std::map<std::string, std::string> pristine;
  if (size == 0) return 0;
  const auto& file = files[data[0] % files.size()];
  const auto path = root / file;
  if (!pristine.count(file)) {
    std::ifstream in(path, std::ios::binary);
    pristine[file] = {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  write_input(path, data + 1, size - 1);
  accepted([&] { read(root.string()); });
  const auto& original = pristine[file];
  write_input(path, reinterpret_cast<const uint8_t*>(original.data()), original.size());
  return 0;
}

}  // namespace trident::fuzz
