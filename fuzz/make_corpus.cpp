// Writes the fuzzers' seed corpus: small valid inputs of every reader, written by trident's own writers, into
// <out>/<harness>/ (fuzz/run.sh adds the test fixtures and the committed crash inputs).
//   trident_fuzz_make_corpus OUT
#include "mat_datasets.hpp"
#include "small_model.hpp"

#include <trident/data/custom_json.hpp>
#include <trident/eval/results_file.hpp>
#include <trident/search/gallery_index.hpp>
#include <trident/train/checkpoint.hpp>
#include <trident/io/tensor_file.hpp>

#include <opencv2/imgcodecs.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace fs = std::filesystem;

namespace {

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_bytes(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

trident::SearchOutputs outputs(int64_t gallery, int64_t detections, int64_t queries, int64_t dim) {
  trident::SearchOutputs out;
  for (int64_t i = 0; i < gallery; ++i) {
    out.gallery_images.push_back("g" + std::to_string(i) + ".jpg");
    trident::GalleryDetections d;
    const auto xy = torch::rand({detections, 2}) * 50;
    d.boxes = torch::cat({xy, xy + 10 + torch::rand({detections, 2}) * 20}, 1);
    d.scores = torch::rand({detections});
    d.embeddings = torch::nn::functional::normalize(torch::randn({detections, dim}),
                                                    torch::nn::functional::NormalizeFuncOptions().dim(1));
    out.gallery.push_back(d);
  }
  for (int64_t q = 0; q < queries; ++q) out.query_images.push_back("q" + std::to_string(q) + ".jpg");
  out.query_boxes = torch::tensor({1.f, 2.f, 30.f, 60.f}).repeat({queries, 1});
  out.query_embeddings = torch::nn::functional::normalize(torch::randn({queries, dim}),
                                                          torch::nn::functional::NormalizeFuncOptions().dim(1));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT\n", argv[0]);
    return 2;
  }
  const fs::path out(argv[1]);
  const fs::path tmp = out / ".work";
  fs::create_directories(tmp);
  torch::manual_seed(0);

  // Results files, both forms: empty, small, a picture without detections.
  int k = 0;
  for (const auto& o : {outputs(0, 0, 0, 4), outputs(2, 3, 2, 4), outputs(3, 0, 1, 2), outputs(1, 2, 1, 1)}) {
    fs::create_directories(out / "results_binary");
    fs::create_directories(out / "results_json");
    trident::eval::save_search_outputs(o, (out / "results_binary" / ("seed" + std::to_string(k) + ".trs")).string());
    trident::eval::save_search_outputs(o, (out / "results_json" / ("seed" + std::to_string(k) + ".json")).string());
    ++k;
  }

  // JSON datasets.
  const std::string dataset = R"({"name": "fuzz",
 "images": [
  {"file": "a/1.jpg", "camera": 1, "split": "train", "width": 40, "height": 30,
   "boxes": [[1, 2, 10, 20], [4, 4, 0, 3], [5, 6, 7, 8]], "pids": [4, 9, null]},
  {"file": "b/2.jpg", "camera": 2, "boxes": [[2, 3, 4, 5]], "pids": [9]},
  {"file": "a/3.jpg", "boxes": [[10, 10, 20, 30], [0, 0, 3, 3]], "pids": [11, null]},
  {"file": "b/4.jpg", "camera": 2, "split": "test", "boxes": [[3, 3, 8, 9]], "pids": [11]},
  {"file": "b/5.jpg", "split": "test"}],
 "train": ["b/2.jpg"], "test": ["a/3.jpg"],
 "queries": [{"image": "a/3.jpg", "box": [10, 10, 20, 30], "pid": 11, "gallery": ["b/4.jpg", "b/5.jpg"]},
             {"image": "b/4.jpg", "box": [3, 3, 8, 9], "pid": 11}]}
)";
  write_bytes(out / "dataset_json" / "full.json", dataset);
  write_bytes(out / "dataset_json" / "minimal.json", R"({"images": [{"file": "x.jpg", "split": "test"}]})");

  // Gallery indexes: two pictures, five detections; and one with no detections.
  {
    trident::search::GalleryIndexData d;
    d.pictures = {"p0.jpg", "p1.jpg"};
    d.picture_of = torch::tensor({0, 0, 1, 1, 1}, torch::kLong);
    const auto xy = torch::rand({5, 2}) * 50;
    d.boxes = torch::cat({xy, xy + 10}, 1);
    d.scores = torch::rand({5});
    d.embeddings = torch::nn::functional::normalize(torch::randn({5, 3}),
                                                    torch::nn::functional::NormalizeFuncOptions().dim(1));
    d.description = "fuzz seed";
    fs::create_directories(out / "gallery_index");
    trident::search::write_gallery_index((out / "gallery_index" / "five.tgi").string(), d);
    d.pictures = {"only.jpg"};
    d.picture_of = torch::zeros({0}, torch::kLong);
    d.boxes = torch::zeros({0, 4});
    d.scores = torch::zeros({0});
    d.embeddings = torch::zeros({0, 3});
    d.description = "";
    trident::search::write_gallery_index((out / "gallery_index" / "empty.tgi").string(), d);
  }

  // torch.save-compatible dicts (torch::pickle_save writes Python's zip format).
  {
    c10::Dict<std::string, at::Tensor> dict;
    dict.insert("conv.weight", torch::randn({2, 1, 3, 3}));
    dict.insert("bn.running_mean", torch::zeros({2}));
    dict.insert("steps", torch::tensor(7, torch::kLong));
    const auto bytes = torch::pickle_save(c10::IValue(dict));
    write_bytes(out / "tensor_file" / "dict.pt", std::string(bytes.begin(), bytes.end()));
  }

  // Checkpoints of the harness's module.
  {
    trident::fuzz::SmallModel model;
    torch::optim::SGD sgd(model.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    // One step, so the checkpoint holds momentum buffers (what load_checkpoint restores into the optimizer).
    (model.weight.sum() + model.inner->forward(torch::ones({1, 2})).sum()).backward();
    sgd.step();
    trident::train::TrainState state;
    state.epoch = 1;
    fs::create_directories(out / "checkpoint");
    trident::train::save_checkpoint((out / "checkpoint" / "small.pt").string(), model, sgd, state);
  }

  // MAT datasets: one seed per file, its first byte the file's index (the harness's selector).
  const auto mat_seeds = [&](const std::string& name, const std::vector<std::string>& files, auto write) {
    const auto root = tmp / name;
    write(root);
    for (size_t i = 0; i < files.size(); ++i)
      write_bytes(out / name / ("file" + std::to_string(i)), std::string(1, static_cast<char>(i)) +
                                                               read_bytes(root / files[i]));
  };
  mat_seeds("cuhk_sysu", trident::fuzz::cuhk_sysu_files(), trident::fuzz::write_cuhk_sysu);
  mat_seeds("prw", trident::fuzz::prw_files(), trident::fuzz::write_prw);

  // Pictures: tiny ones in the formats OpenCV reads most often.
  {
    fs::create_directories(out / "picture");
    cv::Mat colour(6, 8, CV_8UC3, cv::Scalar(90, 120, 150));
    cv::Mat grey(5, 4, CV_8UC1, cv::Scalar(77));
    cv::Mat deep(3, 5, CV_16UC3, cv::Scalar(1000, 30000, 60000));
    for (const char* ext : {".jpg", ".png", ".bmp", ".ppm", ".tif"})
      cv::imwrite((out / "picture" / (std::string("colour") + ext)).string(), colour);
    cv::imwrite((out / "picture" / "grey.png").string(), grey);
    cv::imwrite((out / "picture" / "grey.pgm").string(), grey);
    cv::imwrite((out / "picture" / "deep.png").string(), deep);
  }
  fs::remove_all(tmp);
  std::printf("trident_fuzz_make_corpus: seeds written to %s\n", out.string().c_str());
  return 0;
}
