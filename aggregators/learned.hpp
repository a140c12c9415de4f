// Learned aggregator: a softmax selector over the K perspectives, computed from the
// layer input (DESIGN §2).
//
//   ℓ_t = W_s x_t + b_s  (+ σ_noise ε_t while training, ε ~ N(0,1))     (T,B,K)
//   α_t = softmax(ℓ_t)                                                   (T,B,K)
//   Agg = Σ_k α^k_t y^k_t                                                (T,B,D)
//
// Params: selector.weight (K,I), selector.bias (K). At K = 1, α ≡ 1 and the
// selector's gradients are exactly zero. The noise is drawn from a counter-based
// generator keyed by (seed, layer, step, t, b, k), so it is reproducible and
// independent of threading; evaluation is noise-free.
#pragma once

#include <cmath>
#include <string>
#include <string_view>

#include "mtp/core/cell.hpp"
#include "mtp/core/gemm.hpp"
#include "mtp/core/ops/linear.hpp"
#include "mtp/core/ops/softmax.hpp"

namespace mtp {

template <class S>
class LearnedAggregator {
 public:
  using Scalar = S;
  struct Options {
    double noise = 0.0;  // σ_noise, training only
  };
  static constexpr std::string_view kName = "learned";

  LearnedAggregator(int K, index_t input_width, const Options& opt)
      : K_(K), I_(input_width), opt_(opt) {
    MTP_CHECK(opt.noise >= 0 && std::isfinite(opt.noise), "selector noise must be >= 0, got {}",
              opt.noise);
  }

  void declare(ParamStore<S>& store, const std::string& prefix) {
    weight_ = store.add(prefix + "selector.weight", {K_, I_}, ParamRole::perspective);
    bias_ = store.add(prefix + "selector.bias", {K_}, ParamRole::perspective);
  }
  void bind(ParamStore<S>& store) { store.bind(weight_, bias_); }
  // Small weights, zero bias: the selector starts close to the mean and learns to choose.
  void init(RngSequence& rng) {
    const double a = 0.1 / std::sqrt(double(I_));
    for (S& w : weight_.value) w = S(rng.uniform(-a, a));
    for (S& b : bias_.value) b = S(0);
  }

  // Yk (T,B,K,D), x (T,B,I) → A (T,B,D). Saves α (T,B,K).
  void forward(CView<S> Yk, CView<S> x, View<S> A, const StepContext& ctx,
               std::uint64_t noise_stream) {
    const index_t T = Yk.dim(0), B = Yk.dim(1), K = K_, D = Yk.dim(3), TB = T * B;
    alpha_.resize({T, B, K});
    linear_forward<S>(x, weight_.value, bias_.value.data, alpha_.view());  // logits in place
    if (ctx.training && opt_.noise > 0) {
      const CounterRng rng(ctx.seed, noise_stream);
      const std::uint64_t base = ctx.step << 40;
      for (index_t i = 0; i < TB * K; ++i)
        alpha_[i] += S(opt_.noise * rng.normal(base + std::uint64_t(i)));
    }
#pragma omp parallel for if (TB * K * D > (1 << 16))
    for (index_t r = 0; r < TB; ++r) {
      S* al = alpha_.data() + r * K;
      softmax_row(al, al, K);
      S* a = A.data + r * D;
      for (index_t d = 0; d < D; ++d) a[d] = 0;
      for (index_t k = 0; k < K; ++k) {
        const S* y = Yk.data + (r * K + k) * D;
        for (index_t d = 0; d < D; ++d) a[d] += al[k] * y[d];
      }
    }
  }

  // Saved from forward: α, Yk, x. dA (T,B,D) → dYk (T,B,K,D) overwritten, dx (T,B,I) +=,
  // selector gradients +=. (σ_noise is a constant, so ε needs no saving.)
  void backward(CView<S> dA, CView<S> Yk, CView<S> x, View<S> dYk, View<S> dx) {
    const index_t T = Yk.dim(0), B = Yk.dim(1), K = K_, D = Yk.dim(3), TB = T * B;
    dlogits_.resize({T, B, K});
#pragma omp parallel for if (TB * K * D > (1 << 16))
    for (index_t r = 0; r < TB; ++r) {
      const S* al = alpha_.data() + r * K;
      const S* da = dA.data + r * D;
      S* dal = dlogits_.data() + r * K;  // dα, turned into dℓ in place below
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
      softmax_row_backward(al, dal, dal, K);
    }
    const index_t I = I_;
    matmul(dlogits_.data(), false, weight_.value.data, false, dx.data, TB, I, K, true);
    matmul(dlogits_.data(), true, x.data, false, weight_.grad.data, K, I, TB, true);
    sum_rows_accumulate(dlogits_.data(), TB, K, bias_.grad.data);
  }

  // Selection weights α (T,B,K) of the last forward.
  CView<S> selection() const {
    return alpha_.view();
  }

 private:
  int K_;
  index_t I_;
  Options opt_;
  Param<S> weight_, bias_;
  Tensor<S> alpha_;    // (T,B,K)
  Tensor<S> dlogits_;  // (T,B,K)
};

}  // namespace mtp
