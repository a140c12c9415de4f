// Random inputs and parameters for tests of whole models (the authors' variant's
// gradient checks and invariants).
#pragma once

#include <cstdint>
#include <vector>

#include "mtp/core/rng.hpp"
#include "mtp/core/tensor.hpp"

namespace mtp::test {

// (T,B) token ids drawn from [0, V).
inline std::vector<std::int32_t> random_tokens(std::uint64_t seed, index_t T, index_t B,
                                               index_t V) {
  RngSequence rng(seed, 5);
  std::vector<std::int32_t> t(size_t(T * B));
  for (auto& x : t) x = std::int32_t(rng.below(std::uint64_t(V)));
  return t;
}

// Every parameter perturbed away from its init, so that no gradient vanishes by symmetry
// (RWKV's zero-initialised matrices, equal token-shift rows).
template <class M>
void randomise(M& m, std::uint64_t seed) {
  m.init(seed);
  auto& p = m.params();
  RngSequence rng(seed, 9);
  for (index_t i = 0; i < p.size(); ++i) p.values()[i] += 0.3 * rng.normal();
}

}  // namespace mtp::test
