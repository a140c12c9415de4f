// The whole model (embedding → blocks → norm → head → cross-entropy) against central
// differences in double, and short float training runs: the loss falls, and the same
// seed reproduces the same parameters bit for bit.
#include <gtest/gtest.h>

#include "gradcheck.hpp"
#include "mtp/experiments/trainer.hpp"

namespace mtp {
namespace {

template <class Agg>
void check_model(int K, bool mlp, typename Agg::Options opts) {
  using Mixer = Perspectives<Gru<double>, Agg>;
  constexpr index_t V = 7, W = 5, T = 4, B = 2;
  typename Mixer::Config mc;
  mc.cell = Gru<double>::model_config(W);
  mc.perspectives = K;
  mc.aggregator = opts;
  Model<Mixer> model(ModelConfig{V, W, 2, mlp}, mc);
  model.init(3);
  std::vector<std::int32_t> tokens(T * B), targets(T * B);
  RngSequence rng(5, 6);
  for (index_t i = 0; i < T * B; ++i) {
    tokens[i] = std::int32_t(rng.below(V));
    targets[i] = i % 3 == 1 ? kIgnoreTarget : std::int32_t(rng.below(V));
  }
  const StepContext ctx{true, 11, 2};
  auto loss = [&] { return model.forward(tokens.data(), targets.data(), T, B, ctx).mean_loss(); };
  ParamStore<double>& p = model.params();
  loss();
  p.zero_grad();
  model.backward();
  for (const ParamInfo& info : p.infos()) {
    std::vector<double> analytic(p.grads() + info.offset,
                                 p.grads() + info.offset + info.shape.numel());
    // ε = 1e-5: the loss is O(1) while some gradients (the selector bias) are ~1e-4,
    // so a smaller step drowns them in rounding.
    EXPECT_LT(
        test::gradcheck(p.values() + info.offset, analytic.data(), info.shape.numel(), loss, 1e-5),
        1e-6)
        << info.name;
  }
}

TEST(Model, GradientsLearnedK3WithNoise) {
  check_model<LearnedAggregator<double>>(3, true, {0.3});
}
TEST(Model, GradientsMeanK1) {
  check_model<MeanAggregator<double>>(1, true, {});
}
TEST(Model, GradientsFixedK2WithoutMlp) {
  check_model<FixedAggregator<double>>(2, false, {});
}

TEST(Model, ParameterNamesFollowTheContract) {
  using Mixer = Perspectives<Gru<float>, LearnedAggregator<float>>;
  typename Mixer::Config mc;
  mc.cell = Gru<float>::model_config(8);
  mc.perspectives = 3;
  Model<Mixer> model(ModelConfig{10, 8, 2, true}, mc);
  const ParamStore<float>& p = model.params();
  for (const char* name :
       {"emb.weight", "blocks.0.ln1.weight", "blocks.0.mixer.weight_ih", "blocks.0.mixer.weight_hh",
        "blocks.0.mixer.bias_ih", "blocks.0.mixer.bias_hh", "blocks.1.mixer.decay",
        "blocks.1.mixer.selector.weight", "blocks.1.mixer.selector.bias", "blocks.1.ln2.bias",
        "blocks.1.ffn.fc.weight", "blocks.1.ffn.proj.bias", "ln_out.weight", "head.weight"})
    EXPECT_GE(p.find(name).index, 0) << name;
  EXPECT_EQ(p.info(p.find("blocks.1.mixer.decay")).shape, (Shape{3, 8}));
  // Perspective parameters: per layer K·H decays + K·I + K selector.
  EXPECT_EQ(p.count(ParamRole::perspective), 2 * (3 * 8 + 3 * 8 + 3));
}

TEST(Model, DecaysStartSpreadAroundTheBase) {
  using Mixer = Perspectives<Gru<double>, MeanAggregator<double>>;
  typename Mixer::Config mc;
  mc.cell = {3, 4};
  mc.perspectives = 3;
  mc.decay_spread = 0.5;
  Mixer layer(mc);
  ParamStore<double> store;
  attach_params(layer, store);
  RngSequence rng(1, 1);
  layer.init(rng);
  CView<double> d = store.value(store.find("decay"));
  for (index_t c = 0; c < 4; ++c) {
    EXPECT_DOUBLE_EQ(d[0 * 4 + c], -0.5);  // GRU base decay is 0
    EXPECT_DOUBLE_EQ(d[1 * 4 + c], 0.0);
    EXPECT_DOUBLE_EQ(d[2 * 4 + c], 0.5);
  }
}

exp::TrainConfig tiny_config() {
  exp::TrainConfig c;
  c.perspectives = 2;
  c.width = 16;
  c.layers = 1;
  c.steps = 40;
  c.batch = 8;
  c.seq_len = 16;
  c.vocab = 16;
  c.pairs = 2;
  c.noise = 0.2;
  c.val_batches = 1;
  return c;
}

// Trains in-process (the same loop as mtp-exp, without files) and returns parameters.
std::vector<float> train_params(const exp::TrainConfig& c, double* first_loss, double* last_loss) {
  using Mixer = Perspectives<Gru<float>, LearnedAggregator<float>>;
  const auto task = exp::make_task(c);
  auto model = exp::build_model<Mixer>(c, task->vocab());
  model.init(c.seed);
  AdamW<float> opt(model.params(), {});
  for (long long s = 0; s < c.steps; ++s) {
    const exp::Batch b = task->train_batch(s, c.batch);
    model.params().zero_grad();
    const double loss =
        model.forward(b.tokens.data(), b.targets.data(), b.T, b.B, {true, c.seed, std::uint64_t(s)})
            .mean_loss();
    if (s == 0) *first_loss = loss;
    *last_loss = loss;
    model.backward();
    clip_grad_global_norm(model.params(), grad_global_norm(model.params()), 1.0);
    opt.step(model.params(), 3e-3, {});
  }
  return {model.params().values(), model.params().values() + model.params().size()};
}

TEST(Training, LossFallsAndRunsAreDeterministic) {
  exp::TrainConfig c = tiny_config();
  double first = 0, last = 0, first2 = 0, last2 = 0;
  const std::vector<float> a = train_params(c, &first, &last);
  const std::vector<float> b = train_params(c, &first2, &last2);
  EXPECT_LT(last, 0.8 * first) << "the loss should fall within 40 steps";
  EXPECT_EQ(a, b) << "same seed, same threads: identical parameters";
  EXPECT_EQ(first, first2);
  c.seed = 1;
  const std::vector<float> other = train_params(c, &first2, &last2);
  EXPECT_NE(a, other) << "another seed: other initialisation, data and noise";
}

}  // namespace
}  // namespace mtp
