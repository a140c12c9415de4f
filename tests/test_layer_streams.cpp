// LayerStreams: K perspectives in every layer, each a stream through a K = 1 layer with
// its own row of the token-shift mixes (and of the decay with `both`), combined by the
// aggregator (docs/contract.md §7.2). Gradient checks in double through a whole RWKV-4
// model with a noisy selector; the invariants that pin the function down (K identical
// streams are the K = 1 model whatever the weights; with equal mixes, `both` is mtp's
// Perspectives; a state carried over chunks equals one call); names, shapes, roles and
// the parameters added.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gradcheck.hpp"
#include "mtp/aggregators/learned.hpp"
#include "mtp/aggregators/mean.hpp"
#include "mtp/cells/gru.hpp"
#include "mtp/cells/rwkv.hpp"
#include "mtp/core/layer_streams.hpp"
#include "mtp/core/model.hpp"
#include "mtp/experiments/dispatch.hpp"
#include "random_model.hpp"

namespace mtp {
namespace {

constexpr index_t kV = 7, kW = 4, kT = 5, kB = 2;

using Streams = LayerStreams<RwkvTimeMix<double>, LearnedAggregator<double>>;
using StreamsModel = Model<Streams, RwkvChannelMix<double>>;

ModelConfig model_config() {
  ModelConfig c{.vocab = kV, .width = kW, .layers = 2};
  exp::ModelFamily<RwkvTimeMix<double>>::configure(c);
  return c;
}

Streams::Config streams_config(int K, PerPerspective pp, double noise = 0) {
  Streams::Config c;
  c.cell = RwkvTimeMix<double>::model_config(kW);
  c.perspectives = K;
  c.per_perspective = pp;
  c.decay_spread = 0.7;
  c.aggregator.noise = noise;
  return c;
}

std::vector<std::int32_t> tokens(std::uint64_t seed) {
  return test::random_tokens(seed, kT, kB, kV);
}
using test::randomise;

// mtp's own layer over the same cell (contract §3): Perspectives with aggregator A.
template <class A>
using PlainModel = Model<Perspectives<RwkvTimeMix<double>, A>, RwkvChannelMix<double>>;
template <class A>
typename PlainModel<A>::MixerConfig plain_config(int K, double decay_spread = 1.0) {
  typename PlainModel<A>::MixerConfig c;
  c.cell = RwkvTimeMix<double>::model_config(kW);
  c.perspectives = K;
  c.decay_spread = decay_spread;
  return c;
}

// Every tensor of `to` that `from` has under the same name gets `from`'s values, tiled
// over its rows (one row of a mix into K); returns how many of `to`'s tensors `from` lacks.
template <class From, class To>
int tile_same_named(From& from, To& to) {
  int lacking = 0;
  for (const ParamInfo& info : to.params().infos()) {
    const ParamRef r = from.params().find(info.name);
    if (r.index < 0) {
      ++lacking;
      continue;
    }
    const CView<double> src = std::as_const(from.params()).value(r);
    View<double> dst = to.params().value(to.params().find(info.name));
    for (index_t i = 0; i < dst.numel(); ++i) dst[i] = src.data[i % src.numel()];
  }
  return lacking;
}

double worst_difference(CView<double> a, CView<double> b) {
  double worst = 0;
  for (index_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::abs(a.data[i] - b.data[i]));
  return worst;
}

TEST(LayerStreams, GradientsWithANoisySelector) {
  for (PerPerspective pp : {PerPerspective::shift, PerPerspective::both}) {
    StreamsModel m(model_config(), streams_config(3, pp, 0.3));
    randomise(m, 3);
    // A step of 3e-5: the slowest decays' gradients (w = −e^3) are so small that the
    // default step's rounding error exceeds its truncation error there.
    test::expect_model_gradients(m, tokens(1), tokens(2), kT, kB,
                                 {.training = true, .seed = 11, .step = 4}, 3e-5,
                                 "per-perspective " + std::to_string(int(pp)));
  }
}

TEST(LayerStreams, NamesShapesRolesAndParametersAdded) {
  const StreamsModel shift(model_config(), streams_config(3, PerPerspective::shift));
  const auto& p = shift.params();
  auto shape_of = [&](const char* name) { return p.info(p.find(name)).shape.dims(); };
  auto role_of = [&](const char* name) { return p.info(p.find(name)).role; };
  EXPECT_EQ(shape_of("blocks.1.att.time_mix_r"), (std::vector<index_t>{3, kW}));
  EXPECT_EQ(role_of("blocks.1.att.time_mix_r"), ParamRole::perspective);
  EXPECT_EQ(shape_of("blocks.1.att.decay"), (std::vector<index_t>{1, kW}));  // shared
  EXPECT_EQ(role_of("blocks.1.att.decay"), ParamRole::base);
  EXPECT_EQ(shape_of("blocks.1.att.key.weight"), (std::vector<index_t>{kW, kW}));
  EXPECT_EQ(shape_of("blocks.1.ffn.time_mix_k"), (std::vector<index_t>{kW}));  // one FFN
  EXPECT_EQ(shape_of("blocks.1.att.selector.weight"), (std::vector<index_t>{3, kW}));
  // The K = 1 model is the stream; added: two more rows of three mixes and a selector
  // (K,W) + (K) per block.
  const PlainModel<MeanAggregator<double>> plain(model_config(),
                                                 plain_config<MeanAggregator<double>>(1));
  EXPECT_EQ(shift.stream_size(), plain.params().size());
  EXPECT_EQ(p.size() - shift.stream_size(), 2 * (2 * 3 * kW + 3 * kW + 3));
  const StreamsModel both(model_config(), streams_config(3, PerPerspective::both));
  EXPECT_EQ(both.params().info(both.params().find("blocks.0.att.decay")).shape.dims(),
            (std::vector<index_t>{3, kW}));
  EXPECT_EQ(both.params().size() - both.stream_size(), 2 * (2 * 4 * kW + 3 * kW + 3));
  // A cell without token-shift mixes has nothing to give rows of.
  using GruStreams = LayerStreams<Gru<double>, LearnedAggregator<double>>;
  GruStreams::Config gc;
  gc.cell = Gru<double>::model_config(kW);
  gc.perspectives = 3;
  GruStreams gru(gc);
  ParamStore<double> store;
  EXPECT_THROW(gru.declare(store, "att."), Error);
}

// K streams whose rows all equal the K = 1 model's compute K copies of it, and the
// selector's weights (not uniform) sum to 1: the K = 1 model's logits.
TEST(LayerStreams, IdenticalStreamsAreTheK1Model) {
  PlainModel<MeanAggregator<double>> plain(model_config(), plain_config<MeanAggregator<double>>(1));
  randomise(plain, 5);
  StreamsModel streams(model_config(), streams_config(3, PerPerspective::both));
  randomise(streams, 1);  // the selectors stay random: the only tensors the K = 1 model lacks
  int selectors = 0;
  for (const ParamInfo& info : streams.params().infos())
    selectors += info.name.find(".selector.") != std::string::npos;
  EXPECT_EQ(tile_same_named(plain, streams), selectors);
  const auto tok = tokens(7);
  plain.forward(tok.data(), nullptr, kT, kB, StepContext{});
  streams.forward(tok.data(), nullptr, kT, kB, StepContext{});
  EXPECT_LT(worst_difference(plain.logits(), streams.logits()), 1e-12);
}

// With every stream's mixes equal, `both` differs from mtp's Perspectives only in where
// the views are combined (after RWKV's output projection instead of before), which a
// weighting aggregator cannot tell apart: the same logits for the same tensors.
TEST(LayerStreams, BothWithEqualMixesIsPerspectives) {
  PlainModel<LearnedAggregator<double>> plain(model_config(),
                                              plain_config<LearnedAggregator<double>>(3));
  randomise(plain, 6);
  StreamsModel streams(model_config(), streams_config(3, PerPerspective::both));
  streams.init(2);
  ASSERT_EQ(tile_same_named(plain, streams), 0);
  const auto tok = tokens(8);
  plain.forward(tok.data(), nullptr, kT, kB, StepContext{});
  streams.forward(tok.data(), nullptr, kT, kB, StepContext{});
  EXPECT_LT(worst_difference(plain.logits(), streams.logits()), 1e-12);
}

// Initialised from one seed, `both` draws what Perspectives draws: the K = 1 layer, the
// decay rows spread the same way, then the selector; its mixes are the K = 1 mixes in
// every row.
TEST(LayerStreams, InitDrawsAsPerspectives) {
  PlainModel<LearnedAggregator<double>> plain(model_config(),
                                              plain_config<LearnedAggregator<double>>(3, 0.7));
  plain.init(4);
  StreamsModel streams(model_config(), streams_config(3, PerPerspective::both));
  streams.init(4);
  for (const ParamInfo& info : streams.params().infos()) {
    const CView<double> want = std::as_const(plain.params()).value(plain.params().find(info.name));
    const CView<double> got =
        std::as_const(streams.params()).value(streams.params().find(info.name));
    for (index_t i = 0; i < got.numel(); ++i)
      ASSERT_EQ(got.data[i], want.data[i % want.numel()]) << info.name << "[" << i << "]";
  }
  EXPECT_THROW(Streams(streams_config(3, PerPerspective::decay)), Error);
}

TEST(LayerStreams, CarriedStateOverChunksEqualsOneCall) {
  StreamsModel m(model_config(), streams_config(2, PerPerspective::shift));
  randomise(m, 8);
  const auto state = m.initial_state(kB);
  ASSERT_EQ(state.mixer[0].shape().dims(), (std::vector<index_t>{kB, 2, 4 * kW}));
  EXPECT_LT(test::chunked_vs_whole(m, tokens(9), kT, kB, 2), 1e-12);
}

}  // namespace
}  // namespace mtp
