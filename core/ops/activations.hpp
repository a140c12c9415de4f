// Pointwise nonlinearities: scalar helpers used inside fused cell loops, and the
// GELU op of the MLP with its backward.
#pragma once

#include <cmath>

#include "mtp/core/tensor.hpp"

namespace mtp {

template <class S>
inline S sigmoid(S x) {
  return S(1) / (S(1) + std::exp(-x));
}

// GELU, tanh approximation (GPT-2 / llm.c): y = x/2 · (1 + tanh(√(2/π)(x + 0.044715 x³))).
template <class S>
void gelu_forward(In<S> x, View<S> y) {
  const S c = std::sqrt(S(2) / S(M_PI));
  const index_t n = x.numel();
#pragma omp parallel for simd if (n > (1 << 16))
  for (index_t i = 0; i < n; ++i) {
    const S v = x[i];
    y[i] = S(0.5) * v * (S(1) + std::tanh(c * (v + S(0.044715) * v * v * v)));
  }
}

// Saved from forward: x. dx = dy · gelu'(x), overwritten.
template <class S>
void gelu_backward(In<S> dy, In<S> x, View<S> dx) {
  const S c = std::sqrt(S(2) / S(M_PI));
  const index_t n = x.numel();
#pragma omp parallel for simd if (n > (1 << 16))
  for (index_t i = 0; i < n; ++i) {
    const S v = x[i];
    const S th = std::tanh(c * (v + S(0.044715) * v * v * v));
    const S dinner = c * (S(1) + S(3) * S(0.044715) * v * v);
    dx[i] = dy[i] * (S(0.5) * (S(1) + th) + S(0.5) * v * (S(1) - th * th) * dinner);
  }
}

}  // namespace mtp
