// Built with `c++ $(pkg-config --cflags --libs mtp)` and nothing else: the version header
// and a GRU in two perspectives, forward and backward, from the installed prefix.
#include <mtp/aggregators/learned.hpp>
#include <mtp/cells/gru.hpp>
#include <mtp/core/perspectives.hpp>
#include <mtp/version.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>

int main() {
  using Layer = mtp::Perspectives<mtp::Gru<float>, mtp::LearnedAggregator<float>>;
  Layer::Config cfg;
  cfg.cell = mtp::Gru<float>::model_config(8);
  cfg.perspectives = 2;
  Layer layer(cfg);
  mtp::ParamStore<float> store;
  mtp::attach_params(layer, store);
  mtp::RngSequence rng(1, 0);
  layer.init(rng);
  mtp::Tensor<float> x({4, 3, 8}), y({4, 3, 8}), dx({4, 3, 8});
  for (mtp::index_t i = 0; i < x.numel(); ++i) x[i] = float(rng.normal());
  layer.forward(x.view(), y.view(), mtp::StepContext{});
  layer.backward(x.view(), y.view(), dx.view());
  double sum = 0;
  for (mtp::index_t i = 0; i < dx.numel(); ++i) sum += std::abs(dx[i]);
  std::printf("mtp %s via pkg-config: |dx|_1 = %.4f\n", mtp::version, sum);
  return std::strlen(mtp::version) > 0 && std::isfinite(sum) && sum > 0 ? 0 : 1;
}
