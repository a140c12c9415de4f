// Registering cells and aggregators with the command line: every (cell, aggregator) pair
// is compiled here into a registry entry (experiments/registry.hpp) whose functions build
// its model, count its memory and run its layer. A user's program registers its own
// types before mtp::exp::run_main (experiments/app.hpp):
//
//   mtp::exp::register_types<mtp::exp::CellTypes<MyCell>, mtp::exp::AggregatorTypes<MyAgg>>();
//
// pairs each new cell with every aggregator (built-in and new) and each new aggregator
// with every built-in cell. A type that misses part of the contract stops the build with
// one static_assert that names what is missing.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

#include "mtp/experiments/dispatch.hpp"
#include "mtp/experiments/layer_checks.hpp"
#include "mtp/experiments/registry.hpp"
#include "mtp/experiments/trainer.hpp"

namespace mtp::exp {

template <class>
inline constexpr bool kAlwaysFalse = false;

// What mtp-exp needs of a cell beyond the mtp::Cell concept, checked one member at a
// time so that the first missing one is the only error.
template <class C>
constexpr bool check_cell_contract() {
  using S = typename C::Scalar;
  if constexpr (!requires { C::kName; })
    static_assert(kAlwaysFalse<C>, "cell: missing `static constexpr std::string_view kName`");
  else if constexpr (!requires { typename C::Config; })
    static_assert(kAlwaysFalse<C>, "cell: missing `struct Config`");
  else if constexpr (!requires(index_t w) {
                       { C::model_config(w) } -> std::same_as<typename C::Config>;
                     })
    static_assert(kAlwaysFalse<C>,
                  "cell: missing `static Config model_config(index_t width)` (the cell of a "
                  "model of width W: mtp-exp train, eval, generate)");
  else if constexpr (!requires(std::vector<index_t>(*shape_of)(const std::string&)) {
                       { C::infer_config(shape_of) } -> std::same_as<typename C::Config>;
                     })
    static_assert(kAlwaysFalse<C>,
                  "cell: missing `template <class ShapeOf> static Config infer_config(ShapeOf&& "
                  "shape_of)` (its config from a parameter file's shapes: mtp-exp layer)");
  else if constexpr (!std::is_constructible_v<C, const typename C::Config&>)
    static_assert(kAlwaysFalse<C>, "cell: missing constructor `explicit C(const Config&)`");
  else if constexpr (!Cell<C>)
    static_assert(kAlwaysFalse<C>,
                  "cell: does not satisfy mtp::Cell (widths, declare, bind, init and the "
                  "forward/backward parts of core/cell.hpp)");
  else if constexpr (!std::is_same_v<S, float> && !std::is_same_v<S, double>)
    static_assert(kAlwaysFalse<C>, "cell: Scalar must be float or double");
  return true;
}

template <class A>
constexpr bool check_aggregator_contract() {
  if constexpr (!requires { A::kName; })
    static_assert(kAlwaysFalse<A>, "aggregator: missing `static constexpr std::string_view kName`");
  else if constexpr (!requires { typename A::Options; })
    static_assert(kAlwaysFalse<A>, "aggregator: missing `struct Options`");
  else if constexpr (!std::is_constructible_v<A, int, index_t, const typename A::Options&>)
    static_assert(kAlwaysFalse<A>,
                  "aggregator: missing constructor `A(int K, index_t input_width, const "
                  "Options&)`");
  else if constexpr (!Aggregator<A>)
    static_assert(kAlwaysFalse<A>,
                  "aggregator: does not satisfy mtp::Aggregator (declare, bind, init, "
                  "forward, backward of core/cell.hpp)");
  return true;
}

template <class T>
std::string description_of() {
  if constexpr (requires { T::kDescription; })
    return std::string(T::kDescription);
  else
    return "";
}

// Whether a cell has token-shift mixes (RWKV's kTokenShift), which --per-perspective
// shift gives a row per perspective.
template <class C>
constexpr bool has_token_shift() {
  if constexpr (requires { C::kTokenShift; })
    return bool(C::kTokenShift);
  else
    return false;
}

// The registry entry of one pair.
template <template <class> class C, template <class> class A, bool kCuda>
MixerEntry make_mixer_entry() {
  using MixerF = Perspectives<C<float>, A<float>>;
  using MixerD = Perspectives<C<double>, A<double>>;
  MixerEntry e;
  e.cell = std::string(C<float>::kName);
  e.aggregator = std::string(A<float>::kName);
  e.ffn = description_of<typename ModelFamily<C<float>>::Ffn>();
  e.token_shift = has_token_shift<C<float>>();
  e.head_model = WeightingAggregator<A<float>>;
  // --combine layer with token-shift mixes per perspective: K streams through every
  // layer (core/layer_streams.hpp), built only for cells that have the mixes.
  using StreamsF = LayerStreams<C<float>, A<float>>;
  constexpr bool streams = has_token_shift<C<float>>();
  e.model = [](const TrainConfig& c, index_t vocab) -> std::unique_ptr<AnyModel<float>> {
    if constexpr (WeightingAggregator<A<float>>)
      if (c.combine == "head")
        return hold_model([&] { return build_head_model<C<float>, A<float>>(c, vocab); });
    if constexpr (streams)
      if (c.per_perspective != "decay")
        return hold_model([&] { return build_model<StreamsF>(c, vocab); });
    return hold_model([&] { return build_model<MixerF>(c, vocab); });
  };
  e.memory = [](const TrainConfig& c, index_t vocab, double corpus, bool training) {
    if constexpr (streams)
      if (c.combine == "layer" && c.per_perspective != "decay")
        return estimate_memory<StreamsF>(c, mixer_config<StreamsF>(c), vocab, corpus, training);
    if (c.combine == "head") {  // K streams of a K = 1 model
      using StreamMixer = Perspectives<C<float>, MeanAggregator<float>>;
      TrainConfig one = c;
      one.perspectives = 1;
      MemoryEstimate m = estimate_memory<StreamMixer>(one, mixer_config<StreamMixer>(one), vocab,
                                                      corpus, training);
      m.activations *= double(c.perspectives);
      return m;
    }
    return estimate_memory<MixerF>(c, mixer_config<MixerF>(c), vocab, corpus, training);
  };
  // kCuda: the program was built with the CUDA backend and can ask whether this pair has a
  // device program (only registry.cpp, for the built-in pairs).
  constexpr bool cuda = [] {
    if constexpr (kCuda)
      return has_device_layer<MixerF>() && has_device_layer<MixerD>();
    else
      return false;
  }();
  e.layer = [](const LayerArgs& a, const SafeTensors& params, const SafeTensors& input) {
    if (a.dtype == "f64")
      run_layer_as<MixerD, cuda>(a, params, input);
    else
      run_layer_as<MixerF, cuda>(a, params, input);
  };
  e.cuda_layer = cuda;
  e.make_layer_f32 = &hold_layer<MixerF>;
  e.make_layer_f64 = &hold_layer<MixerD>;
  e.checks = &run_layer_checks<MixerF, MixerD>;
  return e;
}

template <template <class> class C, template <class> class... As, bool kCuda>
void register_cell_with(Registry& r, std::bool_constant<kCuda>) {
  if constexpr (check_cell_contract<C<float>>() && check_cell_contract<C<double>>() &&
                (check_aggregator_contract<As<float>>() && ...)) {
    const ComponentSpec cell{std::string(C<float>::kName), description_of<C<float>>()};
    (r.add(make_mixer_entry<C, As, kCuda>(), cell,
           {std::string(As<float>::kName), description_of<As<float>>(),
            aggregator_option_flags<As<float>>()}),
     ...);
  }
}

// Every pair of Cells × Aggregators. kCuda: the pairs have device programs
// (core/cuda; the built-in pairs in a build with the CUDA backend).
template <class Cells, class Aggregators, bool kCuda = false>
void register_pairs(Registry& r);
template <template <class> class... Cs, template <class> class... As, bool kCuda>
void register_pairs_of(Registry& r, CellTypes<Cs...>, AggregatorTypes<As...>,
                       std::bool_constant<kCuda> cuda) {
  if constexpr (sizeof...(As) > 0) (register_cell_with<Cs, As...>(r, cuda), ...);
}
template <class Cells, class Aggregators, bool kCuda>
void register_pairs(Registry& r) {
  register_pairs_of(r, Cells{}, Aggregators{}, std::bool_constant<kCuda>{});
}

template <template <class> class... As1, template <class> class... As2>
AggregatorTypes<As1..., As2...> join(AggregatorTypes<As1...>, AggregatorTypes<As2...>);

// A program's own cells and aggregators: each new cell with every aggregator, built-in
// and new; each new aggregator with every built-in cell.
template <class Cells, class Aggregators>
void register_types(Registry& r = registry()) {
  using AllAggregators = decltype(join(BuiltinAggregators{}, Aggregators{}));
  register_pairs<Cells, AllAggregators>(r);
  register_pairs<BuiltinCells, Aggregators>(r);
}

}  // namespace mtp::exp
