#pragma once
/// \file trident/branches/context.hpp
/// What the model hands to its task branches for one set of RoIs: the pooled features at both scales, the
/// detection head's outputs (from which every branch reads the confidence alpha) and, in training, the
/// sampled proposals' labels.

#include <trident/core/types.hpp>
#include <trident/detector/roi_sampler.hpp>
#include <trident/losses/part.hpp>
#include <trident/losses/reid.hpp>
#include <trident/memory/reid_memory.hpp>

#include <map>
#include <string>
#include <vector>

namespace trident::branches {

/// What a branch is built from: the channel widths of the backbone policy and the runtime options of the
/// paper's branches (temperatures, lambda, s_kappa, memory momentum; the paper's values by default). A custom
/// branch reads what it needs and ignores the rest.
/// The detection branch's loss choices the paper leaves open (docs/paper-mapping.md, "box regression loss").
struct DetectionLossOptions {
  /// smooth-L1's beta in det_reg: 1/9 (the default) as torchvision's Fast R-CNN loss and every RPN; SeqNet's and
  /// NAE's box heads use 1 (PyTorch 1.2's smooth_l1_loss had no beta). Must be > 0.
  double box_beta = 1.0 / 9.0;
  /// det_reg's weight in the total loss: 1 by default (the paper gives its losses no weights); SeqNet's and NAE's
  /// box heads weight it 10. Must be >= 0 (0 switches the box regression's training off).
  double box_weight = 1.0;
};

struct BranchSetup {
  int64_t stem_channels = 1024;  ///< channels of g-hat, the proposal head's input (conv4)
  int64_t head_channels = 2048;  ///< channels of g, the proposal head's output (conv5)
  losses::ReidLossOptions reid_loss{};
  /// A BatchNorm1d after each re-id encoder (before the L2 normalisation), as the reference codebases NAE and
  /// SeqNet build their embedding heads. The paper's encoders are plain fully connected layers (off); a backbone
  /// trained from scratch needs it (on in small_net_options()): without it the embeddings of all proposals start
  /// out nearly parallel (ReLU features share a large common component) and the OIM loss stays at log(#entries).
  bool reid_embedding_norm = false;
  memory::ReidMemoryOptions memory{};
  losses::PartLossOptions part_loss{};
  DetectionLossOptions detection_loss{};
};

/// The detection branch's outputs for every RoI; alpha is what AGWF scales the other branches' losses with.
struct DetectionOutputs {
  at::Tensor logits;  ///< [K, 2] background / person
  at::Tensor alpha;   ///< [K] person probability p_i1, in the graph
  at::Tensor deltas;  ///< [K, 4] box regression (BoxCoder weights 10, 10, 5, 5)
};

/// One set of RoIs with their features. Rows are RoIs, concatenated over images in image order.
struct RoiContext {
  std::vector<at::Tensor> boxes;  ///< per image [k_i, 4], the RoIs in batch-image coordinates
  at::Tensor pooled;              ///< [K, C4, H, W] RoIAlign output on conv4 (H x W: the pooler's size)
  at::Tensor g_hat;               ///< [K, C4] pooled pooled: the proposal head's input feature, g-hat
  at::Tensor g_map;               ///< [K, C5, H/2, W/2] the proposal head's output map
  at::Tensor g;                   ///< [K, C5] g_map pooled: the proposal head's output feature, g
  DetectionOutputs detection;     ///< set by the detection branch before any other branch runs
  const detector::SampledProposals* sampled = nullptr;  ///< training: labels of the RoIs; else nullptr

  int64_t size() const { return g.size(0); }
};

/// Per-RoI inference outputs of the branches (defined in core/types.hpp).
using trident::RoiOutputs;

}  // namespace trident::branches
