// Gradient checks of the wrapped GRU layer: every parameter and the input, for
// K = 1, 2, 3 and each aggregator, with and without selector noise and carried state.
#include <gtest/gtest.h>

#include "gradcheck.hpp"
#include "mtp/aggregators/fixed.hpp"
#include "mtp/aggregators/learned.hpp"
#include "mtp/aggregators/mean.hpp"
#include "mtp/cells/gru.hpp"
#include "mtp/core/perspectives.hpp"

namespace mtp {
namespace {

struct Case {
  int K;
  const char* aggregator;
  double noise;
  bool training;
  bool carried_state;
};

std::string case_name(const testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  std::string n = std::string(c.aggregator) + "_K" + std::to_string(c.K);
  if (c.noise > 0) n += "_noise";
  if (c.carried_state) n += "_state";
  return n;
}

template <class Mixer>
void check_layer(const Case& c, typename Mixer::AggregatorType::Options opts) {
  constexpr index_t T = 5, B = 3, I = 4, H = 6;
  typename Mixer::Config cfg;
  cfg.cell = {I, H};
  cfg.perspectives = c.K;
  cfg.decay_spread = 0.7;
  cfg.aggregator = opts;
  Mixer layer(cfg);
  ParamStore<double> store;
  attach_params(layer, store);
  RngSequence rng(1, 2);
  layer.init(rng);
  // Scale parameters up so gates are away from 1/2 and the check is not trivial.
  for (index_t i = 0; i < store.size(); ++i) store.values()[i] *= 2.0;

  std::vector<double> x(T * B * I), R(T * B * H), s0(B * c.K * H);
  test::fill_normal(x, 3);
  test::fill_normal(R, 4);
  test::fill_normal(s0, 5, 0.5);
  const Shape xs{T, B, I}, ys{T, B, H}, ss{B, index_t(c.K), H};
  const StepContext ctx{c.training, 42, 7};
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
    const double err =
        test::gradcheck(store.values() + p.offset, analytic.data(), p.shape.numel(), loss);
    EXPECT_LT(err, 1e-7) << p.name;
    if (p.name.rfind("selector.", 0) == 0 && c.K == 1) {
      for (double g : analytic) EXPECT_EQ(g, 0.0) << p.name << " must be exactly 0 at K = 1";
    }
  }
}

class GruPerspectives : public testing::TestWithParam<Case> {};

TEST_P(GruPerspectives, GradientsMatchCentralDifferences) {
  const Case& c = GetParam();
  const std::string agg = c.aggregator;
  if (agg == "mean") check_layer<Perspectives<Gru<double>, MeanAggregator<double>>>(c, {});
  if (agg == "fixed") {
    FixedAggregator<double>::Options o;
    if (c.K == 3) o.weights = {0.2, 0.5, 0.3};
    check_layer<Perspectives<Gru<double>, FixedAggregator<double>>>(c, o);
  }
  if (agg == "learned")
    check_layer<Perspectives<Gru<double>, LearnedAggregator<double>>>(c, {c.noise});
}

INSTANTIATE_TEST_SUITE_P(
    AllAggregators, GruPerspectives,
    testing::Values(Case{1, "mean", 0, false, false}, Case{2, "mean", 0, false, false},
                    Case{3, "mean", 0, false, false}, Case{1, "fixed", 0, false, false},
                    Case{2, "fixed", 0, false, false}, Case{3, "fixed", 0, false, false},
                    Case{1, "learned", 0, false, false}, Case{2, "learned", 0, false, false},
                    Case{3, "learned", 0, false, false}, Case{3, "learned", 0.5, true, false},
                    Case{3, "learned", 0, false, true}, Case{1, "mean", 0, false, true}),
    case_name);

}  // namespace
}  // namespace mtp
