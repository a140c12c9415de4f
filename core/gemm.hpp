// Matrix multiply, the one op every layer is built on.
//
//   C (M,N) = op(A) (M,Kd) · op(B) (Kd,N)  [+ bias (N), broadcast over rows]  [+ C]
//
// Row-major, contiguous. op(A) = A, or A^T when A is stored (Kd,M); likewise B. With
// accumulate the product is added to C (parameter gradients accumulate), otherwise
// C is overwritten.
//
// float runs on oneDNN's matmul primitive: one primitive per distinct shape, created
// the first time the shape is seen and executed from a per-thread cache afterwards
// (the oneDNN-examples pattern: create once, execute many). double runs on Eigen;
// it exists for gradient checks and references. matmul_reference is the Eigen path
// for float, which the oneDNN path is tested against.
#pragma once

#include "mtp/core/tensor.hpp"

namespace mtp {

void matmul(const float* A, bool trans_a, const float* B, bool trans_b, float* C, index_t M,
            index_t N, index_t Kd, bool accumulate = false, const float* bias = nullptr);
void matmul(const double* A, bool trans_a, const double* B, bool trans_b, double* C, index_t M,
            index_t N, index_t Kd, bool accumulate = false, const double* bias = nullptr);

void matmul_reference(const float* A, bool trans_a, const float* B, bool trans_b, float* C,
                      index_t M, index_t N, index_t Kd, bool accumulate = false,
                      const float* bias = nullptr);

// How many oneDNN primitives this thread has created (for tests of the cache).
index_t matmul_primitives_created();

}  // namespace mtp
