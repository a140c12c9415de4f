// Agg = Σ_k w_k y^k with weights that do not depend on the input: the shared core of
// the mean and fixed aggregators.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "mtp/core/cell.hpp"

namespace mtp {

// Yk (T,B,K,D), w (K) → A (T,B,D).
template <class S>
void weighted_sum_forward(In<S> Yk, const std::vector<S>& w, View<S> A) {
  const index_t TB = Yk.dim(0) * Yk.dim(1), K = Yk.dim(2), D = Yk.dim(3);
#pragma omp parallel for if (TB * K * D > (1 << 16))
  for (index_t r = 0; r < TB; ++r) {
    S* a = A.data + r * D;
    for (index_t d = 0; d < D; ++d) a[d] = 0;
    for (index_t k = 0; k < K; ++k) {
      const S* y = Yk.data + (r * K + k) * D;
      for (index_t d = 0; d < D; ++d) a[d] += w[k] * y[d];
    }
  }
}

// dA (T,B,D), w (K) → dYk (T,B,K,D) = w_k dA, overwritten.
template <class S>
void weighted_sum_backward(In<S> dA, const std::vector<S>& w, View<S> dYk) {
  const index_t TB = dYk.dim(0) * dYk.dim(1), K = dYk.dim(2), D = dYk.dim(3);
#pragma omp parallel for if (TB * K * D > (1 << 16))
  for (index_t r = 0; r < TB; ++r)
    for (index_t k = 0; k < K; ++k) {
      S* dy = dYk.data + (r * K + k) * D;
      const S* da = dA.data + r * D;
      for (index_t d = 0; d < D; ++d) dy[d] = w[k] * da[d];
    }
}

// An aggregator with constant weights and no parameters; the mean and fixed
// aggregators differ only in how they choose w.
template <class S>
class ConstantWeightAggregator {
 public:
  using Scalar = S;

  void declare(ParamStore<S>&, const std::string&) {}
  void bind(ParamStore<S>&) {}
  void init(RngSequence&) {}

  // Yk (T,B,K,D) → A (T,B,D); x and the noise key are unused.
  void forward(const AggIn<S>& in, View<S> A, const StepContext&, std::uint64_t) {
    weighted_sum_forward(in.Yk, w_, A);
  }
  // dA (T,B,D) → dYk (T,B,K,D) overwritten; x receives no gradient.
  void backward(const AggIn<S>&, const AggGrad<S>& g) { weighted_sum_backward(g.dA, w_, g.dYk); }
  // x (T,B,I) → α (T,B,K) = w_k for every (t, b), for a cell that mixes in its scan.
  CView<S> weights_forward(In<S> x, const StepContext&, std::uint64_t) {
    const index_t TB = x.dim(0) * x.dim(1), K = index_t(w_.size());
    alpha_.resize({x.dim(0), x.dim(1), K});
    for (index_t r = 0; r < TB; ++r) std::copy(w_.begin(), w_.end(), alpha_.data() + r * K);
    return alpha_.view();
  }
  // Constant weights take no gradient: dα is dropped.
  void weights_backward(In<S>, const WeightsGrad<S>&) {}

  const std::vector<S>& weights() const { return w_; }

 protected:
  explicit ConstantWeightAggregator(std::vector<S> w) : w_(std::move(w)) {}
  std::vector<S> w_;
  Tensor<S> alpha_;  // (T,B,K), mixed scans only
};

}  // namespace mtp
