// GPU benchmarks of the CUDA backend (docs/cuda.md, issue 7), on the first visible device:
//  - the fused WKV and SSM scan kernels, forward (training: saving for backward; and
//    inference) and backward, K = 1 and K = 3: time, achieved bandwidth (bytes the kernel
//    must move / time) and its share of the device's peak (2 × memory clock × bus width);
//  - one GRU and one LSTM layer at K = 1 (and K = 3), forward + backward on device
//    pointers: time per step and tokens/s;
//  - their peer, cuDNN's LSTM and GRU (cudnn_rnn_peer.hpp), one training step at the same
//    shapes, and mtp's K = 1 throughput as a share of cuDNN's (target: LSTM >= 0.8). A
//    failed or missing peer prints its error and the other benchmarks still run.
// Every kernel timed here is checked against the CPU reference by tests/cuda/ first.
// Usage: bench_cuda [--quick]. Prints one line per measurement and a summary.
#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "cudnn_rnn_peer.hpp"
#include "mtp/core/cuda/layer.hpp"

namespace mtp::cuda {
namespace {

// Median milliseconds of `reps` runs of f (after one warm-up), by CUDA events.
template <class F>
double time_ms(DeviceExec& ex, int reps, F&& f) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  f();
  ex.finish("warm-up");
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(start);
    f();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float t = 0;
    cudaEventElapsedTime(&t, start, stop);
    ms.push_back(t);
  }
  ex.finish("timed runs");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

template <class T>
void fill_device(DeviceExec& ex, DeviceBuffer<T>& b, index_t n, double lo, double hi,
                 std::uint64_t seed) {
  std::vector<T> h(n);
  RngSequence rng(seed, 9);
  for (T& v : h) v = T(rng.uniform(lo, hi));
  b.resize(n);
  ex.upload(b.data(), h.data(), n);
}

struct Report {
  double peak_gbs;
  std::vector<std::string> lines;
  void scan(const std::string& name, int K, double ms, double bytes) {
    const double gbs = bytes / ms / 1e6;
    lines.push_back(fmt::format("{:<26} K={}  {:8.3f} ms  {:7.1f} GB/s  {:5.1f}% of peak", name, K,
                                ms, gbs, 100 * gbs / peak_gbs));
    fmt::print("{}\n", lines.back());
  }
};

// The WKV scan of an RWKV layer with C channels, float: forward saving for backward,
// forward for inference, backward; bytes are what each kernel must read and write.
void bench_wkv(DeviceExec& ex, Report& rep, index_t T, index_t B, index_t C, int K,
               double& fwd_ms) {
  using S = float;
  const index_t TBC = T * B * C;
  DeviceBuffer<S> k, v, u, y, ab, gy, dk, dv, decay;
  DeviceBuffer<double> w, p, gw, gu;
  fill_device(ex, k, TBC, -3, 3, 1);
  fill_device(ex, v, TBC, -1, 1, 2);
  fill_device(ex, u, C, -1, 1, 3);
  fill_device(ex, decay, K * C, -2, 1, 4);
  fill_device(ex, gy, TBC * K, -1, 1, 5);
  for (auto* b : {&y}) b->resize(TBC * K);
  ab.resize(2 * TBC * K);
  dk.resize(TBC), dv.resize(TBC);
  w.resize(K * C), p.resize(TBC * K), gw.resize(B * K * C), gu.resize(B * K * C);
  ex.run(WkvDecay<S>{K * C, decay.data(), w.data()});
  const double s = sizeof(S);
  const WkvForward<S> train{T,        B,       C,        K,         k.data(), v.data(), u.data(),
                            w.data(), nullptr, y.data(), ab.data(), p.data(), nullptr,  nullptr};
  fwd_ms = time_ms(ex, 10, [&] { run_fused(ex, K, train); });
  rep.scan("wkv forward (training)", K, fwd_ms, TBC * (2 * s + K * (3 * s + 8)));
  WkvForward<S> infer = train;
  infer.saved_ab = nullptr, infer.saved_p = nullptr;
  const double inf_ms = time_ms(ex, 10, [&] { run_fused(ex, K, infer); });
  rep.scan("wkv forward (inference)", K, inf_ms, TBC * (2 * s + K * s));
  const WkvBackward<S> back{T,         B,         C,         K,        k.data(), v.data(),
                            u.data(),  w.data(),  ab.data(), p.data(), y.data(), gy.data(),
                            dk.data(), dv.data(), gw.data(), gu.data()};
  const double bwd_ms = time_ms(ex, 10, [&] { run_fused(ex, K, back); });
  rep.scan("wkv backward", K, bwd_ms, TBC * (4 * s + K * (5 * s + 8)));

  // The mixed scan, as the layer runs it: α (T,B,K) in, A (T,B,C) out; backward from dA,
  // and dα's reduction, which recomputes wkv from the saved state.
  DeviceBuffer<S> alpha, dalpha;
  fill_device(ex, alpha, T * B * K, 0, 1, 6);
  dalpha.resize(T * B * K);
  WkvForward<S> mixed = train;
  mixed.alpha = alpha.data();
  const double mix_ms = time_ms(ex, 10, [&] { run_fused(ex, K, mixed); });
  rep.scan("wkv mixed forward (train)", K, mix_ms, TBC * (3 * s + K * (2 * s + 8)));
  WkvBackward<S> mixed_back = back;
  mixed_back.alpha = alpha.data();
  mixed_back.y = nullptr;
  const double mix_bwd_ms = time_ms(ex, 10, [&] { run_fused(ex, K, mixed_back); });
  rep.scan("wkv mixed backward", K, mix_bwd_ms, TBC * (5 * s + K * (2 * s + 8)));
  const WkvMixWeightGrad<S> dal{T,        B,         C,        K,         k.data(),     v.data(),
                                u.data(), ab.data(), p.data(), gy.data(), dalpha.data()};
  const double dal_ms = time_ms(ex, 10, [&] { ex.run(dal); });
  rep.scan("wkv mixed dα", K, dal_ms, TBC * (3 * s + K * (2 * s + 8)));
}

void bench_ssm(DeviceExec& ex, Report& rep, index_t T, index_t B, index_t N, int K,
               double& fwd_ms) {
  using S = float;
  const index_t TBN = T * B * N;
  DeviceBuffer<S> P, a, g, Yk, dYk, dP, decay;
  DeviceBuffer<double> da, dg;
  fill_device(ex, P, TBN, -1, 1, 1);
  fill_device(ex, decay, K * N, -3, 0, 2);
  fill_device(ex, dYk, TBN * K, -1, 1, 3);
  a.resize(K * N), g.resize(K * N), Yk.resize(TBN * K), dP.resize(TBN);
  da.resize(B * K * N), dg.resize(B * K * N);
  ex.run(SsmCoefficients<S>{K * N, decay.data(), a.data(), g.data()});
  const double s = sizeof(S);
  const SsmForward<S> fwd{T, B, N, K, P.data(), a.data(), g.data(), nullptr, Yk.data(), nullptr};
  fwd_ms = time_ms(ex, 10, [&] { run_fused(ex, K, fwd); });
  rep.scan("ssm forward", K, fwd_ms, TBN * (s + K * s));
  const SsmBackward<S> back{T,         B,         N,        K,         P.data(),
                            a.data(),  g.data(),  nullptr,  Yk.data(), dYk.data(),
                            dP.data(), da.data(), dg.data()};
  const double bwd_ms = time_ms(ex, 10, [&] { run_fused(ex, K, back); });
  rep.scan("ssm backward", K, bwd_ms, TBN * (2 * s + 2 * K * s));

  // The mixed scan: α in, A out (the states h still saved, in Yk's place); backward
  // from dA, and dα = ⟨dA, h⟩ per (t, b, k).
  DeviceBuffer<S> alpha, A, dA, dalpha;
  fill_device(ex, alpha, T * B * K, 0, 1, 4);
  fill_device(ex, dA, TBN, -1, 1, 5);
  A.resize(TBN), dalpha.resize(T * B * K);
  SsmForward<S> mixed = fwd;
  mixed.alpha = alpha.data(), mixed.A = A.data();
  const double mix_ms = time_ms(ex, 10, [&] { run_fused(ex, K, mixed); });
  rep.scan("ssm mixed forward", K, mix_ms, TBN * (2 * s + K * s));
  SsmBackward<S> mixed_back = back;
  mixed_back.alpha = alpha.data();
  mixed_back.dYk = dA.data();  // with α: dA (T,B,N)
  const double mix_bwd_ms = time_ms(ex, 10, [&] { run_fused(ex, K, mixed_back); });
  rep.scan("ssm mixed backward", K, mix_bwd_ms, TBN * (3 * s + K * s));
  const RowDots<S> dal{T * B, N, K, dA.data(), Yk.data(), dalpha.data()};
  const double dal_ms = time_ms(ex, 10, [&] { ex.run(dal); });
  rep.scan("ssm mixed dα", K, dal_ms, TBN * (s + K * s));
}

// One matrix-cell layer, forward + backward on device pointers (float, mean aggregator):
// x (T,B,I = H) → y (T,B,H). Returns the forward + backward milliseconds.
template <class C>
double bench_matrix_layer(Report& rep, const char* name, index_t T, index_t B, index_t H, int K) {
  using S = float;
  typename Perspectives<C, MeanAggregator<S>>::Config cfg;
  cfg.cell = {.input = H, .hidden = H};
  cfg.perspectives = K;
  PerspectiveLayer<C, MeanAggregator<S>> layer(cfg);
  DeviceExec& ex = layer.executor();
  const index_t n = layer.param_count();
  std::vector<S> params(n);
  RngSequence rng(1, 1);
  for (S& v : params) v = S(rng.uniform(-0.05, 0.05));
  layer.set_params(params.data());
  DeviceBuffer<S> x, y, dy, dx;
  fill_device(ex, x, T * B * H, -1, 1, 2);
  fill_device(ex, dy, T * B * H, -1, 1, 3);
  y.resize(T * B * H), dx.resize(T * B * H);
  auto& prog = layer.program();
  const double fwd = time_ms(ex, 5, [&] {
    prog.forward(x.data(), y.data(), T, B, StepContext{.training = true, .seed = 0, .step = 0},
                 nullptr);
  });
  const double both = time_ms(ex, 5, [&] {
    prog.forward(x.data(), y.data(), T, B, StepContext{.training = true, .seed = 0, .step = 0},
                 nullptr);
    prog.backward(x.data(), dy.data(), dx.data());
  });
  rep.lines.push_back(
      fmt::format("{:<26} K={}  T={} B={} H={}: forward {:.3f} ms, forward+backward {:.3f} ms, "
                  "{:.0f} train tokens/s",
                  name, K, T, B, H, fwd, both, double(T * B) / (both / 1e3)));
  fmt::print("{}\n", rep.lines.back());
  return both;
}

// cuDNN's layer at the shapes of bench_matrix_layer (K = 1, I = H): one training step,
// and mtp's throughput as a share of it (> 1: mtp is faster). Returns the ratio line of
// the summary; a failure becomes that line (and the measurement line) with its error.
std::string bench_cudnn_peer(Report& rep, CudnnCell cell, const char* name, index_t T, index_t B,
                             index_t H, double mtp_ms, const char* target) {
  const CudnnRnnTiming peer = time_cudnn_rnn_step(cell, T, B, H, H, 5);
  const char* cell_name = cell == CudnnCell::lstm ? "LSTM" : "GRU";
  if (!peer.ok) {
    rep.lines.push_back(fmt::format("{:<26} K=1  error: {}", name, peer.error));
    fmt::print("{}\n", rep.lines.back());
    return fmt::format("{} K=1 / cuDNN: n/a, the cuDNN peer failed ({})", cell_name, target);
  }
  const double ratio = peer.ms / mtp_ms;  // throughput ratio = inverse time ratio
  rep.lines.push_back(
      fmt::format("{:<26} K=1  T={} B={} H={}: forward+backward {:.3f} ms, {:.0f} train "
                  "tokens/s; mtp/cuDNN {:.2f}x",
                  name, T, B, H, peer.ms, double(T * B) / (peer.ms / 1e3), ratio));
  fmt::print("{}\n", rep.lines.back());
  return fmt::format("{} K=1 / cuDNN: {:.2f}x train tokens/s (mtp {:.3f} ms, cuDNN {:.3f} ms; {})",
                     cell_name, ratio, mtp_ms, peer.ms, target);
}

int run(bool quick) {
  const DeviceInfo info = device_info();
  fmt::print("device: {} ({} SMs), peak memory bandwidth {:.0f} GB/s\n", info.name, info.sm_count,
             info.peak_bandwidth_gbs);
  Report rep{info.peak_bandwidth_gbs, {}};
  DeviceExec ex;
  const index_t T = quick ? 64 : 256, B = 64, C = quick ? 512 : 2048;
  double wkv1 = 0, wkv3 = 0, ssm1 = 0, ssm3 = 0;
  bench_wkv(ex, rep, T, B, C, 1, wkv1);
  bench_wkv(ex, rep, T, B, C, 3, wkv3);
  bench_ssm(ex, rep, T, B, C, 1, ssm1);
  bench_ssm(ex, rep, T, B, C, 3, ssm3);
  const index_t Tm = quick ? 16 : 128, H = quick ? 256 : 1024;
  fmt::print("{}\n", cudnn_peer_description());
  const double lstm1 = bench_matrix_layer<Lstm<float>>(rep, "lstm layer", Tm, B, H, 1);
  const std::string lstm_vs_cudnn =
      bench_cudnn_peer(rep, CudnnCell::lstm, "cudnn lstm (fp32)", Tm, B, H, lstm1, "target >= 0.8");
  const double gru1 = bench_matrix_layer<Gru<float>>(rep, "gru layer", Tm, B, H, 1);
  const std::string gru_vs_cudnn =
      bench_cudnn_peer(rep, CudnnCell::gru, "cudnn gru (fp32)", Tm, B, H, gru1, "no target");
  bench_matrix_layer<Lstm<float>>(rep, "lstm layer", Tm, B, H, 3);
  fmt::print("\nsummary ({}; scans T={} B={} C=N={}, float):\n", info.name, T, B, C);
  for (const std::string& l : rep.lines) fmt::print("  {}\n", l);
  fmt::print("  K=3 / K=1 training-forward time: wkv {:.2f}x, ssm {:.2f}x (target <= 1.3x)\n",
             wkv3 / wkv1, ssm3 / ssm1);
  fmt::print("  {}\n  {}\n  peer: {}\n", lstm_vs_cudnn, gru_vs_cudnn, cudnn_peer_description());
  return 0;
}

}  // namespace
}  // namespace mtp::cuda

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  try {
    return mtp::cuda::run(quick);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_cuda: error: {}\n", e.what());
    return 1;
  }
}
