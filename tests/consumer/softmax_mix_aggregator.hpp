// A user's own aggregator, written against mtp's installed headers only: one learned
// softmax over the K perspectives, shared by every position (no input dependence).
//
//   α = softmax(logits)                 (K)
//   A_t = Σ_k α_k Yk_t                  (T,B,D)
//
// Backward: dYk_t = α_k dA_t;  dα_k = Σ_{t,b,d} dA·Yk_k;  dlogits = α ⊙ (dα − ⟨α, dα⟩).
// Params: mix.logits (K), initialised to 0 (the mean).
#pragma once

#include <mtp/core/cell.hpp>

#include <cmath>
#include <string>
#include <string_view>
#include <vector>

namespace user {

template <class S>
class SoftmaxMixAggregator {
 public:
  using Scalar = S;
  struct Options {};
  static constexpr std::string_view kName = "softmax-mix";
  static constexpr std::string_view kDescription = "one learned softmax over K (a user's own)";

  SoftmaxMixAggregator(int K, mtp::index_t /*input_width*/, const Options&) : K_(K), alpha_(K) {}

  void declare(mtp::ParamStore<S>& store, const std::string& prefix) {
    logits_ = store.add(prefix + "mix.logits", {K_}, mtp::ParamRole::perspective);
  }
  void bind(mtp::ParamStore<S>& store) { store.bind(logits_); }
  void init(mtp::RngSequence&) { std::fill(logits_.value.begin(), logits_.value.end(), S(0)); }

  // Yk (T,B,K,D) → A (T,B,D); x and the noise key are unused.
  void forward(const mtp::AggIn<S>& in, mtp::View<S> A, const mtp::StepContext&, std::uint64_t) {
    const mtp::CView<S> Yk = in.Yk;
    S m = logits_.value[0], sum = 0;
    for (int k = 1; k < K_; ++k) m = std::max(m, logits_.value[k]);
    for (int k = 0; k < K_; ++k) sum += alpha_[k] = std::exp(logits_.value[k] - m);
    for (S& a : alpha_) a /= sum;
    const mtp::index_t D = Yk.dim(3), rows = A.numel() / D;
    for (mtp::index_t r = 0; r < rows; ++r)
      for (mtp::index_t d = 0; d < D; ++d) {
        S acc = 0;
        for (int k = 0; k < K_; ++k) acc += alpha_[k] * Yk[(r * K_ + k) * D + d];
        A[r * D + d] = acc;
      }
  }
  // Saved from forward: α. dA, Yk → dYk (overwritten), dlogits +=; x gets no gradient.
  void backward(const mtp::AggIn<S>& in, const mtp::AggGrad<S>& g) {
    const mtp::CView<S> Yk = in.Yk, dA = g.dA;
    const mtp::View<S> dYk = g.dYk;
    const mtp::index_t D = Yk.dim(3), rows = dA.numel() / D;
    std::vector<S> dalpha(K_, S(0));
    for (mtp::index_t r = 0; r < rows; ++r)
      for (int k = 0; k < K_; ++k)
        for (mtp::index_t d = 0; d < D; ++d) {
          dYk[(r * K_ + k) * D + d] = alpha_[k] * dA[r * D + d];
          dalpha[k] += dA[r * D + d] * Yk[(r * K_ + k) * D + d];
        }
    S dot = 0;
    for (int k = 0; k < K_; ++k) dot += alpha_[k] * dalpha[k];
    for (int k = 0; k < K_; ++k) logits_.grad[k] += alpha_[k] * (dalpha[k] - dot);
  }

 private:
  int K_;
  std::vector<S> alpha_;
  mtp::Param<S> logits_;
};

}  // namespace user
