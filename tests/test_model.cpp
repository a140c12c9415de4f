// The whole model (embedding → blocks → norm → head → cross-entropy) against central
// differences in double, and short float training runs: the loss falls, and the same
// seed reproduces the same parameters bit for bit.
#include <gtest/gtest.h>

#include "gradcheck.hpp"
#include "mtp/experiments/dispatch.hpp"
#include "mtp/experiments/trainer.hpp"

namespace mtp {
namespace {

struct ModelCase {
  const char* cell;
  const char* aggregator;
  int K;
  bool ffn;
};

// The whole model of a cell family (RWKV: channel mix, ln0, RWKV-4 init) in double,
// every parameter against central differences. Parameters are perturbed after init so
// that none sits at an initial zero.
void check_model(const ModelCase& mc) {
  constexpr index_t V = 7, W = 5, T = 4, B = 2;
  exp::TrainConfig c;
  c.cell = mc.cell;
  c.aggregator = mc.aggregator;
  c.perspectives = mc.K;
  c.noise = 0.3;
  c.width = W;
  c.layers = 2;
  c.ffn = mc.ffn;
  exp::with_mixer<double>(mc.cell, mc.aggregator, [&]<class Mixer>() {
    auto model = exp::build_model<Mixer>(c, V);
    model.init(3);
    ParamStore<double>& p = model.params();
    RngSequence noise(4, 5);
    for (index_t i = 0; i < p.size(); ++i) p.values()[i] += 0.3 * noise.normal();
    std::vector<std::int32_t> tokens(T * B), targets(T * B);
    RngSequence rng(5, 6);
    for (index_t i = 0; i < T * B; ++i) {
      tokens[i] = std::int32_t(rng.below(V));
      targets[i] = i % 3 == 1 ? kIgnoreTarget : std::int32_t(rng.below(V));
    }
    const StepContext ctx{.training = true, .seed = 11, .step = 2};
    auto loss = [&] { return model.forward(tokens.data(), targets.data(), T, B, ctx).mean_loss(); };
    loss();
    p.zero_grad();
    model.backward();
    for (const ParamInfo& info : p.infos()) {
      std::vector<double> analytic(p.grads() + info.offset,
                                   p.grads() + info.offset + info.shape.numel());
      EXPECT_LT(
          test::gradcheck(p.values() + info.offset, analytic.data(), info.shape.numel(), loss),
          1e-6)
          << info.name;
    }
  });
}

class ModelGradients : public testing::TestWithParam<ModelCase> {};
TEST_P(ModelGradients, MatchCentralDifferences) {
  check_model(GetParam());
}
INSTANTIATE_TEST_SUITE_P(
    AllCells, ModelGradients,
    testing::Values(ModelCase{"gru", "learned", 3, true}, ModelCase{"gru", "mean", 1, true},
                    ModelCase{"gru", "fixed", 2, false}, ModelCase{"lstm", "learned", 3, true},
                    ModelCase{"rwkv", "learned", 3, true}, ModelCase{"rwkv", "mean", 1, false},
                    ModelCase{"ssm", "learned", 3, true}),
    [](const testing::TestParamInfo<ModelCase>& i) {
      return std::string(i.param.cell) + "_" + i.param.aggregator + "_K" +
             std::to_string(i.param.K) + (i.param.ffn ? "" : "_noffn");
    });

// Streaming through the whole model: chunks with the state carried (mixer states and,
// for RWKV, the channel mix's last input) give the logits of one run; reset_stream
// forgets one stream's history only.
class ModelStreaming : public testing::TestWithParam<const char*> {};
TEST_P(ModelStreaming, ChunkedRunEqualsWholeRun) {
  constexpr index_t V = 7, T = 11, B = 2;
  exp::TrainConfig c;
  c.cell = GetParam();
  c.width = 6;
  c.layers = 2;
  exp::with_mixer<double>(c.cell, "learned", [&]<class Mixer>() {
    auto model = exp::build_model<Mixer>(c, V);
    model.init(3);
    RngSequence noise(4, 5);
    for (index_t i = 0; i < model.params().size(); ++i)
      model.params().values()[i] += 0.3 * noise.normal();
    std::vector<std::int32_t> tokens(T * B);
    for (auto& t : tokens) t = std::int32_t(noise.below(V));
    model.forward(tokens.data(), nullptr, T, B, StepContext{});
    const std::vector<double> whole(model.logits().begin(), model.logits().end());
    auto state = model.initial_state(B);
    index_t done = 0;
    for (index_t len : {index_t(1), index_t(4), index_t(6)}) {
      model.forward(tokens.data() + done * B, nullptr, len, B, StepContext{}, &state);
      for (index_t i = 0; i < len * B * V; ++i)
        ASSERT_NEAR(model.logits()[i], whole[done * B * V + i], 1e-12) << "t=" << done;
      done += len;
    }
    // Forget stream 1: it restarts, stream 0 continues.
    state.reset_stream(1);
    model.forward(tokens.data(), nullptr, 2, B, StepContext{}, &state);
    std::vector<double> restarted(model.logits().begin(), model.logits().end());
    for (index_t t = 0; t < 2; ++t)
      for (index_t v = 0; v < V; ++v)
        EXPECT_NEAR(restarted[(t * B + 1) * V + v], whole[(t * B + 1) * V + v], 1e-12);
    EXPECT_GT(std::abs(restarted[0] - whole[0]), 1e-9) << "stream 0 still has its history";
  });
}
INSTANTIATE_TEST_SUITE_P(AllCells, ModelStreaming, testing::Values("gru", "lstm", "rwkv", "ssm"));

TEST(Model, RwkvFamilyUsesRwkv4Names) {
  exp::TrainConfig c;
  c.cell = "rwkv";
  c.width = 8;
  c.layers = 2;
  using Mixer = Perspectives<RwkvTimeMix<float>, LearnedAggregator<float>>;
  auto model = exp::build_model<Mixer>(c, 10);
  const ParamStore<float>& p = model.params();
  for (const char* name :
       {"emb.weight", "blocks.0.ln0.weight", "blocks.0.ln1.bias", "blocks.1.att.time_mix_k",
        "blocks.1.att.time_first", "blocks.1.att.key.weight", "blocks.1.att.output.weight",
        "blocks.1.att.decay", "blocks.1.ffn.time_mix_r", "blocks.1.ffn.key.weight",
        "blocks.1.ffn.value.weight", "ln_out.weight", "head.weight"})
    EXPECT_GE(p.find(name).index, 0) << name;
  EXPECT_LT(p.find("blocks.1.ln0.weight").index, 0) << "ln0 is on the first block only";
  EXPECT_EQ(p.info(p.find("blocks.0.ffn.key.weight")).shape, (Shape{32, 8}));
}

TEST(Model, ParameterNamesFollowTheContract) {
  using Mixer = Perspectives<Gru<float>, LearnedAggregator<float>>;
  typename Mixer::Config mc;
  mc.cell = Gru<float>::model_config(8);
  mc.perspectives = 3;
  Model<Mixer> model(ModelConfig{.vocab = 10, .width = 8, .layers = 2, .ffn = true}, mc);
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
  mc.cell = {.input = 3, .hidden = 4};
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
    const double loss = model
                            .forward(b.tokens.data(), b.targets.data(), b.T, b.B,
                                     {.training = true, .seed = c.seed, .step = std::uint64_t(s)})
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
