#pragma once
/// \file trident/train/loader_source.hpp
/// Feeds a data::Loader (prefetching worker threads, deterministic, resumable) to train::fit. Part of
/// trident::vision (the loader decodes pictures with OpenCV); train::fit itself needs only trident::trident.
#include <trident/data/loader.hpp>
#include <trident/train/trainer.hpp>

namespace trident::train {

class LoaderSource {
 public:
  explicit LoaderSource(data::Loader& loader) : loader_(loader) {}
  int64_t batches_per_epoch() const { return loader_.batches_per_epoch(); }
  void seek(int64_t epoch, int64_t batch) { loader_.set_state({epoch, batch}); }
  Batch next() {
    auto loaded = loader_.next();
    TRIDENT_CHECK(loaded.has_value(), "trident::train::LoaderSource::next: the loader's epoch is over");
    return {std::move(loaded->collated.batch), std::move(loaded->collated.targets), loaded->first_position};
  }

 private:
  data::Loader& loader_;
};

}  // namespace trident::train
