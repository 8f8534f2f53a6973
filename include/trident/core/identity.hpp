#pragma once
/// \file trident/core/identity.hpp
/// The identity label of a proposal, as the re-id losses and the re-id memory read it:
///   label >= 0            the index of a labeled identity (a row of the look-up table, 0-based);
///   unlabeled_identity    a person box without an identity label (an unlabeled proposal, Psi_U);
///   background_identity   a background proposal (not a person): no re-id loss, but its feature is pushed into
///                         the circular queue, as the paper does (Section 5.2).

#include <cstdint>

namespace trident {

inline constexpr int64_t unlabeled_identity = -1;
inline constexpr int64_t background_identity = -2;

}  // namespace trident
