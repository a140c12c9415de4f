// The layer tests' setup: a layer with its parameters attached, initialised by its
// cell's recipe and then perturbed by 0.3·N(0,1), so that no tensor stays at zero and
// the gates move away from ½. Streams RngSequence(seed, 2) and (seed, 3).
#pragma once

#include <cstdint>

#include "mtp/core/param_store.hpp"
#include "mtp/core/rng.hpp"

namespace mtp::test {

template <class Mixer>
struct TestLayer {
  Mixer layer;
  ParamStore<typename Mixer::Scalar> store;
  explicit TestLayer(const typename Mixer::Config& cfg, std::uint64_t seed = 1) : layer(cfg) {
    attach_params(layer, store);
    RngSequence rng(seed, 2);
    layer.init(rng);
    RngSequence noise(seed, 3);
    for (index_t i = 0; i < store.size(); ++i)
      store.values()[i] += typename Mixer::Scalar(0.3 * noise.normal());
  }
};

}  // namespace mtp::test
