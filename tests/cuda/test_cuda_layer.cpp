// The CUDA backend on a GPU: the device layer (core/cuda/layer.hpp: cuBLAS + every kernel
// of kernels.cu) against the CPU reference Perspectives<Cell, Agg> for every cell,
// aggregator (noise, learned noise, top-k), K = 1, 3, 5, zero and carried states, the
// diagonal cells with and without the mixed scan: outputs, final states, dx and every
// parameter gradient; relative error ≤ 1e-4 in float. The WKV scan kernels alone (plain
// and mixed) on a long sequence with large keys. Skipped when no CUDA device is visible.
#include <gtest/gtest.h>

#include "mtp/core/cuda/layer.hpp"
#include "parity.hpp"

namespace mtp {
namespace {

// A macro, not a function: GTEST_SKIP returns from the test body it is written in.
#define MTP_SKIP_WITHOUT_GPU()                                                  \
  do {                                                                          \
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device is visible"; \
  } while (0)

template <class Mixer>
test::LayerRun<typename Mixer::Scalar> device_run(
    const typename Mixer::Config& cfg, const test::ParityInputs<typename Mixer::Scalar>& in) {
  using S = typename Mixer::Scalar;
  cuda::PerspectiveLayer<typename Mixer::CellType, typename Mixer::AggregatorType> layer(cfg);
  layer.set_params(in.params.data());
  test::LayerRun<S> r = test::forward_backward(layer, cfg.perspectives, in);
  r.grads.resize(layer.param_count());
  layer.get_grads(r.grads.data());
  return r;
}

class DeviceLayer : public testing::TestWithParam<test::ParityCase> {};

TEST_P(DeviceLayer, MatchesCpuReferenceInFloat) {
  MTP_SKIP_WITHOUT_GPU();
  test::with_case_mixer<float>(
      GetParam(), [&]<class M>() { test::expect_parity<M>(GetParam(), device_run<M>, 1e-4); });
}
TEST_P(DeviceLayer, MatchesCpuReferenceInDouble) {
  MTP_SKIP_WITHOUT_GPU();
  test::with_case_mixer<double>(
      GetParam(), [&]<class M>() { test::expect_parity<M>(GetParam(), device_run<M>, 1e-9); });
}
INSTANTIATE_TEST_SUITE_P(AllCases, DeviceLayer, testing::ValuesIn(test::parity_cases()),
                         [](const auto& info) { return test::parity_name(info.param); });

TEST(DeviceKernels, WkvScanLongSequenceLargeKeys) {
  MTP_SKIP_WITHOUT_GPU();
  cuda::DeviceExec ex;
  for (int K : {1, 3, 5}) {
    SCOPED_TRACE("K=" + std::to_string(K));
    test::expect_wkv_scan_parity<double>(ex, K, 3000, 1e-9);
    test::expect_wkv_scan_parity<float>(ex, K, 3000, 1e-4);
  }
}

TEST(DeviceKernels, MixedWkvScanLongSequenceLargeKeys) {
  MTP_SKIP_WITHOUT_GPU();
  cuda::DeviceExec ex;
  for (int K : {1, 3, 5}) {
    SCOPED_TRACE("K=" + std::to_string(K));
    test::expect_wkv_mixed_scan_parity<double>(ex, K, 3000, 1e-9);
    test::expect_wkv_mixed_scan_parity<float>(ex, K, 3000, 1e-4);
  }
}

TEST(DeviceLayerApi, RejectsWrongShapes) {
  MTP_SKIP_WITHOUT_GPU();
  Perspectives<Gru<float>, MeanAggregator<float>>::Config cfg;
  cfg.cell = {.input = 4, .hidden = 5};
  cfg.perspectives = 2;
  cuda::PerspectiveLayer<Gru<float>, MeanAggregator<float>> layer(cfg);
  std::vector<float> x(2 * 3 * 3), y(2 * 3 * 5);
  EXPECT_THROW(layer.forward(CView<float>(x.data(), {2, 3, 3}), View<float>(y.data(), {2, 3, 5}),
                             StepContext{}),
               Error);
  std::vector<float> dy(30), dx(24);
  EXPECT_THROW(
      layer.backward(CView<float>(dx.data(), {2, 3, 4}), CView<float>(dy.data(), {2, 3, 5}),
                     View<float>(dx.data(), {2, 3, 4})),
      Error);
}

}  // namespace
}  // namespace mtp
