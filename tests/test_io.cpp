// trident::io::load_tensor_dict: files written by Python's torch.save, and its errors; the infrastructure every
// writer and every seeded order uses: atomic file writes (core/files.hpp) and shuffles (core/random.hpp).
#include "support/fixtures.hpp"

#include <trident/core/files.hpp>
#include <trident/core/random.hpp>
#include <trident/core/threads.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <vector>

using namespace trident;

TEST_CASE("load_tensor_dict reads torch.save'd dicts and names the file in errors") {
  const auto dict = io::load_tensor_dict(test::fixture_path("boxes.pt"));
  CHECK(dict.at("a").sizes() == at::IntArrayRef({20, 4}));
  CHECK((dict.at("a").scalar_type() == at::kFloat));  // ScalarType is compared undecomposed
  CHECK_THROWS_WITH_AS(io::get(dict, "no_such", "boxes.pt"), "trident::io: 'boxes.pt' has no tensor named 'no_such'",
                       trident::Error);
  CHECK_THROWS_WITH_AS(io::load_tensor_dict("/nonexistent/file.pt"),
                       "trident::io::load_tensor_dict: cannot open '/nonexistent/file.pt'", trident::Error);
  const std::string garbage = std::string(TRIDENT_TEST_TMP_DIR) + "/garbage.pt";
  std::ofstream(garbage) << "not a pickle";
  CHECK_THROWS_WITH_AS(io::load_tensor_dict(garbage), doctest::Contains("is not a file written by torch.save"),
                       trident::Error);
  std::remove(garbage.c_str());
}

TEST_CASE("the version has one home: config.hpp's numbers are the CMake project's version") {
  CHECK(trident::version == TRIDENT_PROJECT_VERSION);
  CHECK(trident::version == std::to_string(TRIDENT_VERSION_MAJOR) + "." + std::to_string(TRIDENT_VERSION_MINOR) + "." +
                                std::to_string(TRIDENT_VERSION_PATCH));
}

TEST_CASE("use_all_cores sets the intra-op thread count") {
  CHECK(use_all_cores(1) == 1);
  CHECK(use_all_cores(2) == 2);
  CHECK(use_all_cores() >= 1);
}

TEST_CASE("write_file_atomically: the whole new file or the old one, never a part, and no temporary file left") {
  namespace fs = std::filesystem;
  const auto dir = fs::path(TRIDENT_TEST_TMP_DIR) / "atomic";
  fs::remove_all(dir);
  const std::string path = (dir / "sub" / "file.txt").string();
  const auto read = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  write_bytes_atomically(path, "first", "test");  // creates the missing folders
  CHECK(read(path) == "first");
  write_stream_atomically(path, "test", [](std::ostream& out) { out << "second, longer"; });
  CHECK(read(path) == "second, longer");
  CHECK(test::partial_files((dir / "sub").string()).empty());

  // A writer that fails half-way: the exception reaches the caller, the old contents stay, the partial file goes.
  std::string seen_temporary;
  CHECK_THROWS_WITH_AS(write_file_atomically(path, "test",
                                             [&](const std::string& temporary) {
                                               seen_temporary = temporary;
                                               std::ofstream(temporary) << "half";
                                               trident::fail("test: out of space");
                                             }),
                       "test: out of space", trident::Error);
  CHECK(fs::path(seen_temporary).parent_path() == fs::path(path).parent_path());
  CHECK(seen_temporary != path);
  CHECK_FALSE(fs::exists(seen_temporary));
  CHECK(read(path) == "second, longer");
  CHECK(test::partial_files((dir / "sub").string()).empty());

  // A folder that cannot be created (a file is in the way) is named in the error.
  write_bytes_atomically((dir / "plain").string(), "x", "test");
  CHECK_THROWS_WITH_AS(write_bytes_atomically((dir / "plain" / "f.txt").string(), "y", "trident::test_caller"),
                       doctest::Contains("trident::test_caller: cannot create the folder of"), trident::Error);
}

TEST_CASE("std::filesystem works in a program linked with LibTorch (libstdc++ comes before libtorch.so)") {
  // pip's LibTorch 2.11 exports its own std::filesystem::remove_all; called with GCC 12's inline code it crashed
  // on a non-empty folder until trident::trident put libstdc++ first on the link line.
  namespace fs = std::filesystem;
  const auto dir = fs::path(TRIDENT_TEST_TMP_DIR) / "remove_all" / "a" / "b";
  fs::create_directories(dir);
  std::ofstream(dir / "file") << "x";
  CHECK(fs::remove_all(fs::path(TRIDENT_TEST_TMP_DIR) / "remove_all") == 4);
  CHECK_FALSE(fs::exists(fs::path(TRIDENT_TEST_TMP_DIR) / "remove_all"));
}

TEST_CASE("seeded shuffles: a permutation, reproducible from (seed, purpose, position), uniform without bias") {
  std::vector<int> a(10), b(10);
  for (int i = 0; i < 10; ++i) a[static_cast<size_t>(i)] = b[static_cast<size_t>(i)] = i;
  auto r1 = seeded_generator(7, 1, 3), r2 = seeded_generator(7, 1, 3), r3 = seeded_generator(7, 1, 4);
  trident::shuffle(a, r1);
  trident::shuffle(b, r2);
  CHECK(a == b);
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 10; ++i) CHECK(sorted[static_cast<size_t>(i)] == i);
  std::vector<int> c(10);
  for (int i = 0; i < 10; ++i) c[static_cast<size_t>(i)] = i;
  trident::shuffle(c, r3);
  CHECK(c != a);  // another position, another order (a 1 in 10! coincidence otherwise)

  // Every one of the 6 orders of 3 items is drawn about equally often: 60000 shuffles, expected 10000 each;
  // a chi-square with 5 degrees of freedom above 20.5 has probability 0.001 for a fair shuffle.
  std::map<std::vector<int>, int> counts;
  auto rng = seeded_generator(11, 2, 0);
  for (int t = 0; t < 60000; ++t) {
    std::vector<int> v{0, 1, 2};
    trident::shuffle(v, rng);
    ++counts[v];
  }
  CHECK(counts.size() == 6);
  double chi2 = 0;
  for (const auto& [order, n] : counts) chi2 += (n - 10000.0) * (n - 10000.0) / 10000.0;
  CHECK(chi2 < 20.5);
  // uniform_below rejects the 2^32 mod bound lowest outputs, so a bound of 3 * 2^30 is as fair as a small one.
  auto big = seeded_generator(5, 3, 0);
  int64_t low = 0;
  const uint32_t bound = 3u << 30;
  for (int t = 0; t < 30000; ++t) low += uniform_below(big, bound) < (1u << 30);
  CHECK(std::abs(static_cast<double>(low) / 30000.0 - 1.0 / 3.0) < 0.02);  // modulo would give 1/2
}
