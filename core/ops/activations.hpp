// Pointwise nonlinearities: scalar helpers used inside fused cell loops, and the
// GELU op of the MLP with its backward.
//
// For float, exp / sigmoid / tanh are written as plain arithmetic so that the
// compiler vectorises the loops that call them (libm's scalar tanhf/expm1f took a
// third of a training step). For double they are the exact std:: functions, so the
// gradient checks and references see exact math.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

#include "mtp/core/tensor.hpp"

namespace mtp {

// e^x for float: x = n·ln2 + r with |r| ≤ ln2/2 (Cody-Waite split of ln2), e^r by its
// degree-7 Taylor polynomial (truncation < 1e-8 relative), 2^n through the exponent
// bits. Relative error about 2e-7 on [-87.3, 88]; +inf is not produced (the input is
// clamped at 88) and below -87.3, where e^x is under float's smallest normal, the
// result is exactly 0 (stable scans start from exp(-1e38) and must see 0).
inline float exp_fast(float x) {
  const bool underflow = x < -87.3f;
  // Comparisons, not fmin/fmax: they vectorise, and a NaN passes through.
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.0f ? 88.0f : x;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693145751953125f, kLn2Lo = 1.42860682030941723e-6f;
  constexpr float kRound = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
  const float n = (x * kLog2e + kRound) - kRound;
  const float r = (x - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // A NaN input makes n NaN, whose conversion to int is undefined: convert 0 instead;
  // p is NaN then, so the NaN still comes out.
  const float n_int = n == n ? n : 0.0f;
  const auto bits = static_cast<std::uint32_t>(static_cast<std::int32_t>(n_int) + 127) << 23;
  return underflow ? 0.0f : p * std::bit_cast<float>(bits);
}
inline double exp_fast(double x) {
  return std::exp(x);
}

template <class S>
inline S sigmoid(S x) {
  return S(1) / (S(1) + exp_fast(-x));
}

// tanh(x) = 2σ(2x) − 1: absolute error about 2e-7 in float.
inline float tanh_fast(float x) {
  return 2.0f / (1.0f + exp_fast(-2.0f * x)) - 1.0f;
}
inline double tanh_fast(double x) {
  return std::tanh(x);
}

// GELU, tanh approximation (GPT-2 / llm.c): y = x/2 · (1 + tanh(√(2/π)(x + 0.044715 x³))).
template <class S>
void gelu_forward(In<S> x, View<S> y) {
  const S c = std::sqrt(S(2) / S(M_PI));
  const index_t n = x.numel();
#pragma omp parallel for simd if (n > (1 << 16))
  for (index_t i = 0; i < n; ++i) {
    const S v = x[i];
    y[i] = S(0.5) * v * (S(1) + tanh_fast(c * (v + S(0.044715) * v * v * v)));
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
    const S th = tanh_fast(c * (v + S(0.044715) * v * v * v));
    const S dinner = c * (S(1) + S(3) * S(0.044715) * v * v);
    dx[i] = dy[i] * (S(0.5) * (S(1) + th) + S(0.5) * v * (S(1) - th * th) * dinner);
  }
}

}  // namespace mtp
