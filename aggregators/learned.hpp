// Learned aggregator: a softmax selector over the K perspectives, computed from the
// layer input (docs/contract.md §5.3).
//
//   ℓ_t = W_s x_t + b_s + σ_t ⊙ ε_t                                       (T,B,K)
//         σ_t = noise (fixed), or softplus(W_n x_t) (learned, noisy gating);
//         ε ~ N(0,1), training only: evaluation is noise-free
//   α_t = softmax(ℓ_t), or with top-k the softmax over the k largest logits and 0
//         elsewhere (sparse, MoE-style)
//   Agg = Σ_k α^k_t y^k_t                                                  (T,B,D)
//
// Params: selector.weight (K,I), selector.bias (K), and with learned noise
// selector.noise.weight (K,I). At K = 1, α ≡ 1 and the selector's gradients are exactly
// zero. The noise comes from a counter-based generator keyed by (seed, layer's noise
// stream, step) with counter (step << 40) + (t·B + b)·K + k, so it is reproducible,
// independent of threading, and needs no saving: backward draws the same ε again. The
// draws depend on the batch shape (B), not only on (t, b, k).
#pragma once

#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "mtp/core/cell.hpp"
#include "mtp/core/gemm.hpp"
#include "mtp/core/ops/activations.hpp"
#include "mtp/core/ops/linear.hpp"
#include "mtp/core/ops/softmax.hpp"

namespace mtp {

enum class NoiseMode { fixed, learned };

template <class S>
class LearnedAggregator {
 public:
  using Scalar = S;
  struct Options {
    MTP_DESIGNATED_ONLY;
    double noise = 0.0;  // σ with NoiseMode::fixed, training only
    NoiseMode noise_mode = NoiseMode::fixed;
    int top_k = 0;  // keep the k largest logits; 0 (or ≥ K) keeps all
  };
  static constexpr std::string_view kName = "learned";
  static constexpr std::string_view kDescription = "softmax selector on the layer input";
  // The variants the layer checks run in training (experiments/layer_checks.hpp).
  static std::vector<Options> check_options(int K) {
    std::vector<Options> v{{.noise = 0.5}, {.noise_mode = NoiseMode::learned}};
    if (K >= 3) v.push_back({.noise = 0.3, .top_k = 2});
    return v;
  }
  static constexpr int kMaxK = 64;

  LearnedAggregator(int K, index_t input_width, const Options& opt)
      : K_(K), I_(input_width), opt_(opt) {
    MTP_CHECK(opt.noise >= 0 && std::isfinite(opt.noise), "selector noise must be >= 0, got {}",
              opt.noise);
    MTP_CHECK(opt.top_k >= 0, "selector top-k must be >= 0, got {}", opt.top_k);
    MTP_CHECK(K <= kMaxK, "the learned selector supports up to {} perspectives, got {}", kMaxK, K);
  }

  void declare(ParamStore<S>& store, const std::string& prefix) {
    weight_ = store.add(prefix + "selector.weight", {K_, I_}, ParamRole::perspective);
    bias_ = store.add(prefix + "selector.bias", {K_}, ParamRole::perspective);
    if (learned_noise())
      noise_w_ = store.add(prefix + "selector.noise.weight", {K_, I_}, ParamRole::perspective);
  }
  void bind(ParamStore<S>& store) {
    store.bind(weight_, bias_);
    if (learned_noise()) store.bind(noise_w_);
  }
  // Small weights, zero bias: the selector starts close to the mean and learns to choose.
  // The noise weights start at zero, σ = softplus(0) = ln 2, as in noisy top-k gating
  // (Shazeer et al. 2017).
  void init(RngSequence& rng) {
    const double a = 0.1 / std::sqrt(double(I_));
    for (S& w : weight_.value) w = S(rng.uniform(-a, a));
    for (S& b : bias_.value) b = S(0);
    if (learned_noise())
      for (S& w : noise_w_.value) w = S(0);
  }

  // x (T,B,I) → α (T,B,K), saved with the noise pre-activation W_n x (learned noise)
  // and the key of ε. At K = 1, α ≡ 1: a softmax over one logit is 1 whatever the logit
  // and its noise, so the selector's GEMMs are skipped and its gradients are exactly 0.
  CView<S> weights_forward(CView<S> x, const StepContext& ctx, std::uint64_t noise_stream) {
    const index_t T = x.dim(0), B = x.dim(1), K = K_, TB = T * B;
    alpha_.resize({T, B, K});
    if (K == 1) {
      std::fill_n(alpha_.data(), TB, S(1));
      return alpha_.view();
    }
    linear_forward<S>(x, weight_.value, bias_.value.data, alpha_.view());  // logits in place
    noisy_ = ctx.training && (learned_noise() || opt_.noise > 0);
    noise_key_ = {ctx.seed, noise_stream, ctx.step};
    if (noisy_) {
      if (learned_noise()) {
        noise_pre_.resize({T, B, K});
        linear_forward<S>(x, noise_w_.value, nullptr, noise_pre_.view());
      }
      for (index_t i = 0; i < TB * K; ++i)
        alpha_[i] += noise_scale(i) * S(epsilon(std::uint64_t(i)));
    }
    const bool sparse = opt_.top_k > 0 && opt_.top_k < K;
#pragma omp parallel for if (TB * K > (1 << 14))
    for (index_t r = 0; r < TB; ++r) {
      S* al = alpha_.data() + r * K;
      if (sparse) keep_top_k(al);
      softmax_row(al, al, K);
    }
    return alpha_.view();
  }

  // Saved from weights_forward: α, x (and W_n x). dα (T,B,K), x → dx (T,B,I) +=, selector
  // gradients +=. Logits dropped by top-k have α = 0 and so receive no gradient.
  void weights_backward(CView<S> x, const WeightsGrad<S>& g) {
    if (K_ == 1) return;  // see weights_forward
    dlogits_.resize(alpha_.shape());
    std::copy(g.dalpha.begin(), g.dalpha.end(), dlogits_.data());
    selector_backward(x, g.dx);
  }

  // Yk (T,B,K,D), x (T,B,I) → A (T,B,D) = Σ_k α_k Yk. Saves what weights_forward saves.
  void forward(const AggIn<S>& in, View<S> A, const StepContext& ctx, std::uint64_t noise_stream) {
    const CView<S> Yk = in.Yk, x = in.x;
    const index_t TB = Yk.dim(0) * Yk.dim(1), K = K_, D = Yk.dim(3);
    weights_forward(x, ctx, noise_stream);
    if (K == 1) {
      std::copy(Yk.begin(), Yk.end(), A.data);
      return;
    }
#pragma omp parallel for if (TB * K * D > (1 << 16))
    for (index_t r = 0; r < TB; ++r) {
      const S* al = alpha_.data() + r * K;
      S* a = A.data + r * D;
      for (index_t d = 0; d < D; ++d) a[d] = 0;
      for (index_t k = 0; k < K; ++k) {
        const S* y = Yk.data + (r * K + k) * D;
        for (index_t d = 0; d < D; ++d) a[d] += al[k] * y[d];
      }
    }
  }

  // Saved from forward: α, Yk, x (and W_n x). dA (T,B,D) → dYk (T,B,K,D) = α_k dA,
  // overwritten; dα = ⟨dA, Yk⟩ goes through weights_backward's path.
  void backward(const AggIn<S>& in, const AggGrad<S>& g) {
    const CView<S> Yk = in.Yk, dA = g.dA;
    const View<S> dYk = g.dYk;
    const index_t TB = Yk.dim(0) * Yk.dim(1), K = K_, D = Yk.dim(3);
    if (K == 1) {  // see weights_forward
      std::copy(dA.begin(), dA.end(), dYk.data);
      return;
    }
    dlogits_.resize(alpha_.shape());
#pragma omp parallel for if (TB * K * D > (1 << 16))
    for (index_t r = 0; r < TB; ++r) {
      const S* al = alpha_.data() + r * K;
      const S* da = dA.data + r * D;
      S* dal = dlogits_.data() + r * K;
      for (index_t k = 0; k < K; ++k) {
        const S* y = Yk.data + (r * K + k) * D;
        S* dy = dYk.data + (r * K + k) * D;
        S dot = 0;
        for (index_t d = 0; d < D; ++d) {
          dot += da[d] * y[d];
          dy[d] = al[k] * da[d];
        }
        dal[k] = dot;
      }
    }
    selector_backward(in.x, g.dx);
  }

  // Selection weights α (T,B,K) of the last forward.
  CView<S> selection() const {
    return alpha_.view();
  }

 private:
  bool learned_noise() const {
    return opt_.noise_mode == NoiseMode::learned;
  }

  // dlogits_ holds dα (T,B,K); turns it into dℓ in place and accumulates dx (T,B,I) and
  // the selector's gradients. Saved from forward: α, x (and W_n x).
  void selector_backward(CView<S> x, View<S> dx) {
    const index_t TB = x.dim(0) * x.dim(1), K = K_, I = I_;
#pragma omp parallel for if (TB * K * I > (1 << 16))
    for (index_t r = 0; r < TB; ++r) {
      const S* al = alpha_.data() + r * K;
      S* dal = dlogits_.data() + r * K;
      softmax_row_backward(al, dal, dal, K);
      // dx_r += Σ_k dℓ_rk W_s[k]: K axpys while the row is in cache, cheaper than a
      // GEMM with a reduction of only K.
      S* dxr = dx.data + r * I;
      for (index_t k = 0; k < K; ++k) {
        const S g = dal[k];
        const S* wk = weight_.value.data + k * I;
#pragma omp simd
        for (index_t i = 0; i < I; ++i) dxr[i] += g * wk[i];
      }
    }
    matmul(dlogits_.data(), true, x.data, false, weight_.grad.data, K, I, TB, true);
    sum_rows_accumulate(dlogits_.data(), TB, K, bias_.grad.data);
    if (noisy_ && learned_noise()) {
      // ℓ += softplus(n) ε with n = W_n x: ∂ℓ/∂n = ε σ(n).
      dnoise_.resize(alpha_.shape());
      for (index_t i = 0; i < TB * K; ++i)
        dnoise_[i] = dlogits_[i] * S(epsilon(std::uint64_t(i))) * sigmoid(noise_pre_[i]);
      matmul(dnoise_.data(), false, noise_w_.value.data, false, dx.data, TB, I, K, true);
      matmul(dnoise_.data(), true, x.data, false, noise_w_.grad.data, K, I, TB, true);
    }
  }

  // ε for logit i of the last forward's step.
  double epsilon(std::uint64_t i) const {
    return CounterRng(noise_key_.seed, noise_key_.stream).normal((noise_key_.step << 40) + i);
  }
  // σ for logit i: the fixed scale, or softplus(W_n x) (computed stably).
  S noise_scale(index_t i) const {
    if (!learned_noise()) return S(opt_.noise);
    const S n = noise_pre_[i];
    return n > S(0) ? n + std::log1p(exp_fast(-n)) : std::log1p(exp_fast(n));
  }

  // Sets all but the top_k largest logits of a row to −∞ (ties keep the lower index).
  void keep_top_k(S* logits) const {
    S kept[kMaxK];
    bool keep[kMaxK] = {};
    for (int j = 0; j < opt_.top_k; ++j) {
      int best = -1;
      for (int k = 0; k < K_; ++k)
        if (!keep[k] && (best < 0 || logits[k] > logits[best])) best = k;
      keep[best] = true;
      kept[best] = logits[best];
    }
    for (int k = 0; k < K_; ++k)
      logits[k] = keep[k] ? kept[k] : -std::numeric_limits<S>::infinity();
  }

  struct NoiseKey {
    std::uint64_t seed = 0, stream = 0, step = 0;
  };

  int K_;
  index_t I_;
  Options opt_;
  Param<S> weight_, bias_, noise_w_;
  Tensor<S> alpha_;      // (T,B,K)
  Tensor<S> noise_pre_;  // (T,B,K) W_n x, learned noise only
  Tensor<S> dlogits_, dnoise_;
  bool noisy_ = false;
  NoiseKey noise_key_;
};

}  // namespace mtp
