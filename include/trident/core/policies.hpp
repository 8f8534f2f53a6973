#pragma once
/// \file trident/core/policies.hpp
/// Compile-time size tags, so that configurations read as sentences:
///   ReidBranch<LutSize<5532>, QueueSize<5000>, EmbedDim<128>>, PartBranch<Parts<6>>.
/// Each is an integral constant of its own type, so a size given in the wrong place fails to compile.

#include <cstdint>
#include <type_traits>

namespace trident {

/// Rows of the re-id look-up table: the number of labeled training identities.
template <int64_t N>
struct LutSize : std::integral_constant<int64_t, N> {
  static_assert(N > 0, "LutSize<N>: the look-up table needs at least one identity");
};

/// Entries of the re-id circular queue (unlabeled and background proposal features).
template <int64_t N>
struct QueueSize : std::integral_constant<int64_t, N> {
  static_assert(N > 0, "QueueSize<N>: the circular queue needs at least one entry");
};

/// Output width of each re-id encoder; the embedding concatenates two of them (g-hat's and g's).
template <int64_t N>
struct EmbedDim : std::integral_constant<int64_t, N> {
  static_assert(N > 0, "EmbedDim<N>: the embedding width must be positive");
};

/// Number of horizontal partitions N_p of the part-classification branch.
template <int64_t N>
struct Parts : std::integral_constant<int64_t, N> {
  static_assert(N > 0, "Parts<N>: the part branch needs at least one partition");
};

template <class T, template <int64_t> class Tag>
inline constexpr bool is_size_tag_v = false;
template <int64_t N, template <int64_t> class Tag>
inline constexpr bool is_size_tag_v<Tag<N>, Tag> = true;

}  // namespace trident
