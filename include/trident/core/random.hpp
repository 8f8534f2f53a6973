#pragma once
/// \file trident/core/random.hpp
/// Seeded random streams and shuffles that give the same numbers on every standard library (std::shuffle and
/// the std::uniform_*_distribution are not specified exactly; std::mt19937 and std::seed_seq are). The data
/// loader's epoch order and flips, the in-memory batch source's order and the synthetic benchmark's draws use
/// these.
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace trident {

/// A generator seeded with the 32-bit words of (seed, purpose, a, b) through std::seed_seq: one independent,
/// reproducible stream per purpose and position (e.g. purpose "epoch order", a = the epoch).
inline std::mt19937 seeded_generator(uint64_t seed, uint32_t purpose, int64_t a, int64_t b = 0) {
  const auto lo = [](auto v) { return static_cast<uint32_t>(static_cast<uint64_t>(v) & 0xffffffffu); };
  const auto hi = [](auto v) { return static_cast<uint32_t>(static_cast<uint64_t>(v) >> 32); };
  std::seed_seq seq{lo(seed), hi(seed), purpose, lo(a), hi(a), lo(b), hi(b)};
  return std::mt19937(seq);
}

/// A uniform integer in [0, bound) from the generator's 32-bit outputs, by rejection (no modulo bias).
inline uint32_t uniform_below(std::mt19937& rng, uint32_t bound) {
  const uint32_t limit = static_cast<uint32_t>(-bound) % bound;  // 2^32 mod bound: reject the first `limit` values
  for (;;) {
    const uint32_t r = static_cast<uint32_t>(rng());
    if (r >= limit) return r % bound;
  }
}

/// Fisher–Yates: for i = n-1 down to 1, swap v[i] with v[below(i + 1)], where below(k) draws in [0, k).
template <class T, class Below>
void shuffle_with(std::vector<T>& v, Below&& below) {
  for (size_t i = v.size(); i > 1; --i) {
    const auto j = static_cast<size_t>(below(static_cast<uint32_t>(i)));
    std::swap(v[i - 1], v[j]);
  }
}

/// An unbiased shuffle driven by `rng`.
template <class T>
void shuffle(std::vector<T>& v, std::mt19937& rng) {
  shuffle_with(v, [&rng](uint32_t bound) { return uniform_below(rng, bound); });
}

}  // namespace trident
