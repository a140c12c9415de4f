// Functions that nvcc compiles for the device and g++ compiles for the host: the
// per-element bodies of the CUDA kernels are written once, with MTP_HD, so that the
// host-driven tests run exactly the code the kernels run (tests/test_cuda_bodies.cpp).
//
// Only what both compilers accept: C math functions (their device versions come with
// nvcc), no std:: containers, no exceptions.
#pragma once

#include <math.h>

#include <cstdint>

#if defined(__CUDACC__)
#define MTP_HD __host__ __device__
#else
#define MTP_HD
#endif
// Fully unrolled loops over k keep the per-perspective arrays in registers (device only).
#if defined(__CUDA_ARCH__)
#define MTP_UNROLL _Pragma("unroll")
#else
#define MTP_UNROLL
#endif

namespace mtp {

using index_t = std::int64_t;

namespace cuda {

MTP_HD inline float hd_exp(float x) {
  return ::expf(x);
}
MTP_HD inline double hd_exp(double x) {
  return ::exp(x);
}
MTP_HD inline float hd_log1p(float x) {
  return ::log1pf(x);
}
MTP_HD inline double hd_log1p(double x) {
  return ::log1p(x);
}
MTP_HD inline float hd_tanh(float x) {
  return ::tanhf(x);
}
MTP_HD inline double hd_tanh(double x) {
  return ::tanh(x);
}

template <class S>
MTP_HD inline S hd_sigmoid(S x) {
  return S(1) / (S(1) + hd_exp(-x));
}
// softplus(x) = log(1 + e^x), without overflow for large x.
template <class S>
MTP_HD inline S hd_softplus(S x) {
  return x > S(0) ? x + hd_log1p(hd_exp(-x)) : hd_log1p(hd_exp(x));
}
MTP_HD inline double hd_max(double a, double b) {
  return a > b ? a : b;
}

// Philox4x32-10 exactly as core/rng.hpp's CounterRng: normal(seed, stream, index) is
// CounterRng(seed, stream).normal(index), so the device draws the selector noise the
// CPU draws (to the last bit of the Philox words; the double log and cos of the
// Box-Muller step may differ by an ulp between libm and CUDA's math library).
struct PhiloxBlock {
  std::uint32_t r[4];
};
MTP_HD inline PhiloxBlock philox4x32_10(std::uint64_t index, std::uint64_t stream,
                                        std::uint64_t seed) {
  std::uint32_t c0 = std::uint32_t(index), c1 = std::uint32_t(index >> 32);
  std::uint32_t c2 = std::uint32_t(stream), c3 = std::uint32_t(stream >> 32);
  std::uint32_t k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = std::uint64_t{0xD2511F53u} * c0;
    const std::uint64_t p1 = std::uint64_t{0xCD9E8D57u} * c2;
    const auto hi0 = std::uint32_t(p0 >> 32), lo0 = std::uint32_t(p0);
    const auto hi1 = std::uint32_t(p1 >> 32), lo1 = std::uint32_t(p1);
    const std::uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0, c1 = lo1, c2 = n2, c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}
MTP_HD inline double philox_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  const PhiloxBlock b = philox4x32_10(index, stream, seed);
  const double u1 = (double(b.r[0]) + 1.0) * 0x1p-32, u2 = (double(b.r[1]) + 1.0) * 0x1p-32;
  return ::sqrt(-2.0 * ::log(u1)) * ::cos(2.0 * 3.14159265358979323846 * u2);
}

}  // namespace cuda
}  // namespace mtp
