// Must NOT compile: a configuration whose backbone policy has no make_head. CTest checks that the compiler says
// so in a sentence.
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>

struct HeadlessBackbone {
  static constexpr int64_t stem_channels = 256;
  static constexpr int64_t head_channels = 512;
  static trident::backbone::ResNetStem make_stem(const trident::backbone::StemOptions& o) {
    return trident::backbone::ResNetSmall::make_stem(o);
  }
};

using Bad = trident::Config<HeadlessBackbone, trident::roi::RoiAlignPooler<24, 8>,
                            trident::Branches<trident::branches::DetectionBranch>>;

int main() {
  trident::TridentNet<Bad> net;
  return 0;
}
