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

#include <memory>

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

// C (M,N) = A (M,Kd) · op(B) (Kd,N) [+ bias (N)] [+ C] for one B reused by many products
// of the same shape: a recurrent cell's W_hh, once per step. In float, pack() reorders B
// once into the blocked layout oneDNN's kernel reads, which matmul() would otherwise
// redo on every call; in double it only records B for matmul(). B and bias must stay
// unchanged between pack() and the last run(). Not thread-safe: one per user.
template <class S>
class PackedMatmul {
 public:
  void pack(const S* B, bool trans_b, const S* bias, index_t M, index_t N, index_t Kd,
            bool accumulate) {
    B_ = B, bias_ = bias, trans_b_ = trans_b, M_ = M, N_ = N, Kd_ = Kd, acc_ = accumulate;
  }
  void run(const S* A, S* C) const { matmul(A, false, B_, trans_b_, C, M_, N_, Kd_, acc_, bias_); }

 private:
  const S* B_ = nullptr;
  const S* bias_ = nullptr;
  bool trans_b_ = false, acc_ = false;
  index_t M_ = 0, N_ = 0, Kd_ = 0;
};

template <>
class PackedMatmul<float> {
 public:
  PackedMatmul();
  ~PackedMatmul();
  PackedMatmul(PackedMatmul&&) noexcept;
  PackedMatmul& operator=(PackedMatmul&&) noexcept;
  void pack(const float* B, bool trans_b, const float* bias, index_t M, index_t N, index_t Kd,
            bool accumulate);
  void run(const float* A, float* C) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mtp
