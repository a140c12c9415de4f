// Uses mtp as an installed package: a user-defined cell in K perspectives, checked
// against central differences, then trained inside mtp's Model with AdamW.
#include <mtp/aggregators/fixed.hpp>
#include <mtp/aggregators/learned.hpp>
#include <mtp/aggregators/mean.hpp>
#include <mtp/core/model.hpp>
#include <mtp/core/optim.hpp>
#include <mtp/core/perspectives.hpp>

#include <cstdio>
#include <vector>

#include "minimal_gated_cell.hpp"

static_assert(mtp::Cell<user::MinimalGatedCell<float>>);
static_assert(mtp::Cell<user::MinimalGatedCell<double>>);

namespace {

using mtp::index_t;

// Max over every parameter and the input of |analytic − numeric| / max|numeric|.
template <class Agg>
double worst_gradient_error(int K) {
  using Layer = mtp::Perspectives<user::MinimalGatedCell<double>, Agg>;
  constexpr index_t T = 5, B = 2, I = 3, H = 4;
  typename Layer::Config cfg;
  cfg.cell = {I, H};
  cfg.perspectives = K;
  Layer layer(cfg);
  mtp::ParamStore<double> store;
  mtp::attach_params(layer, store);
  mtp::RngSequence rng(1, 2);
  layer.init(rng);
  std::vector<double> x(T * B * I), R(T * B * H);
  for (double& v : x) v = rng.normal();
  for (double& v : R) v = rng.normal();
  const mtp::Shape xs{T, B, I}, ys{T, B, H};
  mtp::Tensor<double> y(ys), dx(xs);
  auto loss = [&] {
    layer.forward(mtp::CView<double>(x.data(), xs), y.view(), mtp::StepContext{});
    double l = 0;
    for (index_t i = 0; i < y.numel(); ++i) l += y[i] * R[i];
    return l;
  };
  loss();
  store.zero_grad();
  layer.backward(mtp::CView<double>(x.data(), xs), mtp::CView<double>(R.data(), ys), dx.view());
  auto check = [&](double* v, const double* g, index_t n) {
    double diff = 0, scale = 1e-12;
    for (index_t i = 0; i < n; ++i) {
      const double keep = v[i];
      v[i] = keep + 1e-5;
      const double up = loss();
      v[i] = keep - 1e-5;
      const double down = loss();
      v[i] = keep;
      const double num = (up - down) / 2e-5;
      diff = std::max(diff, std::abs(num - g[i]));
      scale = std::max(scale, std::abs(num));
    }
    return diff / scale;
  };
  const std::vector<double> grads(store.grads(), store.grads() + store.size());
  double worst =
      check(x.data(), std::vector<double>(dx.data(), dx.data() + dx.numel()).data(), dx.numel());
  for (const mtp::ParamInfo& p : store.infos())
    worst =
        std::max(worst, check(store.values() + p.offset, grads.data() + p.offset, p.shape.numel()));
  return worst;
}

// Trains a 1-block model on "repeat the token from 2 steps back" and returns the mean
// loss of the first and the last 10 steps.
std::pair<double, double> train_lag_copy() {
  using Layer = mtp::Perspectives<user::MinimalGatedCell<float>, mtp::LearnedAggregator<float>>;
  constexpr index_t V = 8, W = 32, T = 16, B = 16;
  constexpr int kSteps = 150;
  Layer::Config lc;
  lc.cell = user::MinimalGatedCell<float>::model_config(W);
  lc.perspectives = 3;
  mtp::Model<Layer> model(mtp::ModelConfig{.vocab = V, .width = W, .layers = 1}, lc);
  model.init(0);
  mtp::AdamW<float> opt(model.params(), {});
  std::vector<std::int32_t> tokens(T * B), targets(T * B);
  double first = 0, last = 0;
  for (int step = 0; step < kSteps; ++step) {
    mtp::RngSequence data(7, std::uint64_t(step));
    for (index_t i = 0; i < T * B; ++i) tokens[i] = std::int32_t(data.below(V));
    for (index_t t = 0; t < T; ++t)
      for (index_t b = 0; b < B; ++b)
        targets[t * B + b] = t >= 2 ? tokens[(t - 2) * B + b] : mtp::kIgnoreTarget;
    model.params().zero_grad();
    const double loss = model
                            .forward(tokens.data(), targets.data(), T, B,
                                     {.training = true, .step = std::uint64_t(step)})
                            .mean_loss();
    model.backward();
    mtp::clip_grad_global_norm(model.params(), mtp::grad_global_norm(model.params()), 1.0);
    opt.step(model.params(), 1e-2, {});
    if (step < 10) first += loss / 10;
    if (step >= kSteps - 10) last += loss / 10;
  }
  return {first, last};
}

}  // namespace

int main() {
  int failures = 0;
  for (int K = 1; K <= 3; ++K) {
    const double errs[] = {worst_gradient_error<mtp::MeanAggregator<double>>(K),
                           worst_gradient_error<mtp::LearnedAggregator<double>>(K),
                           worst_gradient_error<mtp::FixedAggregator<double>>(K)};
    const char* names[] = {"mean", "learned", "fixed"};
    for (int a = 0; a < 3; ++a) {
      const bool ok = errs[a] < 1e-7;
      failures += !ok;
      std::printf("gradient check  K=%d %-8s worst relative error %.2e  %s\n", K, names[a], errs[a],
                  ok ? "ok" : "FAILED");
    }
  }
  const auto [first, last] = train_lag_copy();
  const bool learned = last < 0.5 * first;
  failures += !learned;
  std::printf("training        lag-2 copy: loss %.3f -> %.3f  %s\n", first, last,
              learned ? "ok" : "FAILED (expected the loss to halve)");
  return failures == 0 ? 0 : 1;
}
