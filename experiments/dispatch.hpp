// The one place where runtime choices (--cell, --aggregator) become template
// arguments. Everything below it is compiled per combination, with no virtual calls.
// Adding a cell: include it, add a branch to with_cell and its name to kCells (and a
// ModelFamily specialisation if its model is not the default one).
#pragma once

#include <array>
#include <string>
#include <string_view>

#include "mtp/aggregators/fixed.hpp"
#include "mtp/aggregators/learned.hpp"
#include "mtp/aggregators/mean.hpp"
#include "mtp/cells/gru.hpp"
#include "mtp/cells/lstm.hpp"
#include "mtp/cells/rwkv.hpp"
#include "mtp/cells/ssm.hpp"
#include "mtp/core/mlp.hpp"
#include "mtp/core/model.hpp"
#include "mtp/core/perspectives.hpp"

namespace mtp::exp {

inline constexpr std::array<std::string_view, 4> kCells = {"gru", "lstm", "rwkv", "ssm"};
inline constexpr std::array<std::string_view, 3> kAggregators = {"mean", "learned", "fixed"};

// Calls f.template operator()<CellT<S>>() for the cell named `cell`.
template <class S, class F>
decltype(auto) with_cell(std::string_view cell, F&& f) {
  if (cell == "gru") return f.template operator()<Gru<S>>();
  if (cell == "lstm") return f.template operator()<Lstm<S>>();
  if (cell == "rwkv") return f.template operator()<RwkvTimeMix<S>>();
  if (cell == "ssm") return f.template operator()<LinearSsm<S>>();
  usage_fail("--cell '{}' is not a known cell", cell);
}

// Calls f.template operator()<Perspectives<Cell, Agg>>() for the named cell/aggregator.
template <class S, class F>
decltype(auto) with_mixer(std::string_view cell, std::string_view aggregator, F&& f) {
  return with_cell<S>(cell, [&]<class C>() -> decltype(auto) {
    if (aggregator == "mean") return f.template operator()<Perspectives<C, MeanAggregator<S>>>();
    if (aggregator == "learned")
      return f.template operator()<Perspectives<C, LearnedAggregator<S>>>();
    if (aggregator == "fixed") return f.template operator()<Perspectives<C, FixedAggregator<S>>>();
    usage_fail("--aggregator '{}' is not one of mean, learned, fixed", aggregator);
  });
}

// The model of docs/contract.md §7 around a cell: a 4× MLP after the mixer, PyTorch-style names
// and init...
template <class Cell>
struct ModelFamily {
  using Ffn = Mlp<typename Cell::Scalar>;
  static void configure(ModelConfig&) {}
};
// ...except RWKV, whose block is RWKV-4's: channel-mix FFN, ln0 on the embeddings,
// the time mix named "att", RWKV-4's init; its state dicts load by name.
template <class S>
struct ModelFamily<RwkvTimeMix<S>> {
  using Ffn = RwkvChannelMix<S>;
  static void configure(ModelConfig& c) {
    c.mixer_name = "att";
    c.ln0 = true;
    c.init = ModelInit::rwkv4;
  }
};
template <class Mixer>
using ModelFor = Model<Mixer, typename ModelFamily<typename Mixer::CellType>::Ffn>;

// "fixed" | "learned" → NoiseMode; anything else is a usage error naming the flag.
inline NoiseMode parse_noise_mode(std::string_view s) {
  if (s == "fixed") return NoiseMode::fixed;
  if (s == "learned") return NoiseMode::learned;
  usage_fail("--noise-mode '{}' is not one of fixed, learned", s);
}

// The aggregator options of a run, whichever aggregator it is.
struct AggregatorSettings {
  double noise = 0;
  std::vector<double> fixed_weights;
  NoiseMode noise_mode = NoiseMode::fixed;
  int top_k = 0;
};

template <class Agg>
typename Agg::Options aggregator_options(const AggregatorSettings& s) {
  typename Agg::Options o{};
  if constexpr (requires { o.noise; }) o.noise = s.noise;
  if constexpr (requires { o.noise_mode; }) o.noise_mode = s.noise_mode;
  if constexpr (requires { o.top_k; }) o.top_k = s.top_k;
  if constexpr (requires { o.weights; }) o.weights = s.fixed_weights;
  return o;
}

}  // namespace mtp::exp
