// Fuzzes the torch.save reader used for torchvision weights (io/tensor_file.hpp, load_tensor_dict).
#include "fuzz_common.hpp"

#include <trident/io/tensor_file.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = trident::fuzz::write_input(trident::fuzz::work_dir() / "weights.pt", data, size);
  trident::io::TensorDict dict;
  if (!trident::fuzz::accepted([&] { dict = trident::io::load_tensor_dict(path); })) return 0;
  // Touch every tensor's storage: a tensor that claims more bytes than it holds shows here.
  for (const auto& [name, tensor] : dict) (void)tensor.sum().item<double>();
  return 0;
}
