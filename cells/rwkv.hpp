// RWKV-4 (Peng et al. 2023) with K temporal perspectives (docs/contract.md §4.3): the time-mix
// cell, whose per-channel decay is the perspective's, and the channel-mix FFN of the
// RWKV block. Tensor names are RWKV-4's, so its state dicts load by name.
//
// Time mix (C = I):
//   x̄_t = x_{t−1} (x̄_0 = 0, or the carried last x)          token shift
//   k = W_k(μ_k⊙x + (1−μ_k)⊙x̄), v = W_v(...μ_v...), r = W_r(...μ_r...)    pre: 3 GEMMs
//   w = −exp(decay[k]), u = time_first
//   wkv^k_t = (Σ_{i<t} e^{(t−1−i)w + k_i} v_i + e^{u+k_t} v_t)
//           / (Σ_{i<t} e^{(t−1−i)w + k_i}     + e^{u+k_t})                   recur
//   y = W_o(σ(r) ⊙ Agg_k wkv^k)                                              post
//
// The sums are carried as (a, b, p): a·e^p and b·e^p are the numerator and denominator
// sums, p a running maximum exponent, so no exp ever overflows whatever T or the keys.
// One pass over (t, c) reads k_t, v_t once and updates all K perspectives. The update
// p ← max(p + w, k) is not done by adding: in float that rounding accumulates into
// errors of order ulp(p)/w² (1e-3 relative with keys ~100 and slow decays). p is kept as
// anchor + n·w instead, the anchor being the key (or carried p) that last won and n the
// steps since (or the p it was rebased to every 2^20 steps), so every p is formed afresh
// with a rounding or two instead of one per step; w is split into two S (w_hi + w_lo) so
// that n·w stays exact to about 48 bits. All of it stays in S: no double lanes in the
// scan loops. The carried state sT holds p itself, rounded to S, so a stream fed in
// chunks rounds p once per chunk (once per token when generating), as a float p would.
//
// Params: time_mix_k, time_mix_v, time_mix_r, time_first (C); key.weight,
// value.weight, receptance.weight, output.weight (C,C); decay (K,C), RWKV's
// time_decay, belongs to the wrapper. State (B,K,4C) = [a | b | p | last x]; the last
// x is shared by the perspectives (every k holds the same copy).
//
// P, the pre output, is laid out as three planes [k | v | r], each (T,B,C), so that
// each GEMM writes a contiguous block.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include "mtp/core/cell.hpp"
#include "mtp/core/gemm.hpp"
#include "mtp/core/init.hpp"
#include "mtp/core/model_config.hpp"
#include "mtp/core/ops/activations.hpp"
#include "mtp/core/ops/linear.hpp"

namespace mtp {

// The exponent that stands for "no history yet": exp(kNoHistory − finite) is 0.
inline constexpr double kWkvNoHistory = -1e38;

// Two terms with exponents e_old and e_fresh brought to their maximum m: the factors
// e^{e_old − m} and e^{e_fresh − m}, from d = e_old − e_fresh. One of them is 1, so one
// exp serves both.
template <class S>
struct ScalePair {
  S old, fresh;
};
template <class S>
inline ScalePair<S> rescale(S d) {
  const bool old_wins = d > 0;
  const S e = exp_fast(old_wins ? -d : d);
  return {old_wins ? S(1) : e, old_wins ? e : S(1)};
}

// p = anchor + n·(w_hi + w_lo), rounded about once: n·w_lo is far below ulp(p). With
// hardware FMA the product n·w_hi is not rounded on its own; without it, std::fma would
// be a libm call that stops the scans vectorising, and the plain product's rounding,
// ulp(n·w), is of the same order as the sum's.
template <class S>
inline S wkv_exponent(S anchor, S n, S w_hi, S w_lo) {
#ifdef __FMA__
  return std::fma(n, w_hi, anchor) + n * w_lo;
#else
  return (n * w_hi + anchor) + n * w_lo;
#endif
}

// ------------------------------------------------------------------ token shift

// xm (T,B,C) = μ ⊙ x + (1 − μ) ⊙ x̄, with x̄_t = x_{t−1} and x̄_0 = x_prev (B,C), or 0
// when x_prev is null.
template <class S>
void token_shift_mix(In<S> x, const S* x_prev, In<S> mu, View<S> xm) {
  const index_t T = x.dim(0), B = x.dim(1), C = x.dim(2);
#pragma omp parallel for if (T * B * C > (1 << 16))
  for (index_t t = 0; t < T; ++t)
    for (index_t b = 0; b < B; ++b) {
      const S* xt = x.data + (t * B + b) * C;
      const S* xs = t > 0 ? x.data + ((t - 1) * B + b) * C : x_prev ? x_prev + b * C : nullptr;
      S* out = xm.data + (t * B + b) * C;
      for (index_t c = 0; c < C; ++c) out[c] = mu[c] * xt[c] + (S(1) - mu[c]) * (xs ? xs[c] : S(0));
    }
}

// Backward of token_shift_mix. Saved from forward: x, x_prev. dx (T,B,C) +=, dmu (C) +=,
// dx_prev (B,C) += unless null (the carried x, whether given or zero, reaches xm_0
// through 1 − μ). x_t reaches xm_t through μ and xm_{t+1} through (1 − μ). Threads take
// contiguous slabs of the T·B rows (streaming, as one thread would); dmu is summed per
// slab and the slabs added in order, so the result does not depend on the thread count.
template <class S>
void token_shift_mix_backward(In<S> dxm, In<S> x, const S* x_prev, In<S> mu, View<S> dx,
                              View<S> dmu, S* dx_prev = nullptr) {
  const index_t T = x.dim(0), B = x.dim(1), C = x.dim(2), rows = T * B;
  constexpr index_t kSlabs = 8;
  const index_t slabs = rows * C > (1 << 16) ? std::min(kSlabs, rows) : 1;
  std::vector<S> partial(slabs * C, S(0));  // (slabs,C) dμ per slab; once per call
#pragma omp parallel for if (slabs > 1)
  for (index_t slab = 0; slab < slabs; ++slab) {
    S* part = partial.data() + slab * C;
    for (index_t r = slab * rows / slabs; r < (slab + 1) * rows / slabs; ++r) {
      const index_t t = r / B, b = r % B;
      const S* g = dxm.data + r * C;
      const S* gn = t + 1 < T ? dxm.data + (r + B) * C : nullptr;
      const S* xt = x.data + r * C;
      const S* xs = t > 0 ? x.data + (r - B) * C : x_prev ? x_prev + b * C : nullptr;
      S* d = dx.data + r * C;
      for (index_t c = 0; c < C; ++c) {
        d[c] += mu[c] * g[c] + (gn ? (S(1) - mu[c]) * gn[c] : S(0));
        part[c] += g[c] * (xt[c] - (xs ? xs[c] : S(0)));
      }
      if (t == 0 && dx_prev)  // row b of step 0: one thread
        for (index_t c = 0; c < C; ++c) dx_prev[b * C + c] += (S(1) - mu[c]) * g[c];
    }
  }
  for (index_t slab = 0; slab < slabs; ++slab)
    for (index_t c = 0; c < C; ++c) dmu[c] += partial[slab * C + c];
}

// RWKV-4's layer-dependent time-mix init: μ_c = (c/C)^e.
template <class S>
void rwkv_time_mix_init(View<S> mu, double exponent, double offset = 0) {
  const index_t C = mu.numel();
  for (index_t c = 0; c < C; ++c) mu[c] = S(std::pow(double(c) / double(C), exponent) + offset);
}

// How deep a layer sits, as RWKV-4's init recipe measures it.
struct RwkvDepth {
  double ratio_0_to_1;        // l / (L − 1), 0 for a single layer
  double ratio_1_to_almost0;  // 1 − l / L
  explicit RwkvDepth(LayerPosition p)
      : ratio_0_to_1(p.count > 1 ? double(p.index) / double(p.count - 1) : 0.0),
        ratio_1_to_almost0(1.0 - double(p.index) / double(p.count)) {}
};

// ------------------------------------------------------------------ time mix

template <class S>
class RwkvChannelMix;

template <class S>
class RwkvTimeMix {
 public:
  using Scalar = S;
  struct Config {
    MTP_DESIGNATED_ONLY;
    index_t channels = 0;  // C = I
  };
  static constexpr std::string_view kName = "rwkv";
  static constexpr std::string_view kDescription = "RWKV-4 time mix, decay on w (per channel)";
  // The fraction of a channel's sums kept per step at decay d: e^w = exp(−exp(d)). What
  // reports turn into the views' time scales, 1/(1 − retention).
  static double retention(double d) { return std::exp(-std::exp(d)); }

  // Model-level hooks (docs/contract.md §7): RWKV-4's block has the channel mix as its
  // FFN, ln0 on the embeddings, the time mix named "att" and RWKV-4's init, so that
  // RWKV-4 state dicts load by name.
  using ModelFfn = RwkvChannelMix<S>;
  // It has token-shift mixes (time_mix_k/v/r; its channel mix time_mix_k/r), which
  // --per-perspective shift gives a row per perspective (core/head_model.hpp).
  static constexpr bool kTokenShift = true;
  static void configure_model(ModelConfig& c) {
    c.mixer_name = "att";
    c.ln0 = true;
    c.init = ModelInit::rwkv4;
  }

  static Config model_config(index_t width) { return {.channels = width}; }
  // A random state (B,K,4C) made one a history can produce: the denominators b > 0, and
  // the last x the sequence's, the same in each of its K rows (the layer checks and the
  // CUDA parity tests draw random carried states).
  static void make_valid_state(View<S> s) {
    const index_t K = s.dim(1), Sw = s.dim(2), C = Sw / 4, rows = s.dim(0) * K;
    for (index_t row = 0; row < rows; ++row)
      for (index_t c = 0; c < C; ++c) {
        s[row * Sw + C + c] = std::abs(s[row * Sw + C + c]) + S(0.5);
        s[row * Sw + 3 * C + c] = s[(row / K * K) * Sw + 3 * C + c];
      }
  }
  // C from the shape of a parameter file: key.weight is (C, C).
  template <class ShapeOf>
  static Config infer_config(ShapeOf&& shape_of) {
    const std::vector<index_t> w = shape_of("key.weight");
    MTP_CHECK(w.size() == 2 && w[0] == w[1] && w[0] > 0, "key.weight has shape {}, expected (C,C)",
              shape_str(w));
    return {.channels = w[0]};
  }

  explicit RwkvTimeMix(const Config& cfg) : C_(cfg.channels) {
    MTP_CHECK(C_ > 0, "rwkv needs channels > 0, got {}", C_);
  }

  index_t input_width() const { return C_; }
  index_t pre_width() const { return 3 * C_; }
  index_t recur_width() const { return C_; }
  index_t state_width() const { return 4 * C_; }
  // Floats per (t, b) kept for backward, with backward's scratch: the token-shift mixes
  // (3C), σ(r), σ(r) ⊙ A and two scratch rows (4C), and the scan state (K,4C) every
  // kChunk-th step. For memory estimates.
  index_t activation_floats_per_token(int K) const {
    return 7 * C_ + (4 * index_t(K) * C_ + kChunk - 1) / kChunk;
  }
  index_t decay_width() const { return C_; }
  index_t output_width() const { return C_; }

  void declare(ParamStore<S>& store, const std::string& prefix) {
    mix_k_ = store.add(prefix + "time_mix_k", {C_});
    mix_v_ = store.add(prefix + "time_mix_v", {C_});
    mix_r_ = store.add(prefix + "time_mix_r", {C_});
    first_ = store.add(prefix + "time_first", {C_});
    key_ = store.add(prefix + "key.weight", {C_, C_}, ParamRole::base, true);
    value_ = store.add(prefix + "value.weight", {C_, C_}, ParamRole::base, true);
    receptance_ = store.add(prefix + "receptance.weight", {C_, C_}, ParamRole::base, true);
    output_ = store.add(prefix + "output.weight", {C_, C_}, ParamRole::base, true);
  }
  void bind(ParamStore<S>& store) {
    store.bind(mix_k_, mix_v_, mix_r_, first_, key_, value_, receptance_, output_);
  }

  // RWKV-4's recipe for training from scratch: decays spread from −5 (slow: w = −e⁻⁵) to 3 (fast)
  // across channels, more so in deep layers; time_first log 0.3 with a zigzag; time
  // mixes rising with the channel index; key, receptance and output zero, value
  // orthogonal.
  void init(RngSequence& rng, View<S> base_decay, LayerPosition pos) {
    const RwkvDepth depth(pos);
    for (index_t c = 0; c < C_; ++c) {
      const double frac = C_ > 1 ? double(c) / double(C_ - 1) : 0.0;
      base_decay[c] = S(-5 + 8 * std::pow(frac, 0.7 + 1.3 * depth.ratio_0_to_1));
      first_.value[c] = S(std::log(0.3) + 0.5 * double((c + 1) % 3 - 1));
    }
    rwkv_time_mix_init(mix_k_.value, depth.ratio_1_to_almost0);
    rwkv_time_mix_init(mix_v_.value, depth.ratio_1_to_almost0, 0.3 * depth.ratio_0_to_1);
    rwkv_time_mix_init(mix_r_.value, 0.5 * depth.ratio_1_to_almost0);
    for (Param<S>* p : {&key_, &receptance_, &output_})
      std::fill(p->value.begin(), p->value.end(), S(0));
    orthogonal_init(value_.value, 1.0, rng);
  }

  // x (T,B,C), s0 (B,K,4C) or empty → P = [k | v | r] planes, each (T,B,C). Saves the
  // mixed inputs and the carried last x for backward.
  void pre_forward(const PreIn<S>& in, View<S> P) {
    const CView<S> x = in.x;
    const index_t T = x.dim(0), B = x.dim(1), C = C_, TBC = T * B * C;
    save_shift_state(in.s0, B);
    const Shape act{T, B, C};
    for (Tensor<S>* t : {&xk_, &xv_, &xr_}) t->resize(act);
    const S* xp = has_x_prev_ ? x_prev_.data() : nullptr;
    token_shift_mix<S>(x, xp, mix_k_.value, xk_.view());
    token_shift_mix<S>(x, xp, mix_v_.value, xv_.view());
    token_shift_mix<S>(x, xp, mix_r_.value, xr_.view());
    linear_forward<S>(xk_, key_.value, nullptr, View<S>(P.data, act));
    linear_forward<S>(xv_, value_.value, nullptr, View<S>(P.data + TBC, act));
    linear_forward<S>(xr_, receptance_.value, nullptr, View<S>(P.data + 2 * TBC, act));
  }

  // x (T,B,C), P = [k | v | r], decay (K,C), s0 (B,K,4C) or empty → Yk = wkv (T,B,K,C),
  // sT (B,K,4C) or empty. s0 and sT may alias. Saves the state entering every
  // kChunk-th step (scan_forward).
  void recur_forward(const RecurIn<S>& in, const RecurOut<S>& out) {
    scan_forward<false>(in.x, in.P, in.decay, in.s0, {}, out.Yk, out.sT, out.Yk.dim(2));
  }
  // The same scan with the aggregation inside: α (T,B,K) → A = Σ_k α_k wkv^k (T,B,C);
  // the K outputs never leave registers.
  void recur_mixed_forward(const RecurIn<S>& in, CView<S> alpha, const MixedOut<S>& out) {
    scan_forward<true>(in.x, in.P, in.decay, in.s0, alpha, out.A, out.sT, alpha.dim(2));
  }

  // A (T,B,C), P → y (T,B,C) = W_o(σ(r) ⊙ A). Saves σ(r) and σ(r) ⊙ A.
  void post_forward(const PostIn<S>& in, View<S> y) {
    const CView<S> A = in.A, P = in.P;
    const index_t n = A.numel();
    const S* r = P.data + 2 * n;
    sr_.resize(A.shape);
    ra_.resize(A.shape);
#pragma omp parallel for simd if (n > (1 << 16))
    for (index_t i = 0; i < n; ++i) {
      sr_[i] = sigmoid(r[i]);
      ra_[i] = sr_[i] * A[i];
    }
    linear_forward<S>(ra_, output_.value, nullptr, y);
  }
  // Saved from forward: σ(r), σ(r) ⊙ A, A. dy (T,B,C) → dA overwritten, dP_r +=, dW_o +=.
  void post_backward(const PostIn<S>& in, const PostGrad<S>& g) {
    const CView<S> dy = g.dy, A = in.A;
    const View<S> dA = g.dA, dP = g.dP;
    const index_t n = A.numel();
    dra_.resize(A.shape);
    linear_backward<S>(dy, ra_, output_.value, dra_.view(), output_.grad, nullptr);
    S* dr = dP.data + 2 * n;
#pragma omp parallel for simd if (n > (1 << 16))
    for (index_t i = 0; i < n; ++i) {
      dA[i] = dra_[i] * sr_[i];
      dr[i] += dra_[i] * A[i] * sr_[i] * (S(1) - sr_[i]);
    }
  }

  // Saved from forward: the state entering every kChunk-th step, and w. dYk (T,B,K,C),
  // dsT (B,K,4C) or empty → dP_k, dP_v +=, ddecay (K,C) +=, dtime_first +=, and where
  // wanted ds0's [a | b | p] planes +=; dsT's last-x plane goes to dx_{T−1}. (Yk is
  // recomputed, not read.)
  void recur_backward(const RecurIn<S>& in, CView<S>, const RecurGrad<S>& g) {
    scan_backward<false>(g.dYk, in.P, {}, g.dsT, g.dP, g.ddecay, {}, g.ds0, g.dx, g.dYk.dim(2));
  }
  // Saved from forward: the same. dA (T,B,C), α (T,B,K), dsT → the same gradients, and
  // dα (T,B,K) = ⟨dA_t, wkv^k_t⟩ overwritten.
  void recur_mixed_backward(const RecurIn<S>& in, CView<S> alpha, const MixedGrad<S>& g) {
    scan_backward<true>(g.dA, in.P, alpha, g.dsT, g.dP, g.ddecay, g.dalpha, g.ds0, g.dx,
                        alpha.dim(2));
  }

  // Saved from forward: x, the mixed inputs, the carried last x. dP = [dk | dv | dr] →
  // dx +=, the projection and time-mix gradients +=, and where wanted the carried last
  // x's: ds0's last-x plane of perspective 0, the copy forward read.
  void pre_backward(const PreIn<S>& in, const PreGrad<S>& g) {
    const CView<S> dP = g.dP, x = in.x;
    const View<S> dx = g.dx;
    const index_t T = x.dim(0), B = x.dim(1), C = C_, TBC = T * B * C;
    const Shape act{T, B, C};
    dxm_.resize(act);
    const S* xp = has_x_prev_ ? x_prev_.data() : nullptr;
    const struct {
      const Tensor<S>& xm;
      Param<S>& weight;
      Param<S>& mix;
      index_t plane;
    } parts[] = {{xk_, key_, mix_k_, 0}, {xv_, value_, mix_v_, 1}, {xr_, receptance_, mix_r_, 2}};
    S* dx_prev = nullptr;
    if (!g.ds0.empty()) {
      dx_prev_.resize({B, C});
      dx_prev_.zero();
      dx_prev = dx_prev_.data();
    }
    for (const auto& part : parts) {
      const CView<S> dproj(dP.data + part.plane * TBC, act);
      linear_backward<S>(dproj, part.xm, part.weight.value, dxm_.view(), part.weight.grad, nullptr);
      token_shift_mix_backward<S>(dxm_, x, xp, part.mix.value, dx, part.mix.grad, dx_prev);
    }
    if (dx_prev) {
      const index_t K = g.ds0.dim(1);
      for (index_t b = 0; b < B; ++b)
        for (index_t c = 0; c < C; ++c) g.ds0[b * K * 4 * C + 3 * C + c] += dx_prev[b * C + c];
    }
  }

 private:
  // One pass over (b, t) that reads k_t, v_t once and updates all K perspectives. It
  // writes wkv^k_t to out = Yk (T,B,K,C), or with kMixed accumulates α_{t,k} wkv^k_t
  // into out = A (T,B,C). Saves the state entering every kChunk-th step: backward
  // recomputes the steps between, which costs less than writing and reading the states
  // of every step (16 bytes per (t, b, k, c)).
  template <bool kMixed>
  void scan_forward(CView<S> x, CView<S> P, CView<S> decay, CView<S> s0, CView<S> alpha,
                    View<S> out, View<S> sT, index_t K) {
    const index_t T = out.dim(0), B = out.dim(1), C = C_;
    const S* kp = P.data;
    const S* vp = P.data + T * B * C;
    w_.resize({K, C});
    w_split_.resize({K, 2 * C});
    for (index_t k = 0; k < K; ++k)
      for (index_t c = 0; c < C; ++c) {
        const double w = -std::exp(double(decay[k * C + c]));
        w_[k * C + c] = w;
        // Decays above ~88 make w overflow float: −1e30 decays as completely (e^w = 0)
        // and keeps anchor + n·w finite.
        const double w_kept = std::max(w, -1e30);
        const S hi = S(w_kept);
        w_split_[k * 2 * C + c] = hi;
        w_split_[k * 2 * C + C + c] = S(w_kept - double(hi));
      }
    const index_t chunks = (T + kChunk - 1) / kChunk;
    checkpoint_.resize({chunks, B, K, 4 * C});
    state_.resize({B, K, 4 * C});
    load_initial_state(s0, B, K);
    const S* u = first_.value.data;
#pragma omp parallel for if (B > 1 && T * K * C > 4096)
    for (index_t b = 0; b < B; ++b)
      for (index_t t = 0; t < T; ++t) {
        const S* kt = kp + (t * B + b) * C;  // read once for all K perspectives
        const S* vt = vp + (t * B + b) * C;
        if (t % kChunk == 0) save_checkpoint(t / kChunk, b, B, K);
        if constexpr (kMixed) std::fill_n(out.data + (t * B + b) * C, C, S(0));
        for (index_t k = 0; k < K; ++k) {
          const index_t row = (t * B + b) * K + k;
          const Planes st = planes(state_.data() + (b * K + k) * 4 * C);
          const S* w_hi = w_split_.data() + k * 2 * C;
          const S* w_lo = w_hi + C;
          S* y = kMixed ? out.data + (t * B + b) * C : out.data + row * C;
          const S al = kMixed ? alpha.data[row] : S(1);
#pragma omp simd
          for (index_t c = 0; c < C; ++c) {
            const S p = wkv_exponent(st.anchor[c], st.n[c], w_hi[c], w_lo[c]);
            const ScalePair<S> s_out = rescale<S>((p - kt[c]) - u[c]);
            const S wkv =
                (s_out.old * st.a[c] + s_out.fresh * vt[c]) / (s_out.old * st.b[c] + s_out.fresh);
            if constexpr (kMixed)
              y[c] += al * wkv;
            else
              y[c] = wkv;
            wkv_advance(st, c, w_hi[c], w_lo[c], kt[c], vt[c], st, c);
          }
        }
      }
    if (!sT.empty())
      for (index_t b = 0; b < B; ++b)
        for (index_t k = 0; k < K; ++k) {
          const Planes from = planes(state_.data() + (b * K + k) * 4 * C);
          const S* w_hi = w_split_.data() + k * 2 * C;
          const S* w_lo = w_hi + C;
          S* st = sT.data + (b * K + k) * 4 * C;
          std::copy_n(from.a, 2 * C, st);  // a | b
          for (index_t c = 0; c < C; ++c)
            st[2 * C + c] = wkv_exponent(from.anchor[c], from.n[c], w_hi[c], w_lo[c]);
          std::copy_n(x.data + ((T - 1) * B + b) * C, C, st + 3 * C);
        }
  }

  // Backward of scan_forward. Saved: the state entering every kChunk-th step, and w.
  // Per sequence, chunk by chunk from the last: the chunk's entering states are
  // recomputed from its checkpoint into a small buffer that stays in cache, then the
  // adjoints run back over it. wkv_t is recomputed from the states (to rounding), not
  // read. The outputs' gradient is dout = dYk (T,B,K,C), or with kMixed dA (T,B,C) and
  // α: ∂L/∂wkv^k_t = α_{t,k} dA_t, and dα (T,B,K) = ⟨dA_t, wkv^k_t⟩ is written.
  //
  // With A_t = a_t e^{p_t}, B_t the true sums entering step t and D_t = B_t + e^{u+k_t},
  // the adjoints gA_t = ∂L/∂A_t, gB_t run backwards: gA_t = gy_t / D_t + e^w gA_{t+1},
  // gB_t = −gy_t y_t / D_t + e^w gB_{t+1}. They are carried in the state's own scale,
  // ga_t = gA_t e^{p_t}: then every factor is one the forward already forms,
  //   e^{p_t} / D_t = o·inv_d, e^{u+k_t} / D_t = f·inv_d          (o, f = the output's pair)
  //   e^{w + p_t − p_{t+1}} = O, e^{k_t − p_{t+1}} = F               (O, F = the advance's)
  // so the adjoints need no exponent of their own: per step one exp for (o, f) here and
  // one for (O, F) in the chunk's recomputation, which stores the pair. ga stays bounded
  // by Σ|gy| (b ≥ 1 after the first step, see load_initial_state, and
  // p_s ≥ p_t + (s − t)w).
  //
  // The carried state enters and leaves in the same scale. A gradient of the final state
  // (dsT's [a | b | p | last x]) starts the adjoints at (ga, gb) = (dsT_a, dsT_b), and
  // its p plane, net of the shift of a and b with p, reaches whatever p_T was formed
  // from (seed_final_state_grad). At the end (ga, gb) are the gradients of the initial
  // a, b; that of its p is ga·a_0 + gb·b_0 (A_0 = a_0 e^{p_0}).
  template <bool kMixed>
  void scan_backward(CView<S> dout, CView<S> P, CView<S> alpha, CView<S> dsT, View<S> dP,
                     View<S> ddecay, View<S> dalpha, View<S> ds0, View<S> dx, index_t K) {
    const index_t T = dout.dim(0), B = dout.dim(1), C = C_;
    const S* kp = P.data;
    const S* vp = P.data + T * B * C;
    S* dk = dP.data;
    S* dv = dP.data + T * B * C;
    const S* u = first_.value.data;
    adjoint_.resize({B, K, 2 * C});      // ga, gb
    param_grads_.resize({B, K, 2 * C});  // ∂L/∂w, ∂L/∂u per sequence
    chunk_state_.resize({B, kChunk, K, 4 * C});
    chunk_adv_.resize({B, kChunk, K, 2 * C});
    adjoint_.zero();
    param_grads_.zero();
    if (!dsT.empty()) seed_final_state_grad(dsT, T, B, K, dk, dx, ds0);
    const index_t chunks = (T + kChunk - 1) / kChunk;
#pragma omp parallel for if (B > 1 && T * K * C > 4096)
    for (index_t b = 0; b < B; ++b)
      for (index_t j = chunks - 1; j >= 0; --j) {
        const index_t t0 = j * kChunk, t1 = std::min(T, t0 + kChunk);
        recompute_chunk(j, b, B, K, t0, t1, kp, vp);
        for (index_t t = t1 - 1; t >= t0; --t) {
          const S* kt = kp + (t * B + b) * C;
          const S* vt = vp + (t * B + b) * C;
          S* dkt = dk + (t * B + b) * C;
          S* dvt = dv + (t * B + b) * C;
          for (index_t k = 0; k < K; ++k) {
            const index_t row = (t * B + b) * K + k;
            const index_t local = ((b * kChunk + (t - t0)) * K + k);
            const Planes st = planes(chunk_state_.data() + local * 4 * C);
            const S* aa = st.a;
            const S* bb = st.b;
            const S* w_hi = w_split_.data() + k * 2 * C;
            const S* w_lo = w_hi + C;
            const S* adv_old = chunk_adv_.data() + local * 2 * C;
            const S* adv_fresh = adv_old + C;
            const S* gout = kMixed ? dout.data + (t * B + b) * C : dout.data + row * C;
            const S al = kMixed ? alpha.data[row] : S(1);
            S* ga = adjoint_.data() + (b * K + k) * 2 * C;
            S* gb = ga + C;
            S* gw = param_grads_.data() + (b * K + k) * 2 * C;
            S* gu = gw + C;
            S dot = 0;
#pragma omp simd reduction(+ : dot)
            for (index_t c = 0; c < C; ++c) {
              const S p = wkv_exponent(st.anchor[c], st.n[c], w_hi[c], w_lo[c]);
              const ScalePair<S> s_out = rescale<S>((p - kt[c]) - u[c]);
              const ScalePair<S> s_adv{adv_old[c], adv_fresh[c]};
              const S inv_d = S(1) / (s_out.old * bb[c] + s_out.fresh);
              const S y = (s_out.old * aa[c] + s_out.fresh * vt[c]) * inv_d;
              const S gy = kMixed ? al * gout[c] : gout[c];
              if constexpr (kMixed) dot += gout[c] * y;
              const S direct = gy * s_out.fresh * inv_d;  // gy_t e^{u+k_t} / D_t
              // gA_{t+1} e^{k_t} and gB_{t+1} e^{k_t}: the state update's share.
              const S gak = ga[c] * s_adv.fresh, gbk = gb[c] * s_adv.fresh;
              dvt[c] += direct + gak;
              dkt[c] += direct * (vt[c] - y) + gak * vt[c] + gbk;
              gu[c] += direct * (vt[c] - y);
              gw[c] += (ga[c] * aa[c] + gb[c] * bb[c]) * s_adv.old;  // e^w (gA A + gB B)
              const S f_out = gy * s_out.old * inv_d;                // gy_t e^{p_t} / D_t
              ga[c] = f_out + ga[c] * s_adv.old;
              gb[c] = -f_out * y + gb[c] * s_adv.old;
            }
            if constexpr (kMixed) dalpha.data[row] = dot;
          }
        }
      }
    if (!ds0.empty())
      for (index_t i = 0; i < B * K; ++i) {
        const S* ga = adjoint_.data() + i * 2 * C;
        const S* gb = ga + C;
        const Planes s0 = planes(checkpoint_.data() + i * 4 * C);  // as loaded, anchor = p_0
        S* d = ds0.data + i * 4 * C;
        for (index_t c = 0; c < C; ++c) {
          d[c] += ga[c];
          d[C + c] += gb[c];
          d[2 * C + c] += ga[c] * s0.a[c] + gb[c] * s0.b[c];
        }
      }
    // w = −exp(decay): ∂w/∂decay = w.
    for (index_t k = 0; k < K; ++k)
      for (index_t c = 0; c < C; ++c) {
        double gw = 0;
        for (index_t b = 0; b < B; ++b) gw += param_grads_[(b * K + k) * 2 * C + c];
        ddecay[k * C + c] += S(gw * w_[k * C + c]);
      }
    for (index_t i = 0; i < B * K; ++i)
      for (index_t c = 0; c < C; ++c) first_.grad[c] += param_grads_[i * 2 * C + C + c];
  }

  // dsT (B,K,4C) into the backward's starting point, before any chunk is recomputed
  // (state_ still holds the final [a | b | anchor | n]). The final state is a_T = A_T e^{−p_T},
  // b_T likewise, p_T = anchor + n·w: the adjoints start at (dsT_a, dsT_b), and
  // g_p = dsT_p − dsT_a a_T − dsT_b b_T goes to what p_T was formed from: the key of
  // step T−1−n (dk +=, n steps of w) or, when no key has won since (n = T), the initial
  // p (ds0 +=, T steps of w). The last-x plane is x_{T−1} in every perspective: dx +=.
  void seed_final_state_grad(CView<S> dsT, index_t T, index_t B, index_t K, S* dk, View<S> dx,
                             View<S> ds0) {
    const index_t C = C_;
    MTP_CHECK(T < index_t(kMaxCount),
              "rwkv: a final-state gradient needs T < {} steps per call, got {}",
              index_t(kMaxCount), T);
    for (index_t b = 0; b < B; ++b)
      for (index_t k = 0; k < K; ++k) {
        const index_t i = b * K + k;
        const S* d = dsT.data + i * 4 * C;
        const Planes fin = planes(state_.data() + i * 4 * C);
        S* ga = adjoint_.data() + i * 2 * C;
        S* gw = param_grads_.data() + i * 2 * C;
        for (index_t c = 0; c < C; ++c) {
          ga[c] = d[c];
          ga[C + c] = d[C + c];
          const S gp = d[2 * C + c] - d[c] * fin.a[c] - d[C + c] * fin.b[c];
          const index_t n = index_t(fin.n[c]);
          gw[c] += gp * S(n);
          if (n < T)
            dk[((T - 1 - n) * B + b) * C + c] += gp;
          else if (!ds0.empty())
            ds0[i * 4 * C + 2 * C + c] += gp;
          dx[((T - 1) * B + b) * C + c] += d[3 * C + c];
        }
      }
  }

  // A perspective's state row (4C) as its planes [a | b | anchor | n].
  struct Planes {
    S *a, *b, *anchor, *n;
  };
  Planes planes(S* row) const {
    return {row, row + C_, row + 2 * C_, row + 3 * C_};
  }

  // One step of channel c: (a, b, p) with e^w applied and (k, v) added, rescaled to the
  // new maximum exponent p' = max(p + w, k), written to channel c of `to` (which may be
  // `from`). Returns the pair (e^{w+p−p'}, e^{k−p'}). p' is k (anchor k, n = 0) or
  // p + w (n + 1); n is rebased into the anchor before float stops counting exactly.
  static ScalePair<S> wkv_advance(const Planes& from, index_t c, S w_hi, S w_lo, S k, S v,
                                  const Planes& to, index_t c_to) {
    const S n1 = from.n[c] + S(1);
    const S wp = wkv_exponent(from.anchor[c], n1, w_hi, w_lo);
    const S d = wp - k;
    const ScalePair<S> s = rescale<S>(d);
    const S a = from.a[c], b = from.b[c], anchor = from.anchor[c];
    to.a[c_to] = s.old * a + s.fresh * v;
    to.b[c_to] = s.old * b + s.fresh;
    const bool fresh = !(d > 0);
    const bool rebase = n1 >= kMaxCount;
    const S kept = rebase ? wp : anchor;
    to.anchor[c_to] = fresh ? k : kept;
    to.n[c_to] = (fresh | rebase) ? S(0) : n1;  // | not ||: no branch, so it vectorises
    return s;
  }

  // The running state of sequence b, all K perspectives, into checkpoint j.
  void save_checkpoint(index_t j, index_t b, index_t B, index_t K) {
    const index_t C = C_, at = (j * B + b) * K;
    std::copy_n(state_.data() + b * K * 4 * C, K * 4 * C, checkpoint_.data() + at * 4 * C);
  }

  // The states entering steps t0..t1−1 of sequence b, recomputed from checkpoint j into
  // chunk_state_ (b, t − t0, k, 4C), each step reading its slot and writing the next, and
  // each step's advance pair into chunk_adv_, so that backward spends no exp on it. The
  // state after the chunk's last step is not needed: it goes to state_.
  void recompute_chunk(index_t j, index_t b, index_t B, index_t K, index_t t0, index_t t1,
                       const S* kp, const S* vp) {
    const index_t C = C_, at = (j * B + b) * K, first = b * kChunk * K;
    std::copy_n(checkpoint_.data() + at * 4 * C, K * 4 * C, chunk_state_.data() + first * 4 * C);
    for (index_t t = t0; t < t1; ++t) {
      const S* kt = kp + (t * B + b) * C;
      const S* vt = vp + (t * B + b) * C;
      const index_t local = first + (t - t0) * K;
      S* next =
          t + 1 == t1 ? state_.data() + b * K * 4 * C : chunk_state_.data() + (local + K) * 4 * C;
      for (index_t k = 0; k < K; ++k) {
        const Planes from = planes(chunk_state_.data() + (local + k) * 4 * C);
        const Planes to = planes(next + k * 4 * C);
        const S* w_hi = w_split_.data() + k * 2 * C;
        const S* w_lo = w_hi + C;
        S* old = chunk_adv_.data() + (local + k) * 2 * C;
        S* fresh = old + C;
#pragma omp simd
        for (index_t c = 0; c < C; ++c) {
          const ScalePair<S> s = wkv_advance(from, c, w_hi[c], w_lo[c], kt[c], vt[c], to, c);
          old[c] = s.old;
          fresh[c] = s.fresh;
        }
      }
    }
  }

  void save_shift_state(CView<S> s0, index_t B) {
    has_x_prev_ = !s0.empty();
    if (!has_x_prev_) return;
    x_prev_.resize({B, C_});
    const index_t K = s0.dim(1);
    for (index_t b = 0; b < B; ++b)
      std::copy_n(s0.data + b * K * 4 * C_ + 3 * C_, C_, x_prev_.data() + b * C_);
  }
  // (a, b, p) from s0 (B,K,4C) [a | b | p | last x] as [a | b | anchor p | n = 0], or
  // "no history": a = b = 0, p = −1e38. A channel whose a = b = 0 (an all-zero state
  // means no history too) gets p = −1e38 whatever s0 says: the sums are 0 either way,
  // and so the first key becomes the maximum and b = 1 after it, which backward's bound
  // on its adjoints relies on.
  void load_initial_state(CView<S> s0, index_t B, index_t K) {
    for (index_t i = 0; i < B * K; ++i) {
      S* st = state_.data() + i * 4 * C_;
      if (s0.empty()) {
        std::fill_n(st, 2 * C_, S(0));
        std::fill_n(st + 2 * C_, C_, S(kWkvNoHistory));
      } else {
        std::copy_n(s0.data + i * 4 * C_, 3 * C_, st);
        for (index_t c = 0; c < C_; ++c)  // see above: then p is that of no history
          if (st[c] == S(0) && st[C_ + c] == S(0)) st[2 * C_ + c] = S(kWkvNoHistory);
      }
      std::fill_n(st + 3 * C_, C_, S(0));
    }
  }

  // Steps between state checkpoints: a chunk's recomputed states and advance pairs, 24
  // bytes per (t, k, c), stay in L2 for one sequence (16·3·256·24 B = 288 kB at K = 3,
  // C = 256).
  static constexpr index_t kChunk = 16;
  // n is exact in S up to 2^24 (float); rebasing at 2^20 costs one rounding per 2^20 steps.
  static constexpr S kMaxCount = S(1 << 20);

  index_t C_;
  Param<S> mix_k_, mix_v_, mix_r_, first_, key_, value_, receptance_, output_;
  Tensor<S> x_prev_;  // (B,C) carried last x of the previous chunk
  bool has_x_prev_ = false;
  Tensor<S> dx_prev_;       // (B,C) its gradient, when ds0 is wanted
  Tensor<S> xk_, xv_, xr_;  // (T,B,C) token-shift mixed inputs
  Tensor<double> w_;        // (K,C) −exp(decay)
  Tensor<S> w_split_;       // (K,2C) w = w_hi + w_lo, as [w_hi | w_lo]
  Tensor<S> state_;         // (B,K,4C) running [a | b | anchor | n]
  Tensor<S> checkpoint_;    // (T/kChunk,B,K,4C) the state entering every kChunk-th step
  Tensor<S> chunk_state_;   // (B,kChunk,K,4C) backward: a chunk's recomputed states
  Tensor<S> chunk_adv_;     // (B,kChunk,K,2C) and the advance pairs (O, F)
  Tensor<S> sr_, ra_;       // (T,B,C) σ(r), σ(r) ⊙ A
  Tensor<S> dra_, dxm_;     // (T,B,C) scratch
  Tensor<S> adjoint_;       // (B,K,2C) ga, gb
  Tensor<S> param_grads_;   // (B,K,2C) ∂L/∂w, ∂L/∂u before the reduction over b
};

// ------------------------------------------------------------------ channel mix

// RWKV-4's channel mix, the FFN of an RWKV block (width C, hidden 4C):
//   xk = μ_k⊙x + (1−μ_k)⊙x̄,  xr = μ_r⊙x + (1−μ_r)⊙x̄        token shift, x̄_0 = 0 or the
//                                                          carried last x (state (B,C))
//   y = σ(W_r xr) ⊙ W_v relu(W_k xk)²
// Params: time_mix_k, time_mix_r (C), key.weight (4C,C), receptance.weight (C,C),
// value.weight (C,4C).
template <class S>
class RwkvChannelMix {
 public:
  using Scalar = S;
  static constexpr std::string_view kDescription = "channel mix";

  RwkvChannelMix(index_t width, LayerPosition pos) : C_(width), pos_(pos) {}

  void declare(ParamStore<S>& store, const std::string& prefix) {
    mix_k_ = store.add(prefix + "time_mix_k", {C_});
    mix_r_ = store.add(prefix + "time_mix_r", {C_});
    key_ = store.add(prefix + "key.weight", {4 * C_, C_}, ParamRole::base, true);
    receptance_ = store.add(prefix + "receptance.weight", {C_, C_}, ParamRole::base, true);
    value_ = store.add(prefix + "value.weight", {C_, 4 * C_}, ParamRole::base, true);
  }
  void bind(ParamStore<S>& store) { store.bind(mix_k_, mix_r_, key_, receptance_, value_); }

  // RWKV-4: time mixes (c/C)^(1 − l/L); key orthogonal with gain 2; receptance and
  // value zero.
  void init(RngSequence& rng) {
    const RwkvDepth depth(pos_);
    rwkv_time_mix_init(mix_k_.value, depth.ratio_1_to_almost0);
    rwkv_time_mix_init(mix_r_.value, depth.ratio_1_to_almost0);
    orthogonal_init(key_.value, 2.0, rng);
    for (Param<S>* p : {&receptance_, &value_}) std::fill(p->value.begin(), p->value.end(), S(0));
  }

  index_t state_width() const { return C_; }
  // Floats per (t, b) kept for backward, with backward's scratch: the mixes, σ(r), the
  // value projection (4C), W_k xk and its square (8C), scratch (6C).
  index_t activation_floats_per_token() const { return 18 * C_; }

  // x (T,B,C), state (B,C) or empty → y (T,B,C); the state, when given, holds the last x
  // of the previous chunk and receives this chunk's. Saves the mixed inputs, relu(W_k
  // xk), its square, σ(W_r xr), W_v k² and the carried x.
  void forward(CView<S> x, View<S> y, View<S> state = {}) {
    const index_t T = x.dim(0), B = x.dim(1), C = C_;
    const Shape act{T, B, C}, wide{T, B, 4 * C};
    for (Tensor<S>* t : {&xk_, &xr_, &sr_, &kv_}) t->resize(act);
    for (Tensor<S>* t : {&kh_, &k2_}) t->resize(wide);
    has_x_prev_ = !state.empty();
    if (has_x_prev_) {
      x_prev_.resize({B, C});
      std::copy(state.begin(), state.end(), x_prev_.data());
      std::copy_n(x.data + (T - 1) * B * C, B * C, state.data);
    }
    const S* xp = has_x_prev_ ? x_prev_.data() : nullptr;
    token_shift_mix<S>(x, xp, mix_k_.value, xk_.view());
    token_shift_mix<S>(x, xp, mix_r_.value, xr_.view());
    linear_forward<S>(xk_, key_.value, nullptr, kh_.view());
    const index_t nw = kh_.numel();
#pragma omp parallel for simd if (nw > (1 << 16))
    for (index_t i = 0; i < nw; ++i) {
      const S r = std::max(kh_[i], S(0));
      k2_[i] = r * r;
    }
    linear_forward<S>(k2_, value_.value, nullptr, kv_.view());
    linear_forward<S>(xr_, receptance_.value, nullptr, sr_.view());
    const index_t n = sr_.numel();
#pragma omp parallel for simd if (n > (1 << 16))
    for (index_t i = 0; i < n; ++i) {
      sr_[i] = sigmoid(sr_[i]);
      y[i] = sr_[i] * kv_[i];
    }
  }

  // Saved from forward: see forward. dy (T,B,C) → dx (T,B,C) overwritten; parameter
  // gradients accumulate.
  void backward(CView<S> x, CView<S> dy, View<S> dx) {
    const index_t n = sr_.numel(), nw = kh_.numel();
    dact_.resize(sr_.shape());
    dwide_.resize(kh_.shape());
    dxm_.resize(sr_.shape());
    // d(W_v k²) = dy ⊙ σ(r)
    for (index_t i = 0; i < n; ++i) dact_[i] = dy[i] * sr_[i];
    linear_backward<S>(dact_, k2_, value_.value, dwide_.view(), value_.grad, nullptr);
    for (index_t i = 0; i < nw; ++i) dwide_[i] *= S(2) * std::max(kh_[i], S(0));
    std::fill(dx.begin(), dx.end(), S(0));
    const S* xp = has_x_prev_ ? x_prev_.data() : nullptr;
    linear_backward<S>(dwide_, xk_, key_.value, dxm_.view(), key_.grad, nullptr);
    token_shift_mix_backward<S>(dxm_, x, xp, mix_k_.value, dx, mix_k_.grad);
    // d(receptance pre-activation) = dy ⊙ W_v k² ⊙ σ'(r)
    for (index_t i = 0; i < n; ++i) dact_[i] = dy[i] * kv_[i] * sr_[i] * (S(1) - sr_[i]);
    linear_backward<S>(dact_, xr_, receptance_.value, dxm_.view(), receptance_.grad, nullptr);
    token_shift_mix_backward<S>(dxm_, x, xp, mix_r_.value, dx, mix_r_.grad);
  }

 private:
  index_t C_;
  LayerPosition pos_;
  Param<S> mix_k_, mix_r_, key_, receptance_, value_;
  Tensor<S> xk_, xr_, sr_, kv_;  // (T,B,C)
  Tensor<S> kh_, k2_;            // (T,B,4C) W_k xk and relu(W_k xk)²
  Tensor<S> x_prev_;             // (B,C) the carried last x of the previous chunk
  bool has_x_prev_ = false;
  Tensor<S> dact_, dxm_, dwide_;  // scratch
};

}  // namespace mtp
