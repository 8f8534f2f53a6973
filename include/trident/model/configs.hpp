#pragma once
/// \file trident/model/configs.hpp
/// The configurations people use, by name: the paper's for CUHK-SYSU and PRW, the ablation rows of its
/// Tables 1 and 2, and a small configuration that trains on a CPU in minutes.
///
///   TridentNet<PaperConfig<CuhkSysu>> net;        // ResNet-50, RoIAlign 24x8, 3 branches, AGWF
///   TridentNet<WithoutPartConfig<Prw>> ablation;   // Table 1, "w/o Part cls."

#include <trident/branches/detection.hpp>
#include <trident/branches/part.hpp>
#include <trident/branches/reid.hpp>
#include <trident/model/ablation.hpp>
#include <trident/model/config.hpp>
#include <trident/model/trident_net.hpp>

#include <algorithm>

namespace trident {

/// CUHK-SYSU: 5532 training identities (look-up table rows), a circular queue of 5000 (Section 5.2).
struct CuhkSysu {
  static constexpr int64_t identities = 5532;
  static constexpr int64_t queue = 5000;
};

/// PRW: 482 training identities, a queue of 500 (Section 5.2). PRW numbers its people 1..932 over both
/// splits; the PRW reader is to renumber the training identities 0..481 in order of first appearance, so that
/// the look-up table has exactly the 482 rows the paper gives (pids outside [0, 482) are rejected by the loss
/// with a message naming the value).
struct Prw {
  static constexpr int64_t identities = 482;
  static constexpr int64_t queue = 500;
};

/// The paper leaves the number of part partitions open; trident uses 6, as PCB [17] whose partition the paper
/// follows. The conv5 map of a 24 x 8 RoI is 12 x 4, so each strip is two rows.
inline constexpr int64_t paper_parts = 6;

template <class Dataset, class Terms = branches::FullReidLoss>
using PaperReidBranch =
    branches::ReidBranch<LutSize<Dataset::identities>, QueueSize<Dataset::queue>, EmbedDim<128>, Terms>;

/// The full method (Table 3, "Proposed").
template <class Dataset, class Backbone = backbone::ResNet50>
using PaperConfig = Config<Backbone, roi::RoiAlignPooler<24, 8>,
                           Branches<branches::DetectionBranch, PaperReidBranch<Dataset>,
                                    branches::PartBranch<Parts<paper_parts>>>,
                           losses::Agwf>;

/// The ablation rows of Tables 1 and 2 (model/ablation.hpp applies them to any configuration).
/// Table 1, "w/o Part cls.".
template <class Dataset, class Backbone = backbone::ResNet50>
using WithoutPartConfig = Ablated<PaperConfig<Dataset, Backbone>, ablation::WithoutPart>;

/// Table 1, "w/o AGWF": every loss with alpha = 1.
template <class Dataset, class Backbone = backbone::ResNet50>
using WithoutAgwfConfig = Ablated<PaperConfig<Dataset, Backbone>, ablation::WithoutAgwf>;

/// Table 1, "w/o AGWF & Part cls.".
template <class Dataset, class Backbone = backbone::ResNet50>
using WithoutAgwfAndPartConfig = Ablated<PaperConfig<Dataset, Backbone>, ablation::WithoutAgwf, ablation::WithoutPart>;

/// Table 2, "w/o L_bin & L_un": the re-id branch trains with L_id alone.
template <class Dataset, class Backbone = backbone::ResNet50>
using WithoutBinAndUnConfig = Ablated<PaperConfig<Dataset, Backbone>, ablation::WithoutBinAndUn>;

/// A small configuration for CPU training and tests: the paper's structure on backbone::ResNetSmall (a quarter
/// of ResNet-50's widths, 2 blocks per stage), a smaller memory, the same branches and AGWF. The RoI size is the
/// paper's 24 x 8 unless given.
template <int64_t Identities, int64_t Queue = 256, int64_t NumParts = paper_parts,
          class Pooler = roi::RoiAlignPooler<24, 8>>
using SmallConfig = Config<backbone::ResNetSmall, Pooler,
                           Branches<branches::DetectionBranch,
                                    branches::ReidBranch<LutSize<Identities>, QueueSize<Queue>, EmbedDim<64>>,
                                    branches::PartBranch<Parts<NumParts>>>,
                           losses::Agwf>;

/// The small configuration the example programs train, evaluate and search with (room for 512 training
/// identities, a queue of 512): the type a checkpoint of `02_train --config small` loads into. Its RoIs are
/// 12 x 4, half the paper's height and width: in pictures of a few hundred pixels a person covers about 6-11
/// conv4 cells in height, so 24 x 8 samples would only interpolate, and the conv5 head -- most of a training
/// iteration's arithmetic -- costs a quarter (2x the images/s, and more mAP per minute: docs/training.md).
/// The part branch's 6 strips are then one conv5 row each.
using SmallCpuConfig = SmallConfig<512, 512, paper_parts, roi::RoiAlignPooler<12, 4>>;

namespace detail {
template <class B>
constexpr int64_t lut_size_of() {
  if constexpr (requires { B::lut_size; }) return B::lut_size;
  else return 0;
}
template <class BranchList>
struct lut_rows_of;
template <class... Bs>
struct lut_rows_of<Branches<Bs...>> {
  static constexpr int64_t value = std::max({int64_t{0}, lut_size_of<Bs>()...});
};
}  // namespace detail

/// The rows of a configuration's re-id look-up table (0 without a re-id branch): the most labeled training
/// identities it can learn.
template <class Cfg>
inline constexpr int64_t lut_rows_v = detail::lut_rows_of<typename Cfg::branches>::value;

/// The runtime options that go with SmallConfig: no ImageNet weights, so nothing is frozen and the batch norms
/// train; fewer proposals and RoIs per image, as suits small pictures with a few people each; batch-normalised
/// re-id embeddings (as NAE and SeqNet build them).
inline NetOptions small_net_options() {
  NetOptions o;
  o.stem.frozen_up_to = backbone::FrozenUpTo::none;
  o.stem.norm = backbone::BatchNormMode::trainable;
  o.rpn.pre_nms_top_n_train = 1000;
  o.rpn.post_nms_top_n_train = 256;
  o.rpn.pre_nms_top_n_test = 500;
  o.rpn.post_nms_top_n_test = 100;
  o.sampler.batch_size_per_image = 64;
  o.branches.reid_embedding_norm = true;  // see BranchSetup: from-scratch features need it to learn re-id
  return o;
}

}  // namespace trident
