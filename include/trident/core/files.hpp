#pragma once
/// \file trident/core/files.hpp
/// Atomic file writes: the one way trident replaces a file (checkpoints, results files, MAT files, pictures);
/// and read_whole_file, the one way it reads a whole file into memory.
///
/// The new contents go into a temporary file beside the target (`<path>.<random>.partial`, so two writers never
/// share one), which is flushed to the disk and then renamed over the target (atomic on POSIX within one file
/// system). A reader, or a run that is killed or runs out of disk at any point, sees the previous file or the
/// complete new one, never a part; on failure the temporary file is removed and the error names the caller, the
/// file and the reason.
#include <trident/config.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <system_error>

namespace trident {

namespace detail {

/// fsync() of a file or folder; false when it cannot be opened or synced.
inline bool sync_path(const std::string& path, bool folder) {
  const int fd = ::open(path.c_str(), folder ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

}  // namespace detail

/// Replaces `path` with what `fill(temporary)` writes into the file named `temporary` (see the file comment). The
/// folder of `path` is created when missing. `fill` reports its own failures by throwing.
template <class Fill>
void write_file_atomically(const std::string& path, std::string_view caller, Fill&& fill) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) {
    fs::create_directories(target.parent_path(), ec);
    TRIDENT_CHECK(!ec, "{}: cannot create the folder of '{}': {}", caller, path, ec.message());
  }
  std::random_device entropy;
  const std::string temporary = fmt::format("{}.{:08x}.partial", path, entropy());
  try {
    fill(temporary);
    TRIDENT_CHECK(detail::sync_path(temporary, false), "{}: cannot flush '{}' to the disk (disk full?)", caller,
                  temporary);
    fs::rename(temporary, target, ec);
    TRIDENT_CHECK(!ec, "{}: cannot rename '{}' to '{}': {}", caller, temporary, path, ec.message());
  } catch (...) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    throw;
  }
  // The rename itself reaches the disk with the folder's entry (best effort: some file systems refuse it).
  detail::sync_path(target.has_parent_path() ? target.parent_path().string() : std::string("."), true);
}

/// Replaces `path` with what `fill(stream)` writes to a binary output stream.
template <class Fill>
void write_stream_atomically(const std::string& path, std::string_view caller, Fill&& fill) {
  write_file_atomically(path, caller, [&](const std::string& temporary) {
    std::ofstream file(temporary, std::ios::binary | std::ios::trunc);
    TRIDENT_CHECK(file.good(), "{}: cannot open '{}' for writing", caller, temporary);
    fill(static_cast<std::ostream&>(file));
    file.flush();
    TRIDENT_CHECK(file.good(), "{}: writing '{}' failed (disk full?)", caller, temporary);
  });
}

/// Replaces `path` with `bytes`.
inline void write_bytes_atomically(const std::string& path, std::string_view bytes, std::string_view caller) {
  write_stream_atomically(path, caller, [&](std::ostream& out) {
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  });
}

/// The whole contents of the file at `path`; an error names `caller` and the file.
inline std::string read_whole_file(const std::string& path, std::string_view caller) {
  std::ifstream file(path, std::ios::binary);
  TRIDENT_CHECK(file.good(), "{}: cannot open '{}'", caller, path);
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  TRIDENT_CHECK(!file.bad(), "{}: reading '{}' failed", caller, path);
  return bytes;
}

}  // namespace trident
