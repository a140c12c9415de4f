// Fully connected layer, PyTorch layout: W (Out,In), y = x W^T + b.
#pragma once

#include "mtp/core/gemm.hpp"

namespace mtp {

// db (N) += Σ_r dy[r,:] for dy (R,N): the bias gradient of a row-broadcast bias.
template <class S>
void sum_rows_accumulate(const S* dy, index_t R, index_t N, S* db) {
  for (index_t r = 0; r < R; ++r) {
    const S* row = dy + r * N;
#pragma omp simd
    for (index_t n = 0; n < N; ++n) db[n] += row[n];
  }
}

// y (R,Out) = x (R,In) · W^T + b.   b may be null.
template <class S>
void linear_forward(In<S> x, In<S> W, const std::type_identity_t<S>* b, View<S> y) {
  const index_t out = W.dim(0), in = W.dim(1), R = x.numel() / in;
  matmul(x.data, false, W.data, true, y.data, R, out, in, false, b);
}

// Saved from forward: x. dx (R,In) = dy W, overwritten (skipped when dx is empty);
// dW (Out,In) += dy^T x; db (Out) += Σ_r dy (skipped when db is null).
template <class S>
void linear_backward(In<S> dy, In<S> x, In<S> W, View<S> dx, View<S> dW,
                     std::type_identity_t<S>* db) {
  const index_t out = W.dim(0), in = W.dim(1), R = x.numel() / in;
  if (!dx.empty()) matmul(dy.data, false, W.data, false, dx.data, R, in, out, false);
  matmul(dy.data, true, x.data, false, dW.data, out, in, R, true);
  if (db) sum_rows_accumulate(dy.data, R, out, db);
}

}  // namespace mtp
