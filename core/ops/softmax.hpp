// Row softmax, and softmax cross-entropy over labelled rows.
#pragma once

#include <cmath>
#include <cstdint>

#include "mtp/core/ops/activations.hpp"
#include "mtp/core/tensor.hpp"

namespace mtp {

// p (N) = softmax(x (N)), max-subtracted. p may alias x.
template <class S>
inline void softmax_row(const S* x, S* p, index_t N) {
  S mx = x[0];
  for (index_t i = 1; i < N; ++i) mx = std::max(mx, x[i]);
  S sum = 0;
#pragma omp simd reduction(+ : sum)
  for (index_t i = 0; i < N; ++i) sum += (p[i] = exp_fast(x[i] - mx));
  const S inv = S(1) / sum;
  for (index_t i = 0; i < N; ++i) p[i] *= inv;
}

// Backward of softmax_row, given the saved output p: dx = p ⊙ (dp − Σ_i p_i dp_i).
// dx may alias dp.
template <class S>
inline void softmax_row_backward(const S* p, const S* dp, S* dx, index_t N) {
  S dot = 0;
  for (index_t i = 0; i < N; ++i) dot += p[i] * dp[i];
  for (index_t i = 0; i < N; ++i) dx[i] = p[i] * (dp[i] - dot);
}

inline constexpr std::int32_t kIgnoreTarget = -1;

struct CrossEntropyStats {
  double loss_sum = 0;   // Σ over labelled rows of −log p[target]
  index_t labelled = 0;  // rows whose target is not kIgnoreTarget
  index_t correct = 0;   // labelled rows whose argmax is the target
  double mean_loss() const { return labelled ? loss_sum / double(labelled) : 0.0; }
  double accuracy() const { return labelled ? double(correct) / double(labelled) : 0.0; }
};

// logits (R,V), targets (R) → probs (R,V) (saved for backward) and the statistics.
// Rows with target kIgnoreTarget contribute nothing.
template <class S>
CrossEntropyStats cross_entropy_forward(In<S> logits, const std::int32_t* targets, View<S> probs) {
  const index_t V = logits.dim(logits.shape.rank() - 1), R = logits.numel() / V;
  CrossEntropyStats st;
  double loss = 0;
  index_t labelled = 0, correct = 0;
#pragma omp parallel for reduction(+ : loss, labelled, correct) if (R * V > (1 << 15))
  for (index_t r = 0; r < R; ++r) {
    if (targets[r] == kIgnoreTarget) continue;
    const S* x = logits.data + r * V;
    S* p = probs.data + r * V;
    softmax_row(x, p, V);
    index_t arg = 0;
    for (index_t v = 1; v < V; ++v)
      if (x[v] > x[arg]) arg = v;
    loss += -std::log(std::max(double(p[targets[r]]), 1e-300));
    labelled += 1;
    correct += (arg == targets[r]);
  }
  st.loss_sum = loss;
  st.labelled = labelled;
  st.correct = correct;
  return st;
}

// Saved from forward: probs. d(mean loss)/dlogits = (p − onehot(target)) / labelled,
// zero on unlabelled rows. dlogits overwritten; it may alias probs.
template <class S>
void cross_entropy_backward(In<S> probs, const std::int32_t* targets, index_t labelled,
                            View<S> dlogits) {
  const index_t V = probs.dim(probs.shape.rank() - 1), R = probs.numel() / V;
  const S scale = labelled ? S(1) / S(labelled) : S(0);
#pragma omp parallel for if (R * V > (1 << 15))
  for (index_t r = 0; r < R; ++r) {
    S* d = dlogits.data + r * V;
    const S* p = probs.data + r * V;
    if (targets[r] == kIgnoreTarget) {
      for (index_t v = 0; v < V; ++v) d[v] = 0;
      continue;
    }
    for (index_t v = 0; v < V; ++v) d[v] = p[v] * scale;
    d[targets[r]] -= scale;
  }
}

}  // namespace mtp
