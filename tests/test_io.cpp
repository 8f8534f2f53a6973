// trident::io::load_tensor_dict: files written by Python's torch.save, and its errors.
#include "support/fixtures.hpp"

#include <trident/core/threads.hpp>

#include <cstdio>
#include <fstream>

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

TEST_CASE("use_all_cores sets the intra-op thread count") {
  CHECK(use_all_cores(1) == 1);
  CHECK(use_all_cores(2) == 2);
  CHECK(use_all_cores() >= 1);
}
