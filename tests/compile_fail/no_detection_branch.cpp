// Must NOT compile: a configuration without a detection branch (nothing provides AGWF's confidence).
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>

using Bad = trident::Config<trident::backbone::ResNetSmall, trident::roi::RoiAlignPooler<24, 8>,
                            trident::Branches<trident::branches::PartBranch<trident::Parts<3>>>>;

int main() {
  trident::TridentNet<Bad> net;
  return 0;
}
