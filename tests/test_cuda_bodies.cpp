// The CUDA backend without a GPU: every kernel body (core/cuda/*_bodies.hpp) run in host
// loops by HostExec, composed by the same layer programs (core/cuda/program.hpp) the
// device layer runs, against the CPU reference Perspectives<Cell, Agg>: every cell,
// every aggregator (selector noise, learned noise, top-k), K = 1, 3, 5, zero and
// carried states, the diagonal cells with and without the mixed scan (and mixed against
// an unmixed reference); outputs, final states, dx and every parameter gradient, in
// double (to rounding) and float. Plus the device-side Philox against core/rng.hpp and the WKV
// scan on a long sequence with large keys.
#include <gtest/gtest.h>

#include "cuda/parity.hpp"
#include "mtp/core/cuda/host_exec.hpp"

namespace mtp {
namespace {

using cuda::HostExec;

TEST(CudaBodies, PhiloxNormalIsCounterRngNormal) {
  for (std::uint64_t seed : {0ull, 7ull, 0x123456789abcdefull})
    for (std::uint64_t stream : {std::uint64_t{1}, rng_stream::kSelectorNoise + 3})
      for (std::uint64_t index : {0ull, 1ull, 12345ull, (5ull << 40) + 17}) {
        const CounterRng rng(seed, stream);
        const cuda::PhiloxBlock b = cuda::philox4x32_10(index, stream, seed);
        const Philox4x32 want = rng.bits(index);
        for (int i = 0; i < 4; ++i) EXPECT_EQ(b.r[i], want[i]);
        EXPECT_EQ(cuda::philox_normal(seed, stream, index), rng.normal(index));
      }
}

// The layer program on HostExec as the "other" side of expect_parity.
template <class Mixer>
test::LayerRun<typename Mixer::Scalar> host_program_run(
    const typename Mixer::Config& cfg, const test::ParityInputs<typename Mixer::Scalar>& in) {
  using S = typename Mixer::Scalar;
  HostExec ex;
  cuda::LayerProgram<typename Mixer::CellType, typename Mixer::AggregatorType, HostExec> prog(ex,
                                                                                              cfg);
  EXPECT_EQ(prog.param_count(), index_t(in.params.size()));
  std::copy(in.params.begin(), in.params.end(), prog.values());
  test::LayerRun<S> r;
  r.y.resize(in.T * in.B * prog.output_width());
  r.dx.resize(in.x.size());
  r.state = in.state;
  prog.forward(in.x.data(), r.y.data(), in.T, in.B, in.ctx,
               r.state.empty() ? nullptr : r.state.data());
  // The mixed scan runs exactly when the CPU layer would run it, and then leaves no Yk.
  const bool mixed = MixingCell<typename Mixer::CellType> &&
                     WeightingAggregator<typename Mixer::AggregatorType> && cfg.mixed_scan;
  EXPECT_EQ(prog.used_mixed_scan(), mixed);
  EXPECT_EQ(prog.perspective_outputs() == nullptr, mixed);
  prog.backward(in.x.data(), in.dy.data(), r.dx.data());
  r.grads.assign(prog.grads(), prog.grads() + prog.param_count());
  return r;
}

class HostProgram : public testing::TestWithParam<test::ParityCase> {};

TEST_P(HostProgram, MatchesCpuReferenceInDouble) {
  test::with_case_mixer<double>(GetParam(), [&]<class M>() {
    test::expect_parity<M>(GetParam(), host_program_run<M>, 1e-10);
  });
}
TEST_P(HostProgram, MatchesCpuReferenceInFloat) {
  test::with_case_mixer<float>(GetParam(), [&]<class M>() {
    test::expect_parity<M>(GetParam(), host_program_run<M>, 1e-4);
  });
}
INSTANTIATE_TEST_SUITE_P(AllCases, HostProgram, testing::ValuesIn(test::parity_cases()),
                         [](const auto& info) { return test::parity_name(info.param); });

// The mixed program against the CPU layer without the mixed scan (recur + aggregator
// apart, the reference path): the two paths compute the same function.
class HostMixedProgram : public testing::TestWithParam<test::ParityCase> {};

template <class Mixer>
test::LayerRun<typename Mixer::Scalar> host_mixed_run(
    typename Mixer::Config cfg, const test::ParityInputs<typename Mixer::Scalar>& in) {
  cfg.mixed_scan = true;
  return host_program_run<Mixer>(cfg, in);
}

TEST_P(HostMixedProgram, MatchesUnmixedCpuReferenceInDouble) {
  test::with_case_mixer<double>(
      GetParam(), [&]<class M>() { test::expect_parity<M>(GetParam(), host_mixed_run<M>, 1e-10); });
}
TEST_P(HostMixedProgram, MatchesUnmixedCpuReferenceInFloat) {
  test::with_case_mixer<float>(
      GetParam(), [&]<class M>() { test::expect_parity<M>(GetParam(), host_mixed_run<M>, 1e-4); });
}
INSTANTIATE_TEST_SUITE_P(DiagonalCells, HostMixedProgram, testing::ValuesIn(test::unmixed_cases()),
                         [](const auto& info) { return test::parity_name(info.param); });

TEST(CudaBodies, WkvScanLongSequenceLargeKeys) {
  HostExec ex;
  for (int K : {1, 3, 5}) {
    SCOPED_TRACE("K=" + std::to_string(K));
    test::expect_wkv_scan_parity<double>(ex, K, 3000, 1e-10);
    test::expect_wkv_scan_parity<float>(ex, K, 3000, 1e-4);
  }
}

TEST(CudaBodies, MixedWkvScanLongSequenceLargeKeys) {
  HostExec ex;
  for (int K : {1, 3, 5}) {
    SCOPED_TRACE("K=" + std::to_string(K));
    test::expect_wkv_mixed_scan_parity<double>(ex, K, 3000, 1e-10);
    test::expect_wkv_mixed_scan_parity<float>(ex, K, 3000, 1e-4);
  }
}

// A program rejects what its kernels cannot run: more perspectives than the scans'
// register bound allows for.
TEST(CudaBodies, RejectsTooManyPerspectives) {
  HostExec ex;
  Perspectives<LinearSsm<double>, MeanAggregator<double>>::Config cfg;
  cfg.cell = {.input = 4, .state = 4};
  cfg.perspectives = 65;
  using Prog = cuda::LayerProgram<LinearSsm<double>, MeanAggregator<double>, HostExec>;
  EXPECT_THROW(Prog(ex, cfg), Error);
}

}  // namespace
}  // namespace mtp
