// The prefetching loader (trident/data/loader.hpp) on a hand-built dataset of small pictures written with OpenCV:
// every image once per epoch, seeded epoch orders, identical batches for any worker count, exact resume from a
// saved state, flipped boxes against a hand computation, errors naming the missing picture, clean destruction
// mid-epoch. Nothing here depends on timing. Needs OpenCV (trident::vision).
#if defined(TRIDENT_TESTS_WITH_VISION)
#include <trident/data/loader.hpp>

#include <doctest/doctest.h>

#include <ATen/ops/tensor.h>

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;
namespace td = trident::data;

namespace {

/// A dataset of `n` pictures (png, lossless) of different sizes and contents, one person box each, written
/// under TRIDENT_TEST_TMP_DIR/loader/<folder>.
td::Dataset small_dataset(const std::string& folder, int n) {
  const fs::path dir = fs::path(TRIDENT_TEST_TMP_DIR) / "loader" / folder;
  fs::create_directories(dir);
  td::Dataset data;
  data.name = "loader-test";
  data.root = dir.string();
  for (int i = 0; i < n; ++i) {
    const int w = 24 + 4 * i, h = 16 + 2 * (i % 3);
    cv::Mat picture(h, w, CV_8UC3);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        picture.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uint8_t>(7 * x + i), static_cast<uint8_t>(11 * y),
                                                static_cast<uint8_t>(40 * i + x * y));
    td::ImageRecord record;
    record.name = fmt::format("p{}.png", i);
    record.path = (dir / record.name).string();
    REQUIRE(cv::imwrite(record.path, picture));
    record.width = w;
    record.height = h;
    record.boxes = at::tensor({2.0f + static_cast<float>(i), 1.0f, 12.0f + static_cast<float>(i), 9.0f}).view({1, 4});
    record.pids = at::tensor({static_cast<int64_t>(i % 2 == 0 ? i : -1)}, at::kLong);
    data.images.push_back(std::move(record));
    (i < n - 2 ? data.train : data.test).push_back(i);
  }
  return data;
}

td::LoaderOptions small_loader_options(int workers, int64_t batch_size = 2) {
  td::LoaderOptions options;
  options.batch_size = batch_size;
  options.workers = workers;
  options.prefetch = 3;
  options.seed = 42;
  options.transform.min_size = 20;  // small pictures: quick resizes
  options.transform.max_size = 40;
  options.size_divisible = 8;
  return options;
}

/// Every batch of `epochs` epochs (from the loader's current state on).
std::vector<td::LoadedBatch> drain(td::Loader& loader, int epochs) {
  std::vector<td::LoadedBatch> out;
  for (int e = 0; e < epochs; ++e)
    while (auto batch = loader.next()) out.push_back(std::move(*batch));
  return out;
}

void check_same(const td::LoadedBatch& a, const td::LoadedBatch& b) {
  CHECK(a.position == b.position);
  CHECK(a.images == b.images);
  CHECK(a.flipped == b.flipped);
  CHECK(a.scales == b.scales);
  CHECK((a.original_sizes == b.original_sizes));
  CHECK((a.collated.batch.sizes == b.collated.batch.sizes));
  CHECK(a.collated.batch.images.equal(b.collated.batch.images));
  REQUIRE(a.collated.targets.size() == b.collated.targets.size());
  for (size_t i = 0; i < a.collated.targets.size(); ++i) {
    CHECK(a.collated.targets[i].boxes.equal(b.collated.targets[i].boxes));
    CHECK(a.collated.targets[i].pids.equal(b.collated.targets[i].pids));
  }
}

}  // namespace

TEST_CASE("loader: every image exactly once per epoch; the order is a function of the seed and the epoch") {
  const auto data = small_dataset("once", 9);  // 7 training images
  td::Loader loader(data, data.train, small_loader_options(2, 3));
  CHECK(loader.batches_per_epoch() == 3);  // 3 + 3 + 1
  std::vector<std::vector<int64_t>> orders;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> seen;
    std::vector<int64_t> batch_sizes;
    while (auto batch = loader.next()) {
      CHECK(batch->position == td::LoaderState{epoch, static_cast<int64_t>(batch_sizes.size())});
      CHECK(batch->collated.batch.images.size(0) == static_cast<int64_t>(batch->images.size()));
      CHECK(!batch->collated.batch.images.requires_grad());
      batch_sizes.push_back(static_cast<int64_t>(batch->images.size()));
      seen.insert(seen.end(), batch->images.begin(), batch->images.end());
    }
    CHECK(loader.state() == td::LoaderState{epoch + 1, 0});
    CHECK(batch_sizes == std::vector<int64_t>{3, 3, 1});
    CHECK(seen == loader.epoch_order(epoch));
    auto sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == data.train);
    orders.push_back(seen);
  }
  CHECK(orders[0] != orders[1]);
  CHECK(orders[1] != orders[2]);

  auto other_seed = small_loader_options(0, 3);
  other_seed.seed = 43;
  CHECK(td::Loader(data, data.train, other_seed).epoch_order(0) != orders[0]);
  CHECK(td::Loader(data, data.train, small_loader_options(0, 3)).epoch_order(1) == orders[1]);  // same (seed, epoch)

  auto unshuffled = small_loader_options(0, 3);
  unshuffled.shuffle = false;
  unshuffled.drop_last = true;
  td::Loader in_order(data, data.train, unshuffled);
  CHECK(in_order.batches_per_epoch() == 2);  // the short last batch is dropped
  CHECK(in_order.epoch_order(5) == data.train);
}

TEST_CASE("loader: identical batches for 0, 1 and 3 workers, over two epochs") {
  const auto data = small_dataset("workers", 9);
  td::Loader serial(data, data.train, small_loader_options(0));
  const auto expected = drain(serial, 2);
  REQUIRE(expected.size() == 8);  // 4 batches (2, 2, 2, 1) per epoch
  bool some_flipped = false, some_kept = false;
  for (const auto& b : expected)
    for (const bool f : b.flipped) (f ? some_flipped : some_kept) = true;
  CHECK(some_flipped);
  CHECK(some_kept);
  for (const int workers : {1, 3}) {
    CAPTURE(workers);
    td::Loader loader(data, data.train, small_loader_options(workers));
    const auto got = drain(loader, 2);
    REQUIRE(got.size() == expected.size());
    for (size_t i = 0; i < got.size(); ++i) check_same(got[i], expected[i]);
  }
}

TEST_CASE("loader: a saved state resumes with exactly the remaining batches of an uninterrupted run") {
  const auto data = small_dataset("resume", 9);
  td::Loader uninterrupted(data, data.train, small_loader_options(2));
  const auto expected = drain(uninterrupted, 3);  // 12 batches
  REQUIRE(expected.size() == 12);

  td::LoaderState saved;
  {
    td::Loader first(data, data.train, small_loader_options(2));
    while (first.next()) {}                              // epoch 0 (4 batches)
    for (int i = 0; i < 2; ++i) REQUIRE(first.next());  // and two of epoch 1
    saved = first.state();
  }  // destroyed with batches prefetched
  CHECK(saved == td::LoaderState{1, 2});
  td::Loader resumed(data, data.train, small_loader_options(3));
  resumed.set_state(saved);
  std::vector<td::LoadedBatch> rest;
  while (auto b = resumed.next()) rest.push_back(std::move(*b));  // the rest of epoch 1
  while (auto b = resumed.next()) rest.push_back(std::move(*b));  // epoch 2
  REQUIRE(rest.size() == 6);
  for (size_t i = 0; i < rest.size(); ++i) check_same(rest[i], expected[6 + i]);

  // Going back works too, and set_state at the end of an epoch moves on to the next one.
  resumed.set_state({0, 3});
  const auto last_of_first = resumed.next();
  REQUIRE(last_of_first);
  check_same(*last_of_first, expected[3]);
  resumed.set_state({0, 4});
  CHECK(!resumed.next());
  CHECK(resumed.state() == td::LoaderState{1, 0});
  CHECK_THROWS_AS(resumed.set_state({0, 5}), trident::Error);
}

TEST_CASE("loader: flipped boxes and pixels against a hand computation") {
  const fs::path dir = fs::path(TRIDENT_TEST_TMP_DIR) / "loader" / "flip";
  fs::create_directories(dir);
  cv::Mat picture(20, 40, CV_8UC3, cv::Scalar(0, 0, 0));  // H = 20, W = 40
  picture.at<cv::Vec3b>(5, 3) = cv::Vec3b(0, 0, 255);     // a red pixel at x = 3, y = 5
  td::Dataset data;
  td::ImageRecord record;
  record.name = "flip.png";
  record.path = (dir / record.name).string();
  REQUIRE(cv::imwrite(record.path, picture));
  record.boxes = at::tensor({4.0f, 2.0f, 14.0f, 18.0f}).view({1, 4});
  record.pids = at::tensor({int64_t{0}}, at::kLong);
  data.images.push_back(record);

  auto options = small_loader_options(1, 1);
  options.transform.min_size = 40;  // scale = 40 / 20 = 2 (long side 80 <= max_size 100): 40 x 80
  options.transform.max_size = 100;
  options.transform.flip_probability = 1.0;
  options.transform.mean = {0, 0, 0};
  options.transform.std = {1, 1, 1};
  td::Loader loader(data, {0}, options);
  const auto batch = loader.next();
  REQUIRE(batch);
  CHECK(batch->flipped == std::vector<bool>{true});
  CHECK(batch->scales == std::vector<double>{2.0});
  CHECK((batch->original_sizes == std::vector<trident::ImageSize>{{20, 40}}));
  CHECK((batch->collated.batch.sizes == std::vector<trident::ImageSize>{{40, 80}}));
  // Resized box: (4, 2, 14, 18) * 2 = (8, 4, 28, 36); mirrored in W' = 80: (80 - 28, 4, 80 - 8, 36).
  CHECK(batch->collated.targets[0].boxes.equal(at::tensor({52.0f, 4.0f, 72.0f, 36.0f}).view({1, 4})));
  // Bilinear (align_corners = false) spreads the red pixel x = 3, y = 5 over x' = 5 .. 8, y' = 9 .. 12, with
  // weight 0.75 * 0.75 at (x' = 6, y' = 11); mirrored, x' = 79 - 6 = 73. Nothing red is left at x' = 6.
  const auto red = batch->collated.batch.images[0][0];
  CHECK(red[11][73].item<float>() > 0.2f);
  CHECK(red[11][6].item<float>() == 0.0f);
}

TEST_CASE("loader: a missing picture fails the batch that needs it, naming the path; later batches still load") {
  auto data = small_dataset("missing", 6);
  data.images[2].path = (fs::path(TRIDENT_TEST_TMP_DIR) / "loader" / "missing" / "gone.png").string();
  for (const int workers : {0, 2}) {
    CAPTURE(workers);
    auto options = small_loader_options(workers, 2);
    options.shuffle = false;
    td::Loader loader(data, {0, 1, 2, 3, 4, 5}, options);
    REQUIRE(loader.next());  // images 0, 1
    CHECK_THROWS_WITH_AS(loader.next(), doctest::Contains(("image 2 ('" + data.images[2].path + "')").c_str()), trident::Error);
    CHECK_THROWS_WITH_AS(loader.next(), doctest::Contains("no such image file"), trident::Error);  // still failed
    CHECK(loader.state() == td::LoaderState{0, 1});
    loader.set_state({0, 2});  // skip it
    const auto after = loader.next();
    REQUIRE(after);
    CHECK(after->images == std::vector<int64_t>{4, 5});
  }
}

TEST_CASE("loader: destruction mid-epoch joins the workers; options are checked; threads do not multiply") {
  const auto data = small_dataset("destroy", 9);
  const int caller_threads = at::get_num_threads();
  {
    td::Loader untouched(data, data.train, small_loader_options(3));
  }
  {
    td::Loader loader(data, data.train, small_loader_options(3));
    REQUIRE(loader.next());
    CHECK(loader.worker_threads() == std::vector<int>{1, 1, 1});
  }
  CHECK(at::get_num_threads() == caller_threads);

  auto bad = small_loader_options(1);
  bad.batch_size = 0;
  CHECK_THROWS_WITH_AS(td::Loader(data, data.train, bad), "trident::data::Loader: options.batch_size must be >= 1, got 0",
                       trident::Error);
  CHECK_THROWS_WITH_AS(td::Loader(data, {0, 12}, small_loader_options(1)),
                       "trident::data::Loader: indices[1] = 12 is not an image of the dataset (it has 9)",
                       trident::Error);
  CHECK_THROWS_AS(td::Loader(data, {}, small_loader_options(1)), trident::Error);
}

TEST_CASE("loader: in_order_options gives the test images one by one, in order, unflipped") {
  const auto data = small_dataset("in_order", 6);
  td::TransformOptions transform;
  transform.min_size = 20;
  transform.max_size = 40;
  td::Loader loader(data, data.test, td::in_order_options(2, transform));
  std::vector<int64_t> seen;
  while (auto batch = loader.next()) {
    REQUIRE(batch->images.size() == 1);
    CHECK(batch->flipped == std::vector<bool>{false});
    seen.push_back(batch->images[0]);
  }
  CHECK(seen == data.test);
}

TEST_CASE("loader: shards of a global batch are its consecutive parts, with the whole batch's order and flips") {
  // Data parallelism (LoaderOptions::shard_rank / shard_count): batch_size is the global batch. 7 training images
  // in batches of 3 over 2 processes: parts of 1 and 2 images; the last batch (1 image) cannot give each process
  // one, so every process leaves it out. With 8 images the last batch (2) is split 1 + 1.
  for (const int n : {9, 10}) {
    CAPTURE(n);
    const auto data = small_dataset(fmt::format("shards{}", n), n);
    td::Loader whole(data, data.train, small_loader_options(0, 3));
    auto expected = drain(whole, 2);
    std::vector<std::vector<td::LoadedBatch>> parts;
    for (int64_t rank = 0; rank < 2; ++rank) {
      auto options = small_loader_options(rank == 0 ? 0 : 2, 3);
      options.shard_rank = rank;
      options.shard_count = 2;
      td::Loader loader(data, data.train, options);
      CHECK(loader.batches_per_epoch() == (n == 9 ? 2 : 3));
      parts.push_back(drain(loader, 2));
    }
    if (n == 9)  // the whole loader's short last batch of each epoch is the one the shards leave out
      expected.erase(std::remove_if(expected.begin(), expected.end(),
                                    [](const td::LoadedBatch& b) { return b.images.size() < 2; }),
                     expected.end());
    REQUIRE(parts[0].size() == expected.size());
    REQUIRE(parts[1].size() == expected.size());
    for (size_t b = 0; b < expected.size(); ++b) {
      const auto& e = expected[b];
      const auto count = static_cast<int64_t>(e.images.size());
      int64_t position = 0;
      for (int64_t rank = 0; rank < 2; ++rank) {
        const auto& p = parts[static_cast<size_t>(rank)][b];
        CHECK(p.position == e.position);
        CHECK(p.first_position == position);
        CHECK(static_cast<int64_t>(p.images.size()) == (rank + 1) * count / 2 - rank * count / 2);
        for (size_t i = 0; i < p.images.size(); ++i) {
          const auto k = static_cast<size_t>(position) + i;
          CHECK(p.images[i] == e.images[k]);
          CHECK(p.flipped[i] == e.flipped[k]);
          CHECK(p.scales[i] == e.scales[k]);
          const auto [h, w] = e.collated.batch.sizes[k];
          CHECK(p.collated.batch.images[static_cast<int64_t>(i)].narrow(1, 0, h).narrow(2, 0, w).equal(
              e.collated.batch.images[static_cast<int64_t>(k)].narrow(1, 0, h).narrow(2, 0, w)));
          CHECK(p.collated.targets[i].boxes.equal(e.collated.targets[k].boxes));
        }
        position += static_cast<int64_t>(p.images.size());
      }
      CHECK(position == count);
    }
  }
  const auto data = small_dataset("shards9", 9);
  auto options = small_loader_options(0, 2);
  options.shard_count = 3;
  options.shard_rank = 1;
  CHECK_THROWS_WITH(td::Loader(data, data.train, options),
                    doctest::Contains("a batch of 2 images cannot be shared by 3 processes"));
  options.batch_size = 3;
  options.shard_rank = 3;
  CHECK_THROWS_WITH(td::Loader(data, data.train, options), doctest::Contains("shard_rank 3 must lie in [0, shard_count = 3)"));
}
#endif
