// What the generated layer checks (test_layer_checks.cpp: gradients, float path,
// chunking, mixed scan for every registered pair) do not cover: the diagonal scans'
// threading, and the selector's top-k, noise and K = 1 behaviour.
#include <gtest/gtest.h>
#include <omp.h>

#include "gradcheck.hpp"
#include "mtp/experiments/dispatch.hpp"
#include "mtp/experiments/layer_checks.hpp"
#include "test_layer.hpp"

namespace mtp {
namespace {

constexpr index_t kT = 5, kB = 3;

// The selector tests use a GRU with I = 4, H = 6.
template <class Mixer>
typename Mixer::Config layer_config(int K, const exp::AggregatorSettings& agg) {
  typename Mixer::Config cfg;
  cfg.cell = {.input = 4, .hidden = 6};
  cfg.perspectives = K;
  cfg.decay_spread = 0.7;
  cfg.aggregator = exp::aggregator_options<typename Mixer::AggregatorType>(agg);
  return cfg;
}

// A layer with its own parameters: the cell's init, then a random perturbation so that
// no tensor is left at an initial zero (RWKV zero-initialises three matrices) and the
// gates sit away from ½.
using test::TestLayer;

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
    EXPECT_LT(exp::checks::relative_error(two.y.data(), one.y.data(), one.y.numel()), 1e-13) << "y";
    EXPECT_LT(exp::checks::relative_error(two.dx.data(), one.dx.data(), one.dx.numel()), 1e-13)
        << "dx";
    EXPECT_LT(
        exp::checks::relative_error(two.grads.data(), one.grads.data(), index_t(one.grads.size())),
        1e-13)
        << "grads";
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

// At K = 1 the selector has nothing to select: α ≡ 1 and its gradients are exactly 0.
TEST(Selector, GradientsAreExactlyZeroAtOnePerspective) {
  using Mixer = Perspectives<Gru<double>, LearnedAggregator<double>>;
  TestLayer<Mixer> t(layer_config<Mixer>(1, {0.5, {}, NoiseMode::fixed, 0}));
  const Shape xs{kT, kB, 4}, ys{kT, kB, 6};
  std::vector<double> x(xs.numel()), dy(ys.numel(), 1.0);
  test::fill_normal(x, 23);
  Tensor<double> y(ys), dx(xs);
  t.layer.forward(CView<double>(x.data(), xs), y.view(),
                  StepContext{.training = true, .seed = 3, .step = 1});
  t.store.zero_grad();
  t.layer.backward(CView<double>(x.data(), xs), CView<double>(dy.data(), ys), dx.view());
  for (const ParamInfo& p : t.store.infos()) {
    if (p.name.rfind("selector.", 0) != 0) continue;
    for (index_t i = 0; i < p.shape.numel(); ++i) {
      EXPECT_EQ(t.store.grads()[p.offset + i], 0.0) << p.name;
    }
  }
}

}  // namespace
}  // namespace mtp
