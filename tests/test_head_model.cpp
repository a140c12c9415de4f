// HeadModel: the K perspectives as K streams through the whole model, combined after the
// head (the authors' variant; docs/contract.md §7.1). Gradient checks in double for a
// matrix cell and for RWKV with every choice of per-perspective parameters; the
// invariants that pin the function down (one stream is the K = 1 model; K identical
// streams are too, whatever the head's weights; a state carried over chunks equals one
// call); the parameters' names, shapes and roles.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gradcheck.hpp"
#include "mtp/aggregators/learned.hpp"
#include "mtp/aggregators/mean.hpp"
#include "mtp/cells/gru.hpp"
#include "mtp/cells/rwkv.hpp"
#include "mtp/core/head_model.hpp"
#include "mtp/experiments/dispatch.hpp"
#include "random_model.hpp"

namespace mtp {
namespace {

constexpr index_t kV = 7, kW = 4, kT = 5, kB = 2;

template <template <class> class C, class S>
typename HeadModel<C<S>, LearnedAggregator<S>, typename exp::ModelFamily<C<S>>::Ffn>::Config config(
    int K, PerPerspective pp) {
  using M = HeadModel<C<S>, LearnedAggregator<S>, typename exp::ModelFamily<C<S>>::Ffn>;
  typename M::Config c;
  c.model.vocab = kV;
  c.model.width = kW;
  c.model.layers = 2;
  exp::ModelFamily<C<S>>::configure(c.model);
  c.mixer.cell = C<S>::model_config(kW);
  c.perspectives = K;
  c.per_perspective = pp;
  c.decay_spread = 0.7;
  return c;
}

std::vector<std::int32_t> tokens(std::uint64_t seed) {
  return test::random_tokens(seed, kT, kB, kV);
}
using test::randomise;

template <template <class> class C>
void expect_gradients_match(int K, PerPerspective pp, double noise) {
  using M =
      HeadModel<C<double>, LearnedAggregator<double>, typename exp::ModelFamily<C<double>>::Ffn>;
  auto cfg = config<C, double>(K, pp);
  cfg.aggregator.noise = noise;
  M m(cfg);
  randomise(m, 3);
  test::expect_model_gradients(m, tokens(1), tokens(2), kT, kB,
                               {.training = noise > 0, .seed = 11, .step = 4}, 1e-5,
                               "per-perspective " + std::to_string(int(pp)));
}

TEST(HeadModel, GradientsOfAMatrixCellWithNoisySelector) {
  expect_gradients_match<Gru>(3, PerPerspective::decay, 0.3);
}

TEST(HeadModel, GradientsOfRwkvForEveryPerPerspectiveChoice) {
  for (PerPerspective pp : {PerPerspective::decay, PerPerspective::shift, PerPerspective::both})
    expect_gradients_match<RwkvTimeMix>(3, pp, 0.0);
}

TEST(HeadModel, NamesShapesAndRolesFollowTheK1Model) {
  using M = HeadModel<RwkvTimeMix<double>, LearnedAggregator<double>, RwkvChannelMix<double>>;
  const M shift(config<RwkvTimeMix, double>(3, PerPerspective::shift));
  const auto& p = shift.params();
  auto shape_of = [&](const char* name) { return p.info(p.find(name)).shape.dims(); };
  auto role_of = [&](const char* name) { return p.info(p.find(name)).role; };
  EXPECT_EQ(shape_of("blocks.1.att.time_mix_k"), (std::vector<index_t>{3, kW}));
  EXPECT_EQ(shape_of("blocks.1.ffn.time_mix_r"), (std::vector<index_t>{3, kW}));
  EXPECT_EQ(shape_of("blocks.1.att.decay"), (std::vector<index_t>{1, kW}));  // shared
  EXPECT_EQ(role_of("blocks.1.att.decay"), ParamRole::base);
  EXPECT_EQ(role_of("blocks.1.att.time_mix_v"), ParamRole::perspective);
  EXPECT_EQ(shape_of("head.selector.weight"), (std::vector<index_t>{3, kW}));
  // Added: two more rows of the five mixes per block, and the head's selector.
  EXPECT_EQ(p.size() - shift.stream_size(), 2 * 5 * kW * 2 + 3 * kW + 3);
  const M decay(config<RwkvTimeMix, double>(3, PerPerspective::decay));
  EXPECT_EQ(decay.params().info(decay.params().find("blocks.0.att.decay")).shape.dims(),
            (std::vector<index_t>{3, kW}));
  EXPECT_EQ(decay.params().info(decay.params().find("blocks.0.att.time_mix_k")).shape.dims(),
            (std::vector<index_t>{kW}));
  using G = HeadModel<Gru<double>, LearnedAggregator<double>, Mlp<double>>;
  EXPECT_THROW(G(config<Gru, double>(3, PerPerspective::shift)), Error);  // GRU has no shift
}

// One stream with the mean at the head is the K = 1 model itself; K streams whose rows are
// all equal compute K copies of it, and any weights summing to 1 give it back.
TEST(HeadModel, OneStreamAndIdenticalStreamsAreTheK1Model) {
  using Mixer = Perspectives<RwkvTimeMix<double>, MeanAggregator<double>>;
  using Plain = Model<Mixer, RwkvChannelMix<double>>;
  using M = HeadModel<RwkvTimeMix<double>, LearnedAggregator<double>, RwkvChannelMix<double>>;
  auto cfg = config<RwkvTimeMix, double>(3, PerPerspective::shift);
  typename Mixer::Config mixer = cfg.mixer;
  Plain plain(cfg.model, mixer);
  randomise(plain, 5);
  M heads(cfg);
  heads.init(1);
  for (const ParamInfo& info : plain.params().infos()) {  // every stream row ← the plain model
    const ParamRef r = heads.params().find(info.name);
    View<double> v = heads.params().value(r);
    for (index_t i = 0; i < v.numel(); ++i)
      v[i] = plain.params().values()[info.offset + i % info.shape.numel()];
  }
  const auto tok = tokens(7);
  plain.forward(tok.data(), nullptr, kT, kB, StepContext{});
  heads.forward(tok.data(), nullptr, kT, kB, StepContext{});
  const CView<double> a = plain.logits(), b = heads.logits();
  double worst = 0;
  for (index_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::abs(a.data[i] - b.data[i]));
  EXPECT_LT(worst, 1e-12);
  // The head's weights are not uniform (the selector is random), yet they sum to 1.
  const CView<double> alpha = heads.head_weights();
  EXPECT_GT(std::abs(alpha.data[0] - 1.0 / 3), 1e-3);
  EXPECT_NEAR(alpha.data[0] + alpha.data[1] + alpha.data[2], 1.0, 1e-12);
}

TEST(HeadModel, CarriedStateOverChunksEqualsOneCall) {
  using M = HeadModel<RwkvTimeMix<double>, LearnedAggregator<double>, RwkvChannelMix<double>>;
  M m(config<RwkvTimeMix, double>(2, PerPerspective::both));
  randomise(m, 8);
  const auto state = m.initial_state(kB);
  ASSERT_EQ(state.mixer.size(), 2u * 2u);  // K streams × L layers
  EXPECT_LT(test::chunked_vs_whole(m, tokens(9), kT, kB, 2), 1e-12);
}

}  // namespace
}  // namespace mtp
