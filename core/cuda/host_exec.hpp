// The CPU twin of DeviceExec (device.hpp): the same interface, the bodies run in plain
// loops over their indices and the GEMMs on mtp::matmul. A layer program instantiated
// with it is the CUDA layer with every kernel replaced by the loop that calls the very
// same body, so the host-driven tests (tests/test_cuda_bodies.cpp) check the kernels'
// math, their index mapping and the programs' GEMMs against the CPU cells without a GPU.
#pragma once

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "mtp/core/gemm.hpp"

namespace mtp::cuda {

// New space is filled with NaN (floating point) or a nonzero pattern: device memory
// starts undefined, so a program that reads a buffer before writing it must fail the
// host tests too, not read a convenient zero.
template <class T>
class HostBuffer {
 public:
  void resize(index_t n) {
    if (n <= index_t(v_.size())) return;
    if constexpr (std::is_floating_point_v<T>)
      v_.assign(n, std::numeric_limits<T>::quiet_NaN());
    else
      v_.assign(n, T(0x5A));
  }
  T* data() { return v_.data(); }
  const T* data() const { return v_.data(); }
  index_t size() const { return index_t(v_.size()); }

 private:
  std::vector<T> v_;
};

class HostExec {
 public:
  template <class T>
  using Buffer = HostBuffer<T>;

  template <class S>
  void gemm(const S* A, bool ta, const S* B, bool tb, S* C, index_t M, index_t N, index_t Kd,
            bool accumulate) {
    matmul(A, ta, B, tb, C, M, N, Kd, accumulate);
  }
  template <class Body>
  void run(const Body& body) {
    const index_t n = body.count();
    for (index_t i = 0; i < n; ++i) body(i);
  }
  template <class T>
  void copy(T* dst, const T* src, index_t n) {
    std::copy_n(src, n, dst);
  }
  template <class T>
  void zero(T* dst, index_t n) {
    std::fill_n(dst, n, T(0));
  }
  template <class T>
  void upload(T* dst, const T* host, index_t n) {
    std::copy_n(host, n, dst);
  }
  template <class T>
  void download(T* host, const T* src, index_t n) {
    std::copy_n(src, n, host);
  }
  void finish(const char*) {}
};

}  // namespace mtp::cuda
