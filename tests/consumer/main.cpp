// Uses trident's detection primitives from outside the project.
#include <trident/trident.hpp>

#include <ATen/ops/tensor.h>

#include <iostream>

int main() {
  trident::use_all_cores();
  const auto boxes = at::tensor({0.f, 0.f, 10.f, 10.f, 1.f, 1.f, 10.f, 10.f, 20.f, 20.f, 30.f, 30.f}).view({3, 4});
  const auto keep = trident::ops::nms(boxes, at::tensor({0.9f, 0.8f, 0.7f}), 0.5);
  const auto pooled = trident::roi::RoiAlignPooler<24, 8>{}(at::ones({1, 4, 16, 16}), std::vector<at::Tensor>{boxes});
  if (keep.numel() != 2 || pooled.size(2) != 24) {
    std::cerr << "trident consumer: unexpected result\n";
    return 1;
  }
  std::cout << "trident consumer: ok (trident " << trident::version << ")\n";
  return 0;
}
