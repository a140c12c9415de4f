// Central-difference gradient checking in double precision.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>

#include <gtest/gtest.h>
#include <string>
#include <vector>

#include "mtp/core/rng.hpp"
#include "mtp/core/tensor.hpp"
#include "mtp/experiments/layer_checks.hpp"

namespace mtp::test {

// Max over elements of |analytic − numeric|, divided by the largest |numeric| of the
// tensor (norm-wise relative error, robust to individual near-zero entries).
// `values` are perturbed in place and restored; `loss` recomputes from scratch. The
// default step balances truncation (O(ε²)) against rounding (O(1e-16·|L|/ε)) for losses
// of order 1–10 whose smallest gradients (selector biases) are ~1e-3.
inline double gradcheck(double* values, const double* analytic, index_t n,
                        const std::function<double()>& loss, double eps = 1e-5) {
  return exp::checks::gradient_error(values, analytic, n, loss, eps);
}

template <class S>
void fill_normal(View<S> v, std::uint64_t seed, double scale = 1.0) {
  RngSequence rng(seed, 77);
  for (S& x : v) x = S(scale * rng.normal());
}
template <class S>
void fill_normal(std::vector<S>& v, std::uint64_t seed, double scale = 1.0) {
  fill_normal(View<S>(v.data(), Shape{index_t(v.size())}), seed, scale);
}

// Σ_i a_i b_i: the loss L = <y, R> whose gradient wrt y is R.
template <class S>
double dot(const S* a, const S* b, index_t n) {
  double s = 0;
  for (index_t i = 0; i < n; ++i) s += double(a[i]) * double(b[i]);
  return s;
}

// Norm-wise relative error max|a − b| / max|b| of two tensors of the same size (a test
// failure otherwise); where b is exactly zero, a must be too (0 if so, infinity if not).
template <class A, class B>
double rel_error(const std::vector<A>& a, const std::vector<B>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  if (scale == 0) return diff == 0 ? 0.0 : INFINITY;
  return diff / scale;
}

}  // namespace mtp::test
