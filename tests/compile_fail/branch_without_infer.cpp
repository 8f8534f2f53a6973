// Must NOT compile: a branch without `infer`. CTest checks that the compiler says so in a sentence.
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>

struct NoInferBranch : torch::nn::Module {
  static constexpr std::string_view name = "no_infer";
  static constexpr std::array<std::string_view, 0> loss_names{};
  explicit NoInferBranch(const trident::branches::BranchSetup&) {}
  template <class W, trident::losses::ConfidenceGradient C>
  void add_losses(const trident::branches::RoiContext&, trident::LossMap&) {}
};

using Bad = trident::Config<trident::backbone::ResNetSmall, trident::roi::RoiAlignPooler<24, 8>,
                            trident::Branches<trident::branches::DetectionBranch, NoInferBranch>>;

int main() {
  trident::TridentNet<Bad> net;
  return 0;
}
