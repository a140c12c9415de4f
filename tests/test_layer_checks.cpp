// The generated layer checks (experiments/layer_checks.hpp) for every pair in the
// registry: gradients against central differences for K = 1, 2, 3, carried state, long
// sequences and each aggregator's check options; float against double; chunked against
// whole; mixed scan against separate. A new cell or aggregator registered in
// experiments/dispatch.hpp gets them with no edit here. And the checks can fail: a cell
// with a wrong decay gradient is caught.
#include <gtest/gtest.h>

#include "mtp/experiments/layer_checks.hpp"
#include "mtp/experiments/registry.hpp"

namespace mtp {
namespace {

class RegisteredPair : public testing::TestWithParam<const exp::MixerEntry*> {};

TEST_P(RegisteredPair, PassesEveryLayerCheck) {
  const std::vector<exp::CheckResult> results = GetParam()->checks();
  EXPECT_GT(results.size(), 40u);
  for (const exp::CheckResult& c : results)
    EXPECT_TRUE(c.passed()) << c.name << ": error " << c.error << " > " << c.tolerance;
}

std::vector<const exp::MixerEntry*> registered_pairs() {
  std::vector<const exp::MixerEntry*> pairs;
  for (const exp::MixerEntry& e : exp::registry().mixers()) pairs.push_back(&e);
  return pairs;
}

INSTANTIATE_TEST_SUITE_P(Registry, RegisteredPair, testing::ValuesIn(registered_pairs()),
                         [](const testing::TestParamInfo<const exp::MixerEntry*>& info) {
                           return info.param->cell + "_" + info.param->aggregator;
                         });

// A GRU whose decay gradient is off by 1e-3 in one channel.
template <class S>
class WrongDecayGradientGru : public Gru<S> {
 public:
  using Gru<S>::Gru;
  void recur_backward(const RecurIn<S>& in, CView<S> Yk, const RecurGrad<S>& grad) {
    Gru<S>::recur_backward(in, Yk, grad);
    grad.ddecay[0] += S(1e-3);
  }
};

TEST(LayerChecks, CatchAWrongGradient) {
  const std::vector<exp::CheckResult> results =
      exp::run_layer_checks<Perspectives<WrongDecayGradientGru<float>, MeanAggregator<float>>,
                            Perspectives<WrongDecayGradientGru<double>, MeanAggregator<double>>>();
  int decay_failures = 0, other_failures = 0;
  for (const exp::CheckResult& c : results) {
    const bool decay = c.name.find("layer.decay") != std::string::npos;
    if (!c.passed()) ++(decay ? decay_failures : other_failures);
  }
  EXPECT_GE(decay_failures, 3) << "the decay's gradient checks fail";
  EXPECT_EQ(other_failures, 0) << "and nothing else does";
}

}  // namespace
}  // namespace mtp
