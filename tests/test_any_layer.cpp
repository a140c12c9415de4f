// AnyLayer (experiments/any_layer.hpp), what the PyTorch bridge drives: a registered pair
// chosen by name whose parameters live in the caller's memory (ParamStore::use_external)
// computes exactly what the same Perspectives computes in a store of its own; a bad spec
// is a usage error with the command line's message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "mtp/core/error.hpp"
#include "mtp/core/param_store.hpp"
#include "mtp/core/rng.hpp"
#include "mtp/experiments/any_layer.hpp"
#include "mtp/experiments/dispatch.hpp"
#include "mtp/experiments/registry.hpp"

namespace mtp::exp {
namespace {

constexpr index_t T = 5, B = 2, W = 4;

std::vector<double> normal(index_t n, std::uint64_t seed) {
  RngSequence rng(seed, 0);
  std::vector<double> v(n);
  for (double& x : v) x = rng.normal();
  return v;
}

TEST(ParamStore, ExternalMemoryIsUsedInPlace) {
  ParamStore<float> store;
  Param<float> a = store.add("a", {2, 3});
  Param<float> b = store.add("b", {4});
  std::vector<float> values(store.size(), 1.5f), grads(store.size(), 7.0f);
  store.use_external(values.data(), grads.data());
  store.bind(a, b);
  EXPECT_EQ(a.value.data, values.data());
  EXPECT_EQ(b.value.data, values.data() + 6);
  EXPECT_EQ(b.grad.data, grads.data() + 6);
  EXPECT_TRUE(store.is_set(a.ref));  // the caller's values count as set
  store.zero_grad();
  for (float g : grads) EXPECT_EQ(g, 0.0f);
  // Moved to other memory, the layers bind again and see it.
  std::vector<float> other(store.size(), 2.0f), other_grads(store.size());
  store.use_external(other.data(), other_grads.data());
  store.bind(a);
  EXPECT_EQ(a.value.data, other.data());
}

// Equal to rounding: a vectorised sum (RWKV's scan, Eigen's products) peels by its
// buffers' alignment, so two layers whose scratch sits at other addresses can differ in
// the last bit.
void expect_near(const std::vector<double>& a, const std::vector<double>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], 1e-13 * std::max(1.0, std::abs(b[i]))) << what << "[" << i << "]";
}

// Every registered built-in pair: AnyLayer on external memory against the concrete layer
// in its own store, same values, same inputs, a carried state, training mode with noise
// where the aggregator takes it: outputs, final state and every gradient equal.
TEST(AnyLayer, EqualsTheConcreteLayerForEveryPair) {
  for (const MixerEntry& e : registry().mixers()) {
    SCOPED_TRACE(e.cell + " / " + e.aggregator);
    const ComponentSpec& agg = registry().aggregator(e.aggregator);
    const bool noisy = std::find(agg.option_flags.begin(), agg.option_flags.end(), "noise") !=
                       agg.option_flags.end();
    const LayerSpec spec{.cell = e.cell,
                         .aggregator = e.aggregator,
                         .input = W,
                         .hidden = W,
                         .perspectives = 3,
                         .noise = noisy ? 0.5 : 0.0};
    const std::unique_ptr<AnyLayer<double>> any = make_layer<double>(spec);
    std::vector<double> values(any->param_count()), grads(any->param_count(), 0.0);
    any->init(values.data(), 42);

    with_mixer<double>(e.cell, e.aggregator, [&]<class Mixer>() {
      typename Mixer::Config cfg;
      cfg.cell = layer_cell_config<typename Mixer::CellType>(W, W);
      cfg.perspectives = 3;
      cfg.aggregator =
          aggregator_options<typename Mixer::AggregatorType>({spec.noise, {}, NoiseMode::fixed, 0});
      Mixer layer(cfg);
      ParamStore<double> store;
      attach_params(layer, store);
      ASSERT_EQ(store.size(), any->param_count());
      RngSequence rng(42, rng_stream::kInit);
      layer.init(rng);
      // Equal up to rounding: the same draws, though the two may be compiled at different
      // optimisation levels (MTP_TESTS_O1), which contract a·b + c into FMAs differently.
      expect_near(std::vector<double>(store.values(), store.values() + store.size()), values,
                  "init");

      const index_t O = layer.output_width(), Sw = layer.state_width();
      const std::vector<double> x = normal(T * B * W, 1), dy = normal(T * B * O, 2);
      // A state from a history (RWKV's must be one a sequence can leave).
      std::vector<double> s_any(B * 3 * Sw, 0.0), y_warm(T * B * O);
      any->forward(values.data(), CView<double>(x.data(), {T, B, W}),
                   View<double>(y_warm.data(), {T, B, O}), StepContext{},
                   View<double>(s_any.data(), {B, 3, Sw}));
      std::vector<double> s_own = s_any;

      const StepContext ctx{.training = true, .seed = 9, .step = 3};
      std::vector<double> y_any(T * B * O), y_own(T * B * O);
      any->forward(values.data(), CView<double>(x.data(), {T, B, W}),
                   View<double>(y_any.data(), {T, B, O}), ctx,
                   View<double>(s_any.data(), {B, 3, Sw}));
      layer.forward(CView<double>(x.data(), {T, B, W}), View<double>(y_own.data(), {T, B, O}), ctx,
                    View<double>(s_own.data(), {B, 3, Sw}));
      expect_near(y_any, y_own, "y");
      expect_near(s_any, s_own, "sT");

      const std::vector<double> dsT = normal(B * 3 * Sw, 3);
      std::vector<double> dx_any(T * B * W), dx_own(T * B * W), ds0_any(B * 3 * Sw),
          ds0_own(B * 3 * Sw);
      any->backward(values.data(), grads.data(), CView<double>(x.data(), {T, B, W}),
                    CView<double>(dy.data(), {T, B, O}), View<double>(dx_any.data(), {T, B, W}),
                    CView<double>(dsT.data(), {B, 3, Sw}),
                    View<double>(ds0_any.data(), {B, 3, Sw}));
      layer.backward(CView<double>(x.data(), {T, B, W}), CView<double>(dy.data(), {T, B, O}),
                     View<double>(dx_own.data(), {T, B, W}),
                     {.dsT = CView<double>(dsT.data(), {B, 3, Sw}),
                      .ds0 = View<double>(ds0_own.data(), {B, 3, Sw})});
      expect_near(dx_any, dx_own, "dx");
      expect_near(ds0_any, ds0_own, "ds0");
      expect_near(grads, std::vector<double>(store.grads(), store.grads() + store.size()),
                  "parameter gradients");
    });
  }
}

TEST(AnyLayer, BadSpecsAreUsageErrorsWithTheCommandLinesMessages) {
  const auto message = [](const LayerSpec& spec) {
    try {
      make_layer<float>(spec);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message({.cell = "gru", .input = 4, .hidden = 4, .perspectives = 0}),
            "--perspectives must be in [1, 64], got 0");
  EXPECT_EQ(message({.cell = "gru", .aggregator = "mean", .input = 4, .hidden = 4, .noise = 1}),
            "--noise has no effect with --aggregator mean; it applies to --aggregator learned");
  EXPECT_EQ(message({.cell = "rwkv", .input = 4, .hidden = 6}),
            "cell 'rwkv' has one width: hidden_size must equal input_size (4), got 6");
  EXPECT_EQ(message({.cell = "gru", .input = 0, .hidden = 4}),
            "input_size must be in [1, 65536], got 0");
  EXPECT_EQ(message({.cell = "nope", .input = 4, .hidden = 4}),
            "--cell 'nope' is not a known cell (known: gru, lstm, rwkv, ssm)");
}

}  // namespace
}  // namespace mtp::exp
