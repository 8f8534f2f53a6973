#pragma once
/// \file trident/model/ablation.hpp
/// The ablation rows of the paper's Tables 1 and 2 as transformations of any configuration, so that an ablation
/// of your own configuration is one type away:
///
///   using Mine = Config<backbone::ResNetSmall, roi::RoiAlignPooler<12, 4>, Branches<...>, losses::Agwf>;
///   TridentNet<Ablated<Mine, ablation::WithoutPart>> without_part;             // Table 1, "w/o Part cls."
///   TridentNet<Ablated<Mine, ablation::WithoutAgwf, ablation::WithoutPart>> plain;  // "w/o AGWF & Part cls."
///
/// Rows (each a tag in trident::ablation):
///   WithoutPart      drops every part-classification branch (branches::PartBranch<...>);
///   WithoutAgwf      every loss with alpha = 1: the weighting becomes losses::PlainSoftmax;
///   WithoutBinAndUn  the re-id branch trains with L_id alone (branches::IdLossOnly: Table 2).
/// A row that would change nothing (no part branch to drop, a weighting that is already plain, a re-id branch
/// that already trains with L_id alone, or none at all) fails to compile with a sentence saying so: an ablation
/// that silently equals its baseline would report a difference of zero as a finding.

#include <trident/branches/part.hpp>
#include <trident/branches/reid.hpp>
#include <trident/model/config.hpp>

#include <type_traits>

namespace trident {

namespace ablation {
/// Table 1, "w/o Part cls.": no part-classification branch.
struct WithoutPart {};
/// Table 1, "w/o AGWF": plain softmax cross-entropy (alpha = 1) in the re-id and part losses.
struct WithoutAgwf {};
/// Table 2, "w/o L_bin & L_un": the re-id branch trains with L_id alone.
struct WithoutBinAndUn {};
}  // namespace ablation

namespace detail {

template <class B>
inline constexpr bool is_part_branch_v = false;
template <class P>
inline constexpr bool is_part_branch_v<branches::PartBranch<P>> = true;

template <class B>
inline constexpr bool is_full_reid_branch_v = false;
template <class L, class Q, class E>
inline constexpr bool is_full_reid_branch_v<branches::ReidBranch<L, Q, E, branches::FullReidLoss>> = true;

template <class B>
struct id_loss_only {
  using type = B;
};
template <class L, class Q, class E>
struct id_loss_only<branches::ReidBranch<L, Q, E, branches::FullReidLoss>> {
  using type = branches::ReidBranch<L, Q, E, branches::IdLossOnly>;
};

/// Branches<Kept...> followed by the branches In... that are not part branches.
template <class Kept, class... In>
struct drop_part_branches {
  using type = Kept;
};
template <class... Kept, class B, class... In>
struct drop_part_branches<Branches<Kept...>, B, In...>
    : drop_part_branches<std::conditional_t<is_part_branch_v<B>, Branches<Kept...>, Branches<Kept..., B>>, In...> {};

template <class Cfg, class Row>
struct ablate {
  static_assert(sizeof(Row) == 0,
                "Ablated<Config, Row...>: Row must be trident::ablation::WithoutPart, WithoutAgwf or WithoutBinAndUn, "
                "and Config a trident::Config<...>");
};

template <class Backbone, class Pooler, class... Bs, class W, losses::ConfidenceGradient C>
struct ablate<Config<Backbone, Pooler, Branches<Bs...>, W, C>, ablation::WithoutPart> {
  static_assert((is_part_branch_v<Bs> || ...),
                "Ablated<Config, ablation::WithoutPart>: the configuration has no part branch (branches::PartBranch) "
                "to remove");
  using type = Config<Backbone, Pooler, typename drop_part_branches<Branches<>, Bs...>::type, W, C>;
};

template <class Backbone, class Pooler, class... Bs, class W, losses::ConfidenceGradient C>
struct ablate<Config<Backbone, Pooler, Branches<Bs...>, W, C>, ablation::WithoutAgwf> {
  static_assert(!std::is_same_v<W, losses::PlainSoftmax>,
                "Ablated<Config, ablation::WithoutAgwf>: the configuration's weighting is already losses::PlainSoftmax");
  using type = Config<Backbone, Pooler, Branches<Bs...>, losses::PlainSoftmax, C>;
};

template <class Backbone, class Pooler, class... Bs, class W, losses::ConfidenceGradient C>
struct ablate<Config<Backbone, Pooler, Branches<Bs...>, W, C>, ablation::WithoutBinAndUn> {
  static_assert((is_full_reid_branch_v<Bs> || ...),
                "Ablated<Config, ablation::WithoutBinAndUn>: the configuration has no re-id branch training with "
                "L_bin and L_un (branches::ReidBranch<..., FullReidLoss>) to reduce to L_id");
  using type = Config<Backbone, Pooler, Branches<typename id_loss_only<Bs>::type...>, W, C>;
};

template <class Cfg, class... Rows>
struct ablate_all {
  using type = Cfg;
};
template <class Cfg, class Row, class... Rows>
struct ablate_all<Cfg, Row, Rows...> : ablate_all<typename ablate<Cfg, Row>::type, Rows...> {};

}  // namespace detail

/// Cfg with the ablation rows applied, left to right (see the file comment).
template <class Cfg, class... Rows>
using Ablated = typename detail::ablate_all<Cfg, Rows...>::type;

}  // namespace trident
