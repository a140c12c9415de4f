// The cells and aggregators built into mtp-exp, as type lists: the one place where they
// are registered (experiments/registry.cpp compiles every pair into the registry that
// the commands look names up in). Adding a cell in the tree: its header in cells/ and
// its name in BuiltinCells; an aggregator likewise. A user's own program adds its types
// with register_mixers (experiments/register.hpp) instead.
//
// with_cell / with_mixer turn a built-in name into template arguments at compile time,
// for code that needs the concrete types (tests, benchmarks).
#pragma once

#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mtp/aggregators/fixed.hpp"
#include "mtp/aggregators/learned.hpp"
#include "mtp/aggregators/mean.hpp"
#include "mtp/cells/gru.hpp"
#include "mtp/cells/lstm.hpp"
#include "mtp/cells/rwkv.hpp"
#include "mtp/cells/ssm.hpp"
#include "mtp/core/error.hpp"
#include "mtp/core/mlp.hpp"
#include "mtp/core/model.hpp"
#include "mtp/core/perspectives.hpp"

namespace mtp::exp {

// Lists of cell and aggregator templates (each over its scalar type).
template <template <class> class... Cells>
struct CellTypes {};
template <template <class> class... Aggregators>
struct AggregatorTypes {};

using BuiltinCells = CellTypes<Gru, Lstm, RwkvTimeMix, LinearSsm>;
using BuiltinAggregators = AggregatorTypes<MeanAggregator, LearnedAggregator, FixedAggregator>;

// Calls f.template operator()<T<S>>() for the T of the list whose kName is `name`; a
// usage error naming --`flag` otherwise. Cells and aggregators alike.
template <class S, template <class> class T, template <class> class... Rest, class F>
decltype(auto) with_named_in(std::string_view name, std::string_view flag, F&& f) {
  if (T<S>::kName == name) return f.template operator()<T<S>>();
  if constexpr (sizeof...(Rest) > 0)
    return with_named_in<S, Rest...>(name, flag, std::forward<F>(f));
  else
    usage_fail("--{} '{}' is not a built-in {}", flag, name, flag);
}
template <class S, template <class> class... Cs, class F>
decltype(auto) with_cell_of(CellTypes<Cs...>, std::string_view cell, F&& f) {
  return with_named_in<S, Cs...>(cell, "cell", std::forward<F>(f));
}
template <class S, template <class> class... As, class F>
decltype(auto) with_aggregator_of(AggregatorTypes<As...>, std::string_view aggregator, F&& f) {
  return with_named_in<S, As...>(aggregator, "aggregator", std::forward<F>(f));
}

// Calls f.template operator()<CellT<S>>() for the built-in cell named `cell`.
template <class S, class F>
decltype(auto) with_cell(std::string_view cell, F&& f) {
  return with_cell_of<S>(BuiltinCells{}, cell, std::forward<F>(f));
}

// Calls f.template operator()<Perspectives<Cell, Agg>>() for the named built-ins.
template <class S, class F>
decltype(auto) with_mixer(std::string_view cell, std::string_view aggregator, F&& f) {
  return with_cell<S>(cell, [&]<class C>() -> decltype(auto) {
    return with_aggregator_of<S>(
        BuiltinAggregators{}, aggregator,
        [&]<class A>() -> decltype(auto) { return f.template operator()<Perspectives<C, A>>(); });
  });
}

// The model of docs/contract.md §7 around a cell: by default a 4× MLP after the mixer,
// PyTorch-style names and init; a cell changes that with its optional model-level hooks
// (`using ModelFfn = ...`, `static void configure_model(ModelConfig&)`), as RWKV-4 does.
template <class Cell>
struct ModelFamily {
  static auto ffn_type() {
    if constexpr (requires { typename Cell::ModelFfn; })
      return std::type_identity<typename Cell::ModelFfn>{};
    else
      return std::type_identity<Mlp<typename Cell::Scalar>>{};
  }
  using Ffn = typename decltype(ffn_type())::type;
  static void configure(ModelConfig& c) {
    if constexpr (requires { Cell::configure_model(c); }) Cell::configure_model(c);
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

// An aggregator's Options from the selector flags, by member name: noise (--noise),
// noise_mode (--noise-mode), top_k (--top-k), weights (--fixed-weights). The one place
// that maps members to flags: aggregator_option_flags lists the same.
template <class Agg>
typename Agg::Options aggregator_options(const AggregatorSettings& s) {
  typename Agg::Options o{};
  if constexpr (requires { o.noise; }) o.noise = s.noise;
  if constexpr (requires { o.noise_mode; }) o.noise_mode = s.noise_mode;
  if constexpr (requires { o.top_k; }) o.top_k = s.top_k;
  if constexpr (requires { o.weights; }) o.weights = s.fixed_weights;
  return o;
}
// The selector flags an aggregator takes: those its Options have a member for. Given to
// another aggregator they would do nothing, and are refused.
template <class Agg>
std::vector<std::string> aggregator_option_flags() {
  typename Agg::Options o{};
  std::vector<std::string> flags;
  if constexpr (requires { o.noise; }) flags.push_back("noise");
  if constexpr (requires { o.noise_mode; }) flags.push_back("noise-mode");
  if constexpr (requires { o.top_k; }) flags.push_back("top-k");
  if constexpr (requires { o.weights; }) flags.push_back("fixed-weights");
  return flags;
}

}  // namespace mtp::exp
