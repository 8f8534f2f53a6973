#pragma once
/// \file trident/data/read_dataset.hpp
/// One entry point for the readers, by the name a command line gives: "cuhk-sysu" (read_cuhk_sysu), "prw"
/// (read_prw) or "json" (read_custom_json). Part of trident::mat and trident::json.
#include <trident/config.hpp>
#include <trident/data/cuhk_sysu.hpp>
#include <trident/data/custom_json.hpp>
#include <trident/data/prw.hpp>

#include <string>
#include <string_view>

namespace trident::data {

struct ReadOptions {
  int gallery_size = 100;    ///< CUHK-SYSU only: the TestG<size>.mat protocol that gives the queries' galleries
  CuhkSysuSubset subset = CuhkSysuSubset::none;  ///< CUHK-SYSU only: a query subset file instead of TestG<size>
  bool check_images = true;  ///< check that every picture exists (scoring alone never opens one)
  LogCallback log;           ///< receives the reader's notes (dropped boxes, annotations matching no box)
};

/// Reads the dataset at `root` (for "json": the dataset's .json file) with the reader named by `kind`.
inline Dataset read_dataset(std::string_view kind, const std::string& root, const ReadOptions& options = {}) {
  if (kind == "cuhk-sysu") {
    CuhkSysuOptions o;
    o.gallery_size = options.gallery_size;
    o.subset = options.subset;
    o.check_images = options.check_images;
    o.log = options.log;
    return read_cuhk_sysu(root, o);
  }
  if (kind == "prw") {
    PrwOptions o;
    o.check_images = options.check_images;
    o.log = options.log;
    return read_prw(root, o);
  }
  if (kind == "json") {
    CustomJsonOptions o;
    o.check_images = options.check_images;
    o.log = options.log;
    return read_custom_json(root, o);
  }
  fail("trident::data::read_dataset: the dataset kind must be cuhk-sysu, prw or json, got '{}' (root '{}')", kind,
       root);
}

}  // namespace trident::data
