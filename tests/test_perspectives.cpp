// Every cell wrapped in K perspectives, through the generic Perspectives<> wrapper:
//  - gradients of the input and every parameter against central differences in double,
//    for K = 1, 2, 3 × mean, learned, fixed, plus selector noise and carried state;
//  - the float path (oneDNN GEMMs, vectorised exp) against the double path (Eigen, libm);
//  - running a sequence in chunks with the state carried equals running it whole;
//  - the diagonal cells' mixed scan equals their recurrence and aggregator run apart.
#include <gtest/gtest.h>
#include <omp.h>

#include "gradcheck.hpp"
#include "mtp/experiments/dispatch.hpp"
#include "test_layer.hpp"

namespace mtp {
namespace {

constexpr index_t kT = 5, kB = 3;

// Small widths per cell: I = 4 and H or N = 6; RWKV has C = I = 5.
template <class C>
typename C::Config small_config() {
  if constexpr (C::kName == std::string_view("rwkv"))
    return {.channels = 5};
  else if constexpr (C::kName == std::string_view("ssm"))
    return {.input = 4, .state = 6};
  else
    return {.input = 4, .hidden = 6};
}

template <class Mixer>
typename Mixer::Config layer_config(int K, const exp::AggregatorSettings& agg) {
  typename Mixer::Config cfg;
  cfg.cell = small_config<typename Mixer::CellType>();
  cfg.perspectives = K;
  cfg.decay_spread = 0.7;
  cfg.aggregator = exp::aggregator_options<typename Mixer::AggregatorType>(agg);
  return cfg;
}

// A layer with its own parameters: the cell's init, then a random perturbation so that
// no tensor is left at an initial zero (RWKV zero-initialises three matrices) and the
// gates sit away from ½.
using test::TestLayer;

// A random initial state (B,K,Sw). For RWKV the (a, b, p) sums must describe a real
// history: b > 0.
template <class Mixer, class S>
std::vector<S> random_state(const Mixer& layer, index_t B, int K, std::uint64_t seed) {
  const index_t Sw = layer.state_width();
  std::vector<S> s(B * K * Sw);
  test::fill_normal(s, seed, 0.5);
  if constexpr (Mixer::CellType::kName == std::string_view("rwkv")) {
    const index_t C = Sw / 4;
    for (index_t row = 0; row < B * K; ++row)
      for (index_t c = 0; c < C; ++c) s[row * Sw + C + c] = std::abs(s[row * Sw + C + c]) + S(0.5);
  }
  return s;
}

struct Case {
  const char* cell;
  int K;
  const char* aggregator;
  double noise;
  bool carried_state;
  NoiseMode noise_mode = NoiseMode::fixed;
  int top_k = 0;
  index_t T = kT;  // > 16 spans several of the scans' state checkpoints
};

std::string case_name(const testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  std::string n = std::string(c.cell) + "_" + c.aggregator + "_K" + std::to_string(c.K);
  if (c.noise > 0) n += "_noise";
  if (c.noise_mode == NoiseMode::learned) n += "_learnednoise";
  if (c.top_k > 0) n += "_top" + std::to_string(c.top_k);
  if (c.carried_state) n += "_state";
  if (c.T != kT) n += "_T" + std::to_string(c.T);
  return n;
}

template <class Mixer>
void check_gradients(const Case& c) {
  exp::AggregatorSettings agg{c.noise, {}, c.noise_mode, c.top_k};
  if (std::string(c.aggregator) == "fixed" && c.K == 3) agg.fixed_weights = {0.2, 0.5, 0.3};
  TestLayer<Mixer> t(layer_config<Mixer>(c.K, agg));
  Mixer& layer = t.layer;
  ParamStore<double>& store = t.store;
  const index_t I = layer.input_width(), O = layer.output_width();
  std::vector<double> x(c.T * kB * I), R(c.T * kB * O);
  test::fill_normal(x, 3);
  test::fill_normal(R, 4);
  const std::vector<double> s0 = random_state<Mixer, double>(layer, kB, c.K, 5);
  const Shape xs{c.T, kB, I}, ys{c.T, kB, O}, ss{kB, index_t(c.K), layer.state_width()};
  const StepContext ctx{
      .training = c.noise > 0 || c.noise_mode == NoiseMode::learned, .seed = 42, .step = 7};
  Tensor<double> y(ys), state(ss);
  auto loss = [&] {
    if (c.carried_state) std::copy(s0.begin(), s0.end(), state.data());
    layer.forward(CView<double>(x.data(), xs), y.view(), ctx,
                  c.carried_state ? state.view() : View<double>{});
    return test::dot(y.data(), R.data(), y.numel());
  };

  loss();
  store.zero_grad();
  Tensor<double> dx(xs);
  layer.backward(CView<double>(x.data(), xs), CView<double>(R.data(), ys), dx.view());

  EXPECT_LT(test::gradcheck(x.data(), dx.data(), dx.numel(), loss), 1e-7) << "input x";
  for (const ParamInfo& p : store.infos()) {
    std::vector<double> analytic(store.grads() + p.offset,
                                 store.grads() + p.offset + p.shape.numel());
    EXPECT_LT(test::gradcheck(store.values() + p.offset, analytic.data(), p.shape.numel(), loss),
              1e-7)
        << p.name;
    if (p.name.rfind("selector.", 0) == 0 && c.K == 1) {
      for (double g : analytic) EXPECT_EQ(g, 0.0) << p.name << " must be exactly 0 at K = 1";
    }
  }
}

class AllCells : public testing::TestWithParam<Case> {};

TEST_P(AllCells, GradientsMatchCentralDifferences) {
  const Case& c = GetParam();
  exp::with_mixer<double>(c.cell, c.aggregator, [&]<class Mixer>() { check_gradients<Mixer>(c); });
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (const char* cell : {"gru", "lstm", "rwkv", "ssm"}) {
    for (const char* agg : {"mean", "learned", "fixed"})
      for (int K = 1; K <= 3; ++K) cases.push_back({cell, K, agg, 0.0, false});
    cases.push_back({cell, 3, "learned", 0.5, false});
    cases.push_back({cell, 3, "learned", 0.0, false, NoiseMode::learned});
    cases.push_back({cell, 3, "learned", 0.3, false, NoiseMode::fixed, 2});
    cases.push_back({cell, 3, "learned", 0.0, true});
    cases.push_back({cell, 1, "mean", 0.0, true});
    cases.push_back({cell, 3, "learned", 0.0, true, NoiseMode::fixed, 0, 37});
    cases.push_back({cell, 2, "mean", 0.0, false, NoiseMode::fixed, 0, 32});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Perspectives, AllCells, testing::ValuesIn(all_cases()), case_name);

// Norm-wise relative error max|a − b| / max|b|.
template <class A, class B>
double rel_error(const A& a, const B& b, index_t n) {
  double diff = 0, scale = 1e-30;
  for (index_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return diff / scale;
}

// The float path (oneDNN matmul, vectorised exp/sigmoid/tanh) against the double
// reference path (Eigen, libm) on the same parameters, forward and backward, at a
// realistic width.
class FloatPath : public testing::TestWithParam<const char*> {};

TEST_P(FloatPath, MatchesDoubleReference) {
  exp::with_cell<double>(GetParam(), [&]<class CellD>() {
    using Md = Perspectives<CellD, LearnedAggregator<double>>;
    exp::with_cell<float>(GetParam(), [&]<class CellF>() {
      using Mf = Perspectives<CellF, LearnedAggregator<float>>;
      constexpr index_t T = 24, B = 4, W = 32;
      typename Md::Config cd;
      cd.cell = CellD::model_config(W);
      cd.perspectives = 3;
      typename Mf::Config cf;
      cf.cell = CellF::model_config(W);
      cf.perspectives = 3;
      TestLayer<Md> d(cd);
      Mf f_layer(cf);
      ParamStore<float> f_store;
      attach_params(f_layer, f_store);
      for (index_t i = 0; i < d.store.size(); ++i) f_store.values()[i] = float(d.store.values()[i]);
      f_store.mark_all_set();
      std::vector<double> x(T * B * W), dy(T * B * W);
      test::fill_normal(x, 8);
      test::fill_normal(dy, 9);
      const std::vector<float> xf(x.begin(), x.end()), dyf(dy.begin(), dy.end());
      const Shape s{T, B, W};
      Tensor<double> yd(s), dxd(s);
      Tensor<float> yf(s), dxf(s);
      d.layer.forward(CView<double>(x.data(), s), yd.view(), StepContext{});
      f_layer.forward(CView<float>(xf.data(), s), yf.view(), StepContext{});
      d.layer.backward(CView<double>(x.data(), s), CView<double>(dy.data(), s), dxd.view());
      f_layer.backward(CView<float>(xf.data(), s), CView<float>(dyf.data(), s), dxf.view());
      EXPECT_LT(rel_error(yf, yd, yd.numel()), 1e-5) << "y";
      EXPECT_LT(rel_error(dxf, dxd, dxd.numel()), 1e-4) << "dx";
      for (const ParamInfo& p : d.store.infos())
        EXPECT_LT(
            rel_error(f_store.grads() + p.offset, d.store.grads() + p.offset, p.shape.numel()),
            1e-4)
            << p.name;
    });
  });
}

INSTANTIATE_TEST_SUITE_P(AllCells, FloatPath, testing::Values("gru", "lstm", "rwkv", "ssm"));

// Streaming: a sequence run in chunks, the state carried from one to the next (starting
// from zeros, which every cell reads as "no history"), gives the outputs of one run.
class CarriedState : public testing::TestWithParam<const char*> {};

TEST_P(CarriedState, ChunkedRunEqualsWholeRun) {
  exp::with_mixer<double>(GetParam(), "learned", [&]<class Mixer>() {
    TestLayer<Mixer> t(layer_config<Mixer>(3, {}));
    Mixer& layer = t.layer;
    constexpr index_t T = 11, B = 2;
    const index_t I = layer.input_width(), O = layer.output_width();
    std::vector<double> x(T * B * I);
    test::fill_normal(x, 12);
    Tensor<double> whole({T, B, O});
    layer.forward(CView<double>(x.data(), {T, B, I}), whole.view(), StepContext{});
    Tensor<double> state({B, 3, layer.state_width()});
    state.zero();
    index_t done = 0;
    for (index_t len : {index_t(1), index_t(4), index_t(6)}) {
      Tensor<double> part({len, B, O});
      layer.forward(CView<double>(x.data() + done * B * I, {len, B, I}), part.view(), StepContext{},
                    state.view());
      for (index_t i = 0; i < part.numel(); ++i)
        ASSERT_NEAR(part[i], whole[done * B * O + i], 1e-12) << "chunk at t=" << done;
      done += len;
    }
    EXPECT_EQ(done, T);
  });
}

INSTANTIATE_TEST_SUITE_P(AllCells, CarriedState, testing::Values("gru", "lstm", "rwkv", "ssm"));

// The diagonal cells' mixed scan (aggregation inside the recurrence, no (T,B,K,Dy)
// tensors) against recur + aggregator run separately: outputs, final state, dx and every
// gradient, for each aggregator, with selector noise in training and a carried state.
struct MixedCase {
  const char* cell;
  const char* aggregator;
  int K;
};

class MixedScan : public testing::TestWithParam<MixedCase> {};

TEST_P(MixedScan, EqualsSeparateAggregation) {
  const MixedCase& c = GetParam();
  exp::with_mixer<double>(c.cell, c.aggregator, [&]<class Mixer>() {
    const exp::AggregatorSettings agg{0.4, {}, NoiseMode::fixed, 0};
    typename Mixer::Config mixed_cfg = layer_config<Mixer>(c.K, agg), separate_cfg = mixed_cfg;
    separate_cfg.mixed_scan = false;
    TestLayer<Mixer> mixed(mixed_cfg), separate(separate_cfg);
    constexpr index_t T = 37, B = 2;  // three state checkpoints, the last chunk partial
    const index_t I = mixed.layer.input_width(), O = mixed.layer.output_width();
    std::vector<double> x(T * B * I), dy(T * B * O);
    test::fill_normal(x, 21);
    test::fill_normal(dy, 22);
    const std::vector<double> s0 = random_state<Mixer, double>(mixed.layer, B, c.K, 23);
    const Shape xs{T, B, I}, ys{T, B, O}, ss{B, index_t(c.K), mixed.layer.state_width()};
    const StepContext ctx{.training = true, .seed = 5, .step = 11};
    struct Run {
      Tensor<double> y, state, dx;
    };
    const auto run = [&](TestLayer<Mixer>& t) {
      Run r{Tensor<double>(ys), Tensor<double>(ss), Tensor<double>(xs)};
      std::copy(s0.begin(), s0.end(), r.state.data());
      t.layer.forward(CView<double>(x.data(), xs), r.y.view(), ctx, r.state.view());
      t.store.zero_grad();
      t.layer.backward(CView<double>(x.data(), xs), CView<double>(dy.data(), ys), r.dx.view());
      return r;
    };
    const Run m = run(mixed), s = run(separate);
    EXPECT_TRUE(mixed.layer.used_mixed_scan());
    EXPECT_FALSE(separate.layer.used_mixed_scan());
    EXPECT_EQ(mixed.layer.perspective_outputs().numel(), 0);
    EXPECT_EQ(separate.layer.perspective_outputs().numel(),
              T * B * c.K * separate.layer.cell().recur_width());
    EXPECT_LT(rel_error(m.y, s.y, m.y.numel()), 1e-13) << "y";
    EXPECT_LT(rel_error(m.state, s.state, m.state.numel()), 1e-13) << "final state";
    EXPECT_LT(rel_error(m.dx, s.dx, m.dx.numel()), 1e-12) << "dx";
    for (const ParamInfo& p : mixed.store.infos())
      EXPECT_LT(rel_error(mixed.store.grads() + p.offset, separate.store.grads() + p.offset,
                          p.shape.numel()),
                1e-12)
          << p.name;
  });
}

std::vector<MixedCase> mixed_cases() {
  std::vector<MixedCase> cases;
  for (const char* cell : {"rwkv", "ssm"})
    for (const char* agg : {"mean", "learned", "fixed"})
      for (int K : {1, 3}) cases.push_back({cell, agg, K});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(DiagonalCells, MixedScan, testing::ValuesIn(mixed_cases()),
                         [](const testing::TestParamInfo<MixedCase>& info) {
                           return std::string(info.param.cell) + "_" + info.param.aggregator +
                                  "_K" + std::to_string(info.param.K);
                         });

// The diagonal scans split the B sequences over threads above a size threshold: one
// thread and two give the same layer (each sequence is one thread's; the reductions over
// b run after the loop in a fixed order). The shape is above both cells' thresholds, and
// above that of RWKV's token-shift backward, which sums dμ over slabs of rows.
class ThreadedScan : public testing::TestWithParam<const char*> {};

TEST_P(ThreadedScan, OneAndTwoThreadsAgree) {
  exp::with_mixer<double>(GetParam(), "learned", [&]<class Mixer>() {
    constexpr index_t T = 20, B = 32, W = 136;  // T·B·W > 2^16
    typename Mixer::Config cfg;
    cfg.cell = Mixer::CellType::model_config(W);
    cfg.perspectives = 3;
    TestLayer<Mixer> t(cfg);
    const Shape s{T, B, W};
    std::vector<double> x(s.numel()), dy(s.numel());
    test::fill_normal(x, 31);
    test::fill_normal(dy, 32);
    struct Run {
      Tensor<double> y, dx;
      std::vector<double> grads;
    };
    const auto run = [&](int threads) {
      omp_set_num_threads(threads);
      Run r{Tensor<double>(s), Tensor<double>(s), {}};
      t.layer.forward(CView<double>(x.data(), s), r.y.view(), StepContext{});
      t.store.zero_grad();
      t.layer.backward(CView<double>(x.data(), s), CView<double>(dy.data(), s), r.dx.view());
      r.grads.assign(t.store.grads(), t.store.grads() + t.store.size());
      return r;
    };
    const int all = omp_get_max_threads();
    const Run one = run(1), two = run(2);
    omp_set_num_threads(all);
    EXPECT_TRUE(t.layer.used_mixed_scan());
    EXPECT_LT(rel_error(two.y, one.y, one.y.numel()), 1e-13) << "y";
    EXPECT_LT(rel_error(two.dx, one.dx, one.dx.numel()), 1e-13) << "dx";
    EXPECT_LT(rel_error(two.grads, one.grads, index_t(one.grads.size())), 1e-13) << "grads";
  });
}

INSTANTIATE_TEST_SUITE_P(DiagonalCells, ThreadedScan, testing::Values("rwkv", "ssm"));

// Top-k: each row of α has exactly k non-zeros, on the k largest logits, summing to 1.
TEST(Selector, TopKKeepsTheLargestLogitsAndRenormalises) {
  using Mixer = Perspectives<Gru<double>, LearnedAggregator<double>>;
  constexpr int K = 4, k = 2;
  TestLayer<Mixer> t(layer_config<Mixer>(K, {0.0, {}, NoiseMode::fixed, k}));
  const index_t I = 4, H = 6;
  std::vector<double> x(kT * kB * I);
  test::fill_normal(x, 21);
  Tensor<double> y({kT, kB, H});
  t.layer.forward(CView<double>(x.data(), {kT, kB, I}), y.view(), StepContext{});
  CView<double> alpha = t.layer.aggregator().selection();
  CView<double> W = t.store.value(t.store.find("selector.weight"));
  CView<double> b = t.store.value(t.store.find("selector.bias"));
  for (index_t r = 0; r < kT * kB; ++r) {
    std::vector<std::pair<double, int>> logits;
    for (int j = 0; j < K; ++j) {
      double l = b[j];
      for (index_t i = 0; i < I; ++i) l += W[j * I + i] * x[r * I + i];
      logits.push_back({l, j});
    }
    std::sort(logits.rbegin(), logits.rend());
    double sum = 0;
    for (int j = 0; j < K; ++j) sum += alpha[r * K + j];
    EXPECT_NEAR(sum, 1.0, 1e-12);
    for (int rank = 0; rank < K; ++rank)
      if (rank < k)
        EXPECT_GT(alpha[r * K + logits[rank].second], 0.0);
      else
        EXPECT_EQ(alpha[r * K + logits[rank].second], 0.0);
  }
}

// Learned noise perturbs the logits while training only, and its weights get gradients.
TEST(Selector, LearnedNoiseActsInTrainingOnly) {
  using Mixer = Perspectives<Gru<double>, LearnedAggregator<double>>;
  TestLayer<Mixer> t(layer_config<Mixer>(3, {0.0, {}, NoiseMode::learned, 0}));
  const index_t I = 4, H = 6;
  std::vector<double> x(kT * kB * I), dy(kT * kB * H, 1.0);
  test::fill_normal(x, 22);
  const Shape xs{kT, kB, I}, ys{kT, kB, H};
  Tensor<double> eval1(ys), eval2(ys), train(ys), dx(xs);
  t.layer.forward(CView<double>(x.data(), xs), eval1.view(),
                  StepContext{.training = false, .seed = 1, .step = 0});
  t.layer.forward(CView<double>(x.data(), xs), eval2.view(),
                  StepContext{.training = false, .seed = 2, .step = 5});
  t.layer.forward(CView<double>(x.data(), xs), train.view(),
                  StepContext{.training = true, .seed = 1, .step = 0});
  double eval_diff = 0, train_diff = 0;
  for (index_t i = 0; i < eval1.numel(); ++i) {
    eval_diff = std::max(eval_diff, std::abs(eval1[i] - eval2[i]));
    train_diff = std::max(train_diff, std::abs(eval1[i] - train[i]));
  }
  EXPECT_EQ(eval_diff, 0.0) << "evaluation is noise-free, whatever the seed and step";
  EXPECT_GT(train_diff, 1e-3) << "training draws noise";
  t.store.zero_grad();
  t.layer.backward(CView<double>(x.data(), xs), CView<double>(dy.data(), ys), dx.view());
  CView<double> g = t.store.value(t.store.find("selector.noise.weight"));
  View<double> gw = t.store.grad(t.store.find("selector.noise.weight"));
  double norm = 0;
  for (double v : gw) norm += v * v;
  EXPECT_GT(norm, 0.0) << "the noise weights learn";
  EXPECT_EQ(g.numel(), 3 * I);
}

}  // namespace
}  // namespace mtp
