// Using the library wrongly is an error with one clear message, never a wrong answer or a
// crash (issue 14): a backward that does not belong to the last forward, a layer used
// before bind or init, parameters bound to another store; and every layer of one store
// draws its own selector noise unless told otherwise.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mtp/aggregators/learned.hpp"
#include "mtp/aggregators/mean.hpp"
#include "mtp/cells/gru.hpp"
#include "mtp/cells/ssm.hpp"
#include "mtp/core/error.hpp"
#include "mtp/core/model.hpp"
#include "mtp/core/perspectives.hpp"

namespace mtp {
namespace {

using Layer = Perspectives<Gru<double>, LearnedAggregator<double>>;
constexpr index_t T = 4, B = 2, I = 3, H = 5;

Layer::Config config(int K = 2) {
  Layer::Config cfg;
  cfg.cell = {.input = I, .hidden = H};
  cfg.perspectives = K;
  cfg.aggregator.noise = 1.0;
  return cfg;
}

// Runs f and returns the message of the mtp::Error it throws ("" if none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

Tensor<double> random_input(std::uint64_t seed) {
  Tensor<double> x({T, B, I});
  RngSequence rng(seed, 0);
  for (index_t i = 0; i < x.numel(); ++i) x[i] = rng.normal();
  return x;
}

TEST(Misuse, BackwardForAnEarlierForwardIsRefusedEvenInTheSameBuffer) {
  Layer layer(config());
  ParamStore<double> store;
  attach_params(layer, store);
  RngSequence rng(1, 2);
  layer.init(rng);
  Tensor<double> x = random_input(1), y({T, B, H}), dy({T, B, H}), dx({T, B, I});
  for (index_t i = 0; i < dy.numel(); ++i) dy[i] = 1.0;
  const Tensor<double> first = x;
  layer.forward(x.view(), y.view(), {});
  x = random_input(2);  // the caller refills its one buffer with the next batch
  layer.forward(x.view(), y.view(), {});
  // Backward for the first batch: the saved activations are the second's.
  const std::string msg = error_of([&] { layer.backward(first.view(), dy.view(), dx.view()); });
  EXPECT_NE(msg.find("differs from the last forward's x"), std::string::npos) << msg;
  // The buffer holding the first batch's values again is still not the last forward's.
  x = first;
  EXPECT_NE(error_of([&] { layer.backward(x.view(), dy.view(), dx.view()); }), "");
  // Backward for the last forward is fine, and may be repeated (gradients accumulate).
  x = random_input(2);
  EXPECT_EQ(error_of([&] { layer.backward(x.view(), dy.view(), dx.view()); }), "");
  EXPECT_EQ(error_of([&] { layer.backward(x.view(), dy.view(), dx.view()); }), "");
}

TEST(Misuse, LayerUsedBeforeBindOrInitSaysSo) {
  Tensor<double> x = random_input(1), y({T, B, H});
  {
    Layer layer(config());
    const std::string msg = error_of([&] { layer.forward(x.view(), y.view(), {}); });
    EXPECT_NE(msg.find("before bind(store)"), std::string::npos) << msg;
    RngSequence rng(1, 2);
    EXPECT_NE(error_of([&] { layer.init(rng); }).find("before bind(store)"), std::string::npos);
  }
  {
    Layer layer(config());
    ParamStore<double> store;
    attach_params(layer, store);
    const std::string msg = error_of([&] { layer.forward(x.view(), y.view(), {}); });
    EXPECT_NE(msg.find("before its parameters were set"), std::string::npos) << msg;
    // Values written directly count once marked.
    store.mark_all_set();
    EXPECT_EQ(error_of([&] { layer.forward(x.view(), y.view(), {}); }), "");
  }
  {
    Model<Layer> model({.vocab = 5, .width = H, .layers = 1}, [] {
      Layer::Config c = config();
      c.cell = Gru<double>::model_config(H);
      return c;
    }());
    const std::vector<std::int32_t> tokens(T * B, 1);
    const std::string msg = error_of([&] { model.forward(tokens.data(), nullptr, T, B, {}); });
    EXPECT_NE(msg.find("model used before its parameters were set"), std::string::npos) << msg;
    model.init(3);
    EXPECT_EQ(error_of([&] { model.forward(tokens.data(), nullptr, T, B, {}); }), "");
  }
}

TEST(Misuse, ParametersBoundToAnotherStoreAreRefused) {
  Layer layer(config());
  ParamStore<double> declared, other;
  layer.declare(declared, "");
  declared.finalize();
  Layer twin(config());
  twin.declare(other, "");
  other.finalize();
  const std::string msg = error_of([&] { layer.bind(other); });
  EXPECT_NE(msg.find("not declared in"), std::string::npos) << msg;
}

// Two layers with the same weights and input, declared under different prefixes of one
// store: in training their selector noise differs, unless both are given one stream.
TEST(Misuse, EachLayerOfAStoreDrawsItsOwnNoise) {
  auto outputs = [](std::optional<std::uint64_t> stream) {
    Layer::Config cfg = config(3);
    cfg.noise_stream = stream;
    Layer a(cfg), b(cfg);
    ParamStore<double> store;
    a.declare(store, "blocks.0.");
    b.declare(store, "blocks.1.");
    store.finalize();
    a.bind(store);
    b.bind(store);
    RngSequence ra(1, 2), rb(1, 2);
    a.init(ra);
    b.init(rb);
    const Tensor<double> x = random_input(4);
    Tensor<double> ya({T, B, H}), yb({T, B, H});
    const StepContext train{.training = true, .seed = 9, .step = 1};
    a.forward(x.view(), ya.view(), train);
    b.forward(x.view(), yb.view(), train);
    double diff = 0;
    for (index_t i = 0; i < ya.numel(); ++i) diff = std::max(diff, std::abs(ya[i] - yb[i]));
    return std::pair{diff, a.noise_stream() != b.noise_stream()};
  };
  const auto [own_diff, own_streams] = outputs(std::nullopt);
  EXPECT_TRUE(own_streams);
  EXPECT_GT(own_diff, 1e-6);
  const auto [shared_diff, distinct] = outputs(std::uint64_t(77));
  EXPECT_FALSE(distinct);
  EXPECT_EQ(shared_diff, 0.0);
}

}  // namespace
}  // namespace mtp
