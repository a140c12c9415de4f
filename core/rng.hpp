// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011, as in cuRAND).
// A number is a pure function of (key, counter): no hidden state, so a value drawn
// for (seed, step, layer, t, b, k) is the same on any thread count or backend, and
// a run resumed at step s draws exactly what the uninterrupted run drew.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace mtp {

using Philox4x32 = std::array<std::uint32_t, 4>;

constexpr Philox4x32 philox4x32_10(Philox4x32 ctr, std::array<std::uint32_t, 2> key) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = std::uint64_t{kM0} * ctr[0];
    const std::uint64_t p1 = std::uint64_t{kM1} * ctr[2];
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
    key[0] += kW0;
    key[1] += kW1;
  }
  return ctr;
}

// Uniform in (0, 1]: never 0, so log() is safe.
inline double uniform_from_bits(std::uint32_t bits) {
  return (double(bits) + 1.0) * 0x1p-32;
}

// Random numbers for one purpose (a "stream") under one seed. draw(i) depends only on
// (seed, stream, i).
class CounterRng {
 public:
  CounterRng(std::uint64_t seed, std::uint64_t stream) : seed_(seed), stream_(stream) {}

  Philox4x32 bits(std::uint64_t index) const {
    return philox4x32_10(
        {static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32),
         static_cast<std::uint32_t>(stream_), static_cast<std::uint32_t>(stream_ >> 32)},
        {static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32)});
  }
  double uniform(std::uint64_t index) const { return uniform_from_bits(bits(index)[0]); }
  // Standard normal by Box-Muller on two words of one Philox block.
  double normal(std::uint64_t index) const {
    const Philox4x32 r = bits(index);
    const double u1 = uniform_from_bits(r[0]), u2 = uniform_from_bits(r[1]);
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }
  // Uniform integer in [0, n), n > 0 (64-bit multiply-shift; bias below 2^-32).
  std::uint64_t below(std::uint64_t index, std::uint64_t n) const {
    return (std::uint64_t{bits(index)[0]} * n) >> 32;
  }

 private:
  std::uint64_t seed_, stream_;
};

// Sequential convenience over a CounterRng, for initialisation and data generation.
class RngSequence {
 public:
  RngSequence(std::uint64_t seed, std::uint64_t stream) : rng_(seed, stream) {}
  double uniform() { return rng_.uniform(next_++); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double normal() { return rng_.normal(next_++); }
  std::uint64_t below(std::uint64_t n) { return rng_.below(next_++, n); }
  std::uint64_t position() const { return next_; }
  void seek(std::uint64_t position) { next_ = position; }

 private:
  CounterRng rng_;
  std::uint64_t next_ = 0;
};

// Well-known stream ids, so that no two purposes share random numbers.
namespace rng_stream {
constexpr std::uint64_t kInit = 1;
constexpr std::uint64_t kTrainData = 2;
constexpr std::uint64_t kValidData = 3;
constexpr std::uint64_t kSampling = 4;
constexpr std::uint64_t kHeadInit = 5;                    // HeadModel's aggregator
constexpr std::uint64_t kSelectorNoise = 1ull << 32;      // + layer index
constexpr std::uint64_t kHeadSelectorNoise = 1ull << 33;  // HeadModel's aggregator
}  // namespace rng_stream

}  // namespace mtp
