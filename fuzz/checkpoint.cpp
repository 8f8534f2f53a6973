// Fuzzes checkpoint loading (train/checkpoint.hpp) into a small module with a parameter, a buffer and a
// submodule: load_model (the model's entries only) and load_checkpoint (also the optimizer's momentum buffers,
// the training state and the random generator's state), each on the same input.
#include "fuzz_common.hpp"
#include "small_model.hpp"

#include <trident/train/checkpoint.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static trident::fuzz::SmallModel model;
  static torch::optim::SGD sgd(model.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  const auto path = trident::fuzz::write_input(trident::fuzz::work_dir() / "checkpoint.pt", data, size);
  if (trident::fuzz::accepted([&] { trident::train::load_model(path, model); }))
    (void)model.weight.sum().item<double>();
  if (trident::fuzz::accepted([&] { (void)trident::train::load_checkpoint(path, model, sgd); })) {
    // What a resumed run does next: a step, which reads every momentum buffer the optimizer was given.
    sgd.zero_grad();
    (model.weight.sum() + model.inner->forward(torch::ones({1, 2})).sum()).backward();
    sgd.step();
  }
  return 0;
}
