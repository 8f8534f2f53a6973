// Must NOT compile: a branch whose loss name is one the re-id branch adds too ("id"). CTest checks that the
// compiler says so in a sentence.
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>

struct ClashingBranch : torch::nn::Module {
  static constexpr std::string_view name = "clash";
  static constexpr std::array<std::string_view, 1> loss_names{"id"};
  explicit ClashingBranch(const trident::branches::BranchSetup&) {}
  template <class W, trident::losses::ConfidenceGradient C>
  void add_losses(const trident::branches::RoiContext&, trident::LossMap&) {}
  void infer(const trident::branches::RoiContext&, trident::RoiOutputs&) {}
};

using Bad = trident::Config<trident::backbone::ResNetSmall, trident::roi::RoiAlignPooler<24, 8>,
                            trident::Branches<trident::branches::DetectionBranch,
                                              trident::branches::ReidBranch<trident::LutSize<4>, trident::QueueSize<8>>,
                                              ClashingBranch>>;

int main() {
  trident::TridentNet<Bad> net;
  return 0;
}
