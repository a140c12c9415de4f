// `mtp-exp layer --backend cuda` through the real binary. In every build: a build
// without the backend refuses it (usage error, exit 2), a build with it and no GPU says
// so in one line (exit 1). With a GPU: the CUDA layer's y, grad.x and every grad.<param>
// agree with `--backend cpu` for every cell, K ∈ {1, 3} and aggregator (relative error
// ≤ 1e-4 in float).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "mtp/core/safetensors.hpp"
#include "mtp/experiments/dispatch.hpp"
#include "mtp/experiments/layer_checks.hpp"
#include "mtp/experiments/registry.hpp"
#include "run_binary.hpp"
#if MTP_WITH_CUDA
#include "mtp/core/cuda/device.hpp"
#endif

namespace mtp {
namespace {

bool gpu_visible() {
#if MTP_WITH_CUDA
  return cuda::device_count() > 0;
#else
  return false;
#endif
}

// A layer's parameters (init + perturbation) and an input with x and dy, as files.
struct LayerFiles {
  test::TempDir dir;
  std::string params, input;
};

// The layer of the generated checks (experiments/layer_checks.hpp): the cell's check
// widths, its init plus a perturbation.
template <class Mixer>
void write_layer_files(const std::string& cell, int K, const std::string& agg, LayerFiles& f) {
  using S = typename Mixer::Scalar;
  const exp::checks::CheckLayer<Mixer> t(exp::checks::layer_config<Mixer>(K, {}));
  const Mixer& layer = t.layer;
  const ParamStore<S>& store = t.store;
  RngSequence noise(3, 3);
  SafeTensors p;
  for (const ParamInfo& info : store.infos())
    p.put(info.name, info.shape.dims(), store.values() + info.offset);
  const index_t T = 9, B = 4;
  std::vector<S> x(T * B * layer.input_width()), dy(T * B * layer.output_width());
  for (S& v : x) v = S(noise.normal());
  for (S& v : dy) v = S(noise.normal());
  SafeTensors in;
  in.put("x", {T, B, layer.input_width()}, x.data());
  in.put("dy", {T, B, layer.output_width()}, dy.data());
  f.params =
      (f.dir.path() / ("params-" + cell + agg + std::to_string(K) + ".safetensors")).string();
  f.input = (f.dir.path() / "input.safetensors").string();
  p.save(f.params);
  in.save(f.input);
  (void)agg;
}

std::vector<std::string> layer_args(const std::string& cell, int K, const std::string& agg,
                                    const LayerFiles& f, const std::string& backend,
                                    const std::string& out) {
  return {"layer",        "--cell",   cell,       "--perspectives", std::to_string(K),
          "--aggregator", agg,        "--params", f.params,         "--input",
          f.input,        "--output", out,        "--backend",      backend};
}

TEST(CudaCli, BackendCudaWithoutGpuIsAOneLineError) {
  if (gpu_visible()) GTEST_SKIP() << "a GPU is visible: CudaCliParity covers --backend cuda";
  LayerFiles f;
  write_layer_files<Perspectives<Gru<float>, MeanAggregator<float>>>("gru", 1, "mean", f);
  const std::string out = (f.dir.path() / "out.safetensors").string();
  const test::Result r =
      test::run_mtp_exp_captured(layer_args("gru", 1, "mean", f, "cuda", out), f.dir.path());
#if MTP_WITH_CUDA
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("no CUDA device is visible"), std::string::npos) << r.describe();
#else
  EXPECT_EQ(r.status, 2) << r.describe();
  EXPECT_NE(r.err.find("this build has no CUDA backend (configure with -DMTP_CUDA=ON)"),
            std::string::npos)
      << r.describe();
#endif
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.describe();
  EXPECT_FALSE(std::filesystem::exists(out)) << "no output file on failure";
}

TEST(CudaCli, UnknownBackendIsAUsageError) {
  LayerFiles f;
  write_layer_files<Perspectives<Gru<float>, MeanAggregator<float>>>("gru", 1, "mean", f);
  const std::string out = (f.dir.path() / "out.safetensors").string();
  const test::Result r =
      test::run_mtp_exp_captured(layer_args("gru", 1, "mean", f, "tpu", out), f.dir.path());
  EXPECT_EQ(r.status, 2) << r.describe();
  EXPECT_NE(r.err.find("--backend"), std::string::npos) << r.describe();
}

struct CliCase {
  std::string cell;
  int K;
  std::string aggregator;
};

class CudaCliParity : public testing::TestWithParam<CliCase> {};

TEST_P(CudaCliParity, CudaAgreesWithCpu) {
  if (!gpu_visible()) GTEST_SKIP() << "no CUDA device is visible (or no CUDA backend built)";
  const CliCase& c = GetParam();
  LayerFiles f;
  exp::with_mixer<float>(c.cell, c.aggregator,
                         [&]<class M>() { write_layer_files<M>(c.cell, c.K, c.aggregator, f); });
  const std::string cpu = (f.dir.path() / "cpu.safetensors").string();
  const std::string gpu = (f.dir.path() / "cuda.safetensors").string();
  for (const auto& [backend, out] : {std::pair{"cpu", cpu}, std::pair{"cuda", gpu}}) {
    const test::Result r = test::run_mtp_exp_captured(
        layer_args(c.cell, c.K, c.aggregator, f, backend, out), f.dir.path());
    ASSERT_EQ(r.status, 0) << backend << ": " << r.describe();
  }
  const SafeTensors want = SafeTensors::load(cpu), got = SafeTensors::load(gpu);
  ASSERT_EQ(want.tensors.size(), got.tensors.size());
  for (const auto& [name, t] : want.tensors) {
    ASSERT_TRUE(got.has(name)) << name;
    const std::vector<float> a = got.at(name).to<float>(name), b = t.to<float>(name);
    ASSERT_EQ(a.size(), b.size()) << name;
    double diff = 0, scale = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
      scale = std::max(scale, std::abs(double(b[i])));
    }
    EXPECT_LE(scale > 0 ? diff / scale : diff, 1e-4) << name;
  }
}

// Every registered pair with a device program, K ∈ {1, 3}: none in a build without the
// CUDA backend.
std::vector<CliCase> cli_cases() {
  std::vector<CliCase> v;
  for (const exp::MixerEntry& e : exp::registry().mixers())
    if (e.cuda_layer)
      for (int K : {1, 3}) v.push_back({e.cell, K, e.aggregator});
  return v;
}
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(CudaCliParity);
INSTANTIATE_TEST_SUITE_P(AllLayers, CudaCliParity, testing::ValuesIn(cli_cases()),
                         [](const auto& info) {
                           return info.param.cell + "_K" + std::to_string(info.param.K) + "_" +
                                  info.param.aggregator;
                         });

}  // namespace
}  // namespace mtp
