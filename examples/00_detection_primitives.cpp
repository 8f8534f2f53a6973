// 00_detection_primitives — trident's detection primitives on one image, step by step.
//
//   ./build/examples/00_detection_primitives [--image scene.jpg --box x1,y1,x2,y2 ...] [--out out/]
//
// Without --image it renders a street-like scene with a few people (and knows their boxes). It then walks
// through what a Faster R-CNN does with boxes, using the functions the network itself uses:
//   1. pad the image to a multiple of 32 and lay the RPN's anchors on the stride-16 conv4 grid;
//   2. match anchors to the people by IoU and encode/decode regression targets with the box coder;
//   3. make noisy "proposals" around each person, score them by IoU, and let NMS keep one per person;
//   4. crop every kept proposal with RoIAlign into 24 x 8 bins (the paper's RoI size, here x4 = 96 x 32 pixels);
// and writes one picture (out/00_detection_primitives.png) showing anchors, proposals, NMS survivors and crops.

#include <trident/trident.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <ATen/ops/from_blob.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>

#include <filesystem>
#include <iostream>
#include <random>
#include <sstream>

namespace {

using trident::ops::AnchorGenerator;
using trident::ops::BoxCoder;

// A scene with people drawn as head + torso + legs, in distinct clothes, on a gradient "street".
cv::Mat render_scene(std::vector<std::array<float, 4>>& boxes) {
  cv::Mat img(480, 720, CV_8UC3);
  for (int y = 0; y < img.rows; ++y)
    img.row(y).setTo(cv::Scalar(150 + y / 8, 140 + y / 10, 120 + y / 12));
  cv::rectangle(img, {0, 380}, {720, 480}, cv::Scalar(90, 90, 95), cv::FILLED);  // pavement
  const std::array<std::array<int, 3>, 4> people{{{80, 120, 260}, {250, 140, 230}, {420, 90, 300}, {600, 160, 200}}};
  const std::array<cv::Scalar, 4> shirts{cv::Scalar(40, 40, 200), cv::Scalar(200, 80, 30), cv::Scalar(40, 160, 40),
                                          cv::Scalar(30, 200, 220)};
  for (size_t i = 0; i < people.size(); ++i) {
    const auto [x, top, height] = people[i];
    const int w = height * 2 / 5, head = height / 7;
    cv::circle(img, {x + w / 2, top + head}, head, cv::Scalar(150, 180, 220), cv::FILLED);
    cv::rectangle(img, {x, top + 2 * head}, {x + w, top + height * 6 / 10}, shirts[i], cv::FILLED);
    cv::rectangle(img, {x + w / 8, top + height * 6 / 10}, {x + w * 7 / 8, top + height}, cv::Scalar(60, 50, 40),
                  cv::FILLED);
    boxes.push_back({float(x), float(top), float(x + w), float(top + height)});
  }
  return img;
}

at::Tensor to_tensor(const cv::Mat& bgr) {  // HWC uint8 BGR -> [1, 3, H, W] float in [0, 1], RGB
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return at::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, at::kByte).permute({2, 0, 1}).unsqueeze(0).to(at::kFloat) /
         255.0;
}

cv::Mat to_image(const at::Tensor& chw) {  // [3, H, W] float RGB -> BGR uint8
  const auto hwc = (chw.clamp(0, 1) * 255).to(at::kByte).permute({1, 2, 0}).contiguous();
  cv::Mat rgb(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), CV_8UC3, hwc.data_ptr());
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}

void draw_box(cv::Mat& img, const at::Tensor& box, const cv::Scalar& colour, int thickness) {
  const auto b = box.to(at::kFloat).contiguous();
  const float* p = b.data_ptr<float>();
  cv::rectangle(img, cv::Point2f(p[0], p[1]), cv::Point2f(p[2], p[3]), colour, thickness);
}

std::array<float, 4> parse_box(const std::string& text) {
  std::array<float, 4> b{};
  std::stringstream ss(text);
  std::string item;
  for (float& v : b) {
    if (!std::getline(ss, item, ',')) throw trident::Error(fmt::format("--box '{}': expected x1,y1,x2,y2", text));
    v = std::stof(item);
  }
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"trident example 00: the detection primitives (anchors, box coder, NMS, RoIAlign) on one image"};
  std::string image_path, out_dir = "out";
  std::vector<std::string> box_args;
  int threads = 0;
  app.add_option("--image", image_path, "an image to use instead of the rendered scene (needs --box)");
  app.add_option("--box", box_args, "a person box x1,y1,x2,y2 in the image (repeatable)");
  app.add_option("--out", out_dir, "folder for the picture")->capture_default_str();
  app.add_option("--threads", threads, "intra-op threads (0: all cores)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    std::cout << fmt::format("trident {} — example 00, {} threads\n", trident::version,
                             trident::use_all_cores(threads));
    // --- The image and its people ------------------------------------------------------------------------------
    std::vector<std::array<float, 4>> people;
    cv::Mat image;
    if (image_path.empty()) {
      image = render_scene(people);
    } else {
      image = cv::imread(image_path, cv::IMREAD_COLOR);
      if (image.empty()) throw trident::Error(fmt::format("--image '{}': cannot read the image", image_path));
      for (const auto& b : box_args) people.push_back(parse_box(b));
      if (people.empty()) throw trident::Error("--image needs at least one --box x1,y1,x2,y2");
    }
    const auto gt = at::from_blob(people.data(), {static_cast<int64_t>(people.size()), 4}, at::kFloat).clone();
    trident::ops::validate_boxes(gt, "example 00", "--box");
    const int64_t height = image.rows, width = image.cols;

    // --- 1. Anchors on the stride-16 grid of the padded image ---------------------------------------------------
    // Batching pads images to a multiple of 32, so conv4's grid has exactly ceil(size / 16) cells per side.
    const int64_t padded_h = (height + 31) / 32 * 32, padded_w = (width + 31) / 32 * 32;
    const AnchorGenerator anchor_generator;  // sizes 32..512, ratios 0.5/1/2, stride 16: the paper's RPN
    const auto anchors = anchor_generator.grid_anchors(padded_h / 16, padded_w / 16);
    std::cout << fmt::format("1. {}x{} image, padded {}x{}: {} x {} conv4 cells x {} anchors = {} anchors\n", height,
                             width, padded_h, padded_w, padded_h / 16, padded_w / 16,
                             anchor_generator.num_anchors_per_location(), anchors.size(0));

    // --- 2. Match anchors to people; regression targets of the RPN (weights 1) -------------------------------
    const auto iou = trident::ops::box_iou(anchors, gt);  // [A, P]
    const auto [best_iou, best_person] = iou.max(1);
    const auto positive = (best_iou >= 0.7).nonzero().select(1, 0);
    const BoxCoder rpn_coder({1.0, 1.0, 1.0, 1.0});
    const auto matched = gt.index_select(0, best_person.index_select(0, positive));
    const auto targets = rpn_coder.encode(matched, anchors.index_select(0, positive));
    const auto roundtrip = rpn_coder.decode(targets, anchors.index_select(0, positive));
    std::cout << fmt::format("2. {} anchors with IoU >= 0.7 (RPN positives); encode->decode error {:.2e} px\n",
                             positive.size(0),
                             matched.numel() ? (roundtrip - matched).abs().max().item<double>() : 0.0);

    // --- 3. Noisy proposals around each person, scored by IoU, then NMS -----------------------------------------
    const int64_t per_person = 20;
    at::manual_seed(7);
    const auto centre_boxes = gt.repeat_interleave(per_person, 0);
    const auto sizes = (centre_boxes.narrow(1, 2, 2) - centre_boxes.narrow(1, 0, 2)).repeat({1, 2});
    const auto proposals = trident::ops::clip_boxes_to_image(
        centre_boxes + at::randn(centre_boxes.sizes()) * 0.08 * sizes, height, width);
    const auto keep_valid = trident::ops::remove_small_boxes(proposals, 4.0);
    // A detector's score threshold, with IoU to the nearest person standing in for the detection score.
    const auto all_scores = std::get<0>(trident::ops::box_iou(proposals.index_select(0, keep_valid), gt).max(1));
    const auto confident = keep_valid.index_select(0, (all_scores >= 0.5).nonzero().select(1, 0));
    const auto candidates = proposals.index_select(0, confident);
    const auto scores = std::get<0>(trident::ops::box_iou(candidates, gt).max(1));
    const auto keep = trident::ops::nms(candidates, scores, 0.4);
    std::cout << fmt::format("3. {} proposals around {} people, {} with score >= 0.5; NMS at IoU 0.4 keeps {}\n",
                             proposals.size(0), gt.size(0), candidates.size(0), keep.size(0));

    // --- 4. RoIAlign: every kept proposal into 24 x 8 bins (x4 here, to look at) ------------------------------
    const auto pixels = to_tensor(image);
    const auto kept = candidates.index_select(0, keep);
    const trident::roi::RoiAlignPooler<96, 32> crop({/*spatial_scale=*/1.0, /*sampling_ratio=*/2, /*aligned=*/true});
    const auto crops = crop(pixels, std::vector<at::Tensor>{kept});  // [K, 3, 96, 32]
    std::cout << fmt::format("4. RoIAlign crops: {}\n", trident::shape_of(crops));

    // --- The picture -------------------------------------------------------------------------------------------
    cv::Mat canvas = image.clone();
    const auto centre = anchors.view({padded_h / 16, padded_w / 16, -1, 4})[padded_h / 32][padded_w / 32];
    for (int64_t a = 0; a < centre.size(0); ++a) draw_box(canvas, centre[a], cv::Scalar(200, 200, 200), 1);
    for (int64_t i = 0; i < candidates.size(0); ++i) draw_box(canvas, candidates[i], cv::Scalar(0, 215, 255), 1);
    for (int64_t i = 0; i < kept.size(0); ++i) draw_box(canvas, kept[i], cv::Scalar(0, 255, 0), 3);
    for (int64_t i = 0; i < gt.size(0); ++i) draw_box(canvas, gt[i], cv::Scalar(255, 0, 255), 1);
    cv::Mat strip(canvas.rows, std::max<int>(40 * static_cast<int>(crops.size(0)), 40), CV_8UC3, cv::Scalar(30, 30, 30));
    for (int64_t i = 0; i < crops.size(0); ++i) {
      cv::Mat c = to_image(crops[i]);
      c.copyTo(strip(cv::Rect(static_cast<int>(40 * i + 4), 10, c.cols, c.rows)));
    }
    cv::Mat picture;
    cv::hconcat(canvas, strip, picture);
    std::filesystem::create_directories(out_dir);
    const auto path = (std::filesystem::path(out_dir) / "00_detection_primitives.png").string();
    const auto tmp = path + ".tmp.png";
    if (!cv::imwrite(tmp, picture)) throw trident::Error(fmt::format("cannot write '{}'", tmp));
    std::filesystem::rename(tmp, path);  // written atomically
    std::cout << "wrote " << path
              << " (grey: anchors of the centre cell, yellow: proposals, green: NMS survivors, magenta: people; "
                 "right: RoIAlign crops)\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
