// Diagonal real linear state-space layer, LRU-style (docs/contract.md §4.4; Orvieto et al. 2023),
// with a per-perspective decay of its N state channels:
//
//   b_t = W_in x_t                                    pre,   (T,B,N), one GEMM
//   a^k = exp(−exp(decay[k]))                         per perspective: |a| < 1, stable
//   h^k_t = a^k ⊙ h^k_{t−1} + √(1 − (a^k)²) ⊙ b_t     recur: one fused pass reads b_t once
//                                                     and updates all K states
//   y_t = W_out Agg_k h^k_t + skip ⊙ x_t              post,  (T,B,I)
//
// √(1 − a²) normalises the state's variance, so slow channels do not blow up. Params:
// in_proj.weight (N,I), out_proj.weight (I,N), skip (I); decay (K,N) belongs to the
// wrapper. Base decay: LRU's ring init, |a| ∈ [0.9, 0.999] with |a|² uniform. State
// (B,K,N) = h.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include "mtp/core/cell.hpp"
#include "mtp/core/gemm.hpp"
#include "mtp/core/ops/linear.hpp"

namespace mtp {

template <class S>
class LinearSsm {
 public:
  using Scalar = S;
  struct Config {
    MTP_DESIGNATED_ONLY;
    index_t input = 0;  // I
    index_t state = 0;  // N
  };
  static constexpr std::string_view kName = "ssm";
  static constexpr std::string_view kDescription = "diagonal linear SSM (LRU-style), decay on |a|";
  static constexpr double kRingMin = 0.9, kRingMax = 0.999;
  // The fraction of a channel's state kept per step at decay d: |a| = exp(−exp(d)). What
  // reports turn into the views' time scales, 1/(1 − retention).
  static double retention(double d) { return std::exp(-std::exp(d)); }

  // The mixer of a model of width W: N = W state channels, output back to W.
  static Config model_config(index_t width) { return {.input = width, .state = width}; }
  // A layer of input width I and N state channels (the PyTorch bridge's hidden_size).
  static Config layer_config(index_t input, index_t state) {
    return {.input = input, .state = state};
  }
  // The layer checks' widths (experiments/layer_checks.hpp): I ≠ N catches a transpose.
  static Config check_config() { return {.input = 4, .state = 6}; }
  // I and N from the shapes of a parameter file: in_proj.weight is (N, I).
  template <class ShapeOf>
  static Config infer_config(ShapeOf&& shape_of) {
    const std::vector<index_t> w = shape_of("in_proj.weight");
    MTP_CHECK(w.size() == 2 && w[0] > 0 && w[1] > 0, "in_proj.weight has shape {}, expected (N,I)",
              shape_str(w));
    return {.input = w[1], .state = w[0]};
  }

  explicit LinearSsm(const Config& cfg) : I_(cfg.input), N_(cfg.state) {
    MTP_CHECK(I_ > 0 && N_ > 0, "ssm needs input and state widths > 0, got I={} N={}", I_, N_);
  }

  index_t input_width() const { return I_; }
  index_t pre_width() const { return N_; }
  index_t recur_width() const { return N_; }
  index_t state_width() const { return N_; }
  // Floats per (t, b) kept for backward: the scan state (K,N) every kChunk-th step. For
  // memory estimates.
  index_t activation_floats_per_token(int K) const {
    return (index_t(K) * N_ + kChunk - 1) / kChunk;
  }
  index_t decay_width() const { return N_; }
  index_t output_width() const { return I_; }

  void declare(ParamStore<S>& store, const std::string& prefix) {
    in_proj_ = store.add(prefix + "in_proj.weight", {N_, I_}, ParamRole::base, true);
    out_proj_ = store.add(prefix + "out_proj.weight", {I_, N_}, ParamRole::base, true);
    skip_ = store.add(prefix + "skip", {I_});
  }
  void bind(ParamStore<S>& store) { store.bind(in_proj_, out_proj_, skip_); }

  // Projections U(±1/√fan_in), skip N(0,1) (LRU's D); base decay from the ring init:
  // |a|² ~ U(r_min², r_max²), decay = log ν with a = e^{−ν}.
  void init(RngSequence& rng, View<S> base_decay, LayerPosition) {
    for (S& w : in_proj_.value) w = S(rng.uniform(-1, 1) / std::sqrt(double(I_)));
    for (S& w : out_proj_.value) w = S(rng.uniform(-1, 1) / std::sqrt(double(N_)));
    for (S& w : skip_.value) w = S(rng.normal());
    for (S& d : base_decay) {
      const double a2 = rng.uniform(kRingMin * kRingMin, kRingMax * kRingMax);
      d = S(std::log(-0.5 * std::log(a2)));
    }
  }

  // x (T,B,I) → P = b (T,B,N).
  void pre_forward(const PreIn<S>& in, View<S> P) {
    linear_forward<S>(in.x, in_proj_.value, nullptr, P);
  }

  // P = b (T,B,N), decay (K,N), s0 (B,K,N) or empty → Yk = h (T,B,K,N), sT or empty.
  // s0 and sT may alias. Saves the coefficients a, √(1 − a²) and the state entering
  // every kChunk-th step.
  void recur_forward(const RecurIn<S>& in, const RecurOut<S>& out) {
    scan_forward<false>(in.P, in.decay, in.s0, {}, out.Yk, out.sT, out.Yk.dim(2));
  }
  // The same scan with the aggregation inside: α (T,B,K) → A = Σ_k α_k h^k (T,B,N). The
  // states h (T,B,K,N) never leave registers.
  void recur_mixed_forward(const RecurIn<S>& in, CView<S> alpha, const MixedOut<S>& out) {
    scan_forward<true>(in.P, in.decay, in.s0, alpha, out.A, out.sT, alpha.dim(2));
  }

  // A (T,B,N), x (T,B,I) → y (T,B,I) = A W_out^T + skip ⊙ x.
  void post_forward(const PostIn<S>& in, View<S> y) {
    const CView<S> x = in.x;
    linear_forward<S>(in.A, out_proj_.value, nullptr, y);
    const index_t R = x.numel() / I_;
    for (index_t r = 0; r < R; ++r)
      for (index_t i = 0; i < I_; ++i) y[r * I_ + i] += skip_.value[i] * x[r * I_ + i];
  }
  // Saved from forward: A, x. dy (T,B,I) → dA (T,B,N) overwritten, dx +=, dW_out, dskip +=.
  void post_backward(const PostIn<S>& in, const PostGrad<S>& g) {
    const CView<S> dy = g.dy, x = in.x;
    const View<S> dx = g.dx;
    linear_backward<S>(dy, in.A, out_proj_.value, g.dA, out_proj_.grad, nullptr);
    const index_t R = x.numel() / I_;
    for (index_t r = 0; r < R; ++r)
      for (index_t i = 0; i < I_; ++i) {
        skip_.grad[i] += dy[r * I_ + i] * x[r * I_ + i];
        dx[r * I_ + i] += skip_.value[i] * dy[r * I_ + i];
      }
  }

  // Saved from forward: a, √(1 − a²), the state checkpoints. dYk (T,B,K,N), dsT (B,K,N)
  // or empty → dP = db (T,B,N) +=, ddecay (K,N) +=, ds0 (B,K,N) += where wanted. (The
  // states are recomputed, Yk is not read.)
  void recur_backward(const RecurIn<S>& in, CView<S>, const RecurGrad<S>& g) {
    scan_backward<false>(g.dYk, in.P, in.decay, {}, g.dsT, g.dP, g.ddecay, {}, g.ds0, g.dYk.dim(2));
  }
  // Saved from forward: the same. dA (T,B,N), α (T,B,K), dsT → dP +=, ddecay +=,
  // dα (T,B,K) = ⟨dA_t, h^k_t⟩ overwritten, ds0 += where wanted.
  void recur_mixed_backward(const RecurIn<S>& in, CView<S> alpha, const MixedGrad<S>& g) {
    scan_backward<true>(g.dA, in.P, in.decay, alpha, g.dsT, g.dP, g.ddecay, g.dalpha, g.ds0,
                        alpha.dim(2));
  }

  // Saved from forward: x. dP = db (T,B,N) → dx +=, dW_in +=. The state does not enter
  // pre: ds0 gets nothing here.
  void pre_backward(const PreIn<S>& in, const PreGrad<S>& g) {
    const CView<S> dP = g.dP, x = in.x;
    const View<S> dx = g.dx;
    const index_t R = x.numel() / I_;
    matmul(dP.data, false, in_proj_.value.data, false, dx.data, R, I_, N_, true);
    matmul(dP.data, true, x.data, false, in_proj_.grad.data, N_, I_, R, true);
  }

 private:
  // The recurrence over P = b (T,B,N), reading b_t once for all K perspectives. It
  // writes h^k_t to out = Yk (T,B,K,N), or with kMixed A_t = Σ_k α_{t,k} h^k_t to
  // out = A (T,B,N). Saves the state entering every kChunk-th step: backward recomputes
  // the rest, which is cheaper than writing and reading every state.
  template <bool kMixed>
  void scan_forward(CView<S> P, CView<S> decay, CView<S> s0, CView<S> alpha, View<S> out,
                    View<S> sT, index_t K) {
    const index_t T = out.dim(0), B = out.dim(1), N = N_;
    compute_coefficients(decay, K);
    state_.resize({B, K, N});
    if (s0.empty())
      state_.zero();
    else
      std::copy(s0.begin(), s0.end(), state_.data());
    checkpoint_.resize({(T + kChunk - 1) / kChunk, B, K, N});
    const S* a = coef_a_.data();
    const S* g = coef_g_.data();
#pragma omp parallel for if (T * B * K * N > (1 << 16))
    for (index_t b = 0; b < B; ++b)
      for (index_t t = 0; t < T; ++t) {
        const S* bt = P.data + (t * B + b) * N;  // read once for all K perspectives
        S* h_all = state_.data() + b * K * N;
        if (t % kChunk == 0)
          std::copy_n(h_all, K * N, checkpoint_.data() + ((t / kChunk) * B + b) * K * N);
        if constexpr (kMixed) std::fill_n(out.data + (t * B + b) * N, N, S(0));
        for (index_t k = 0; k < K; ++k) {
          S* h = h_all + k * N;
          const S* ak = a + k * N;
          const S* gk = g + k * N;
          if constexpr (kMixed) {
            S* At = out.data + (t * B + b) * N;
            const S al = alpha.data[(t * B + b) * K + k];
#pragma omp simd
            for (index_t n = 0; n < N; ++n) {
              h[n] = ak[n] * h[n] + gk[n] * bt[n];
              At[n] += al * h[n];
            }
          } else {
            S* y = out.data + ((t * B + b) * K + k) * N;
#pragma omp simd
            for (index_t n = 0; n < N; ++n) y[n] = h[n] = ak[n] * h[n] + gk[n] * bt[n];
          }
        }
      }
    if (!sT.empty()) std::copy_n(state_.data(), B * K * N, sT.data);
  }

  // Backward of scan_forward. Saved: a, √(1 − a²), the state checkpoints; per sequence,
  // chunk by chunk from the last, the chunk's states are recomputed into a buffer that
  // stays in cache. The outputs' gradient is dYk (T,B,K,N), or with kMixed dA (T,B,N)
  // and α: ∂L/∂h^k_t = α_{t,k} dA_t, and dα (T,B,K) = ⟨dA_t, h^k_t⟩ is written. Per
  // (b,k,n): G_t = ∂L/∂h_t + a G_{t+1}; ∂L/∂b_t = Σ_k g_k G_t; ∂L/∂a = Σ_t G_t h_{t−1};
  // ∂L/∂g = Σ_t G_t b_t. → dP = db (T,B,N) +=, ddecay (K,N) +=. The final state is
  // h_{T−1}: its gradient dsT starts the carry; the initial state's, a G_0, is what the
  // carry holds at the end.
  template <bool kMixed>
  void scan_backward(CView<S> dout, CView<S> P, CView<S> decay, CView<S> alpha, CView<S> dsT,
                     View<S> dP, View<S> ddecay, View<S> dalpha, View<S> ds0, index_t K) {
    const index_t T = dout.dim(0), B = dout.dim(1), N = N_;
    const S* a = coef_a_.data();
    const S* g = coef_g_.data();
    carry_.resize({B, K, N});
    if (dsT.empty())
      carry_.zero();
    else
      std::copy(dsT.begin(), dsT.end(), carry_.data());
    partial_.resize({B, K, 2 * N});  // per sequence: ∂L/∂a, ∂L/∂g (reduced over b below)
    partial_.zero();
    chunk_.resize({B, kChunk + 1, K, N});
    const index_t chunks = (T + kChunk - 1) / kChunk;
#pragma omp parallel for if (T * B * K * N > (1 << 16))
    for (index_t b = 0; b < B; ++b)
      for (index_t j = chunks - 1; j >= 0; --j) {
        const index_t t0 = j * kChunk, t1 = std::min(T, t0 + kChunk);
        // hs[i] = h_{t0−1+i} (B's slice, all K): the checkpoint, then the chunk's steps.
        S* hs = chunk_.data() + b * (kChunk + 1) * K * N;
        std::copy_n(checkpoint_.data() + (j * B + b) * K * N, K * N, hs);
        for (index_t t = t0; t < t1; ++t) {
          const S* bt = P.data + (t * B + b) * N;
          const S* prev = hs + (t - t0) * K * N;
          S* next = hs + (t - t0 + 1) * K * N;
          for (index_t k = 0; k < K; ++k) {
#pragma omp simd
            for (index_t n = 0; n < N; ++n)
              next[k * N + n] = a[k * N + n] * prev[k * N + n] + g[k * N + n] * bt[n];
          }
        }
        for (index_t t = t1 - 1; t >= t0; --t) {
          const S* bt = P.data + (t * B + b) * N;
          S* dbt = dP.data + (t * B + b) * N;
          for (index_t k = 0; k < K; ++k) {
            const index_t row = b * K + k;
            const S* hp = hs + (t - t0) * K * N + k * N;  // h_{t−1}
            const S* h = hp + K * N;                      // h_t
            S* G = carry_.data() + row * N;
            S* da = partial_.data() + row * 2 * N;
            S* dg = da + N;
            const S* ak = a + k * N;
            const S* gk = g + k * N;
            const S al = kMixed ? alpha.data[(t * B + b) * K + k] : S(1);
            const S* gout =
                kMixed ? dout.data + (t * B + b) * N : dout.data + (t * B * K + row) * N;
            S dot = 0;
#pragma omp simd reduction(+ : dot)
            for (index_t n = 0; n < N; ++n) {
              if constexpr (kMixed) dot += gout[n] * h[n];
              const S Gt = al * gout[n] + G[n];  // G[n] holds a·G_{t+1}
              dbt[n] += gk[n] * Gt;
              da[n] += Gt * hp[n];
              dg[n] += Gt * bt[n];
              G[n] = ak[n] * Gt;
            }
            if constexpr (kMixed) dalpha.data[(t * B + b) * K + k] = dot;
          }
        }
      }
    // a = e^{−ν}, ν = e^{decay}: ∂a/∂decay = −aν;  g = √(1 − a²): ∂g/∂decay = ν a² / g.
    for (index_t k = 0; k < K; ++k)
      for (index_t n = 0; n < N; ++n) {
        double da = 0, dg = 0;
        for (index_t b = 0; b < B; ++b) {
          da += partial_[(b * K + k) * 2 * N + n];
          dg += partial_[(b * K + k) * 2 * N + N + n];
        }
        const double nu = std::exp(double(decay[k * N + n]));
        const double ak = std::exp(-nu), gk = std::sqrt(-std::expm1(-2 * nu));
        ddecay[k * N + n] += S(da * (-ak * nu) + dg * (nu * ak * ak / gk));
      }
    if (!ds0.empty())
      for (index_t i = 0; i < ds0.numel(); ++i) ds0[i] += carry_[i];
  }

  // a = e^{−ν} and g = √(1 − a²) = √(−expm1(−2ν)), in double: expm1 keeps g accurate for
  // the slow channels (a → 1), where 1 − a² would cancel.
  void compute_coefficients(CView<S> decay, index_t K) {
    coef_a_.resize({K, N_});
    coef_g_.resize({K, N_});
    for (index_t i = 0; i < K * N_; ++i) {
      const double nu = std::exp(double(decay[i]));
      coef_a_[i] = S(std::exp(-nu));
      coef_g_[i] = S(std::sqrt(-std::expm1(-2 * nu)));
    }
  }

  // Steps between state checkpoints; a chunk's states (17·K·N values per sequence) stay
  // in L1/L2 between their recomputation and their use.
  static constexpr index_t kChunk = 16;

  index_t I_, N_;
  Param<S> in_proj_, out_proj_, skip_;
  Tensor<S> coef_a_, coef_g_;  // (K,N)
  Tensor<S> state_;            // (B,K,N) the running h
  Tensor<S> checkpoint_;       // (T/kChunk,B,K,N) h entering every kChunk-th step
  Tensor<S> chunk_;            // (B,kChunk+1,K,N) backward: a chunk's recomputed states
  Tensor<S> carry_;            // (B,K,N) a·∂L/∂h_{t+1}
  Tensor<S> partial_;          // (B,K,2N)
};

}  // namespace mtp
