// The device side of the CUDA backend as the layer programs (program.hpp) see it:
// RAII device buffers, one cuBLAS handle, kernel launches, copies. Nothing here
// includes a CUDA header, so host code compiled by the C++ compiler uses it as is.
//
// Errors: allocation, copies to and from the host, and device selection throw
// mtp::Error at once. Kernel launches and GEMMs run inside per-step loops, so they
// only record the first failure; finish() synchronises and throws it, once per
// forward or backward.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include "mtp/core/cuda/launch.hpp"
#include "mtp/core/error.hpp"
#include "mtp/core/tensor.hpp"

struct cublasContext;

namespace mtp::cuda {

// How many CUDA devices are visible (0 when none, or no usable driver).
int device_count();
// Throws mtp::Error naming why no device can be used (e.g. "no CUDA device is visible
// (cudaGetDeviceCount: no CUDA-capable device is detected)").
void require_device();

struct DeviceInfo {
  std::string name;
  double peak_bandwidth_gbs = 0;  // 2 × memory clock × bus width / 8
  int sm_count = 0;
};
DeviceInfo device_info();

void* device_alloc(std::size_t bytes);  // throws mtp::Error
void device_free(void* p) noexcept;
void copy_to_device(void* dst, const void* src, std::size_t bytes);  // throws
void copy_to_host(void* dst, const void* src, std::size_t bytes);    // throws
int copy_on_device(void* dst, const void* src, std::size_t bytes);   // async; cudaError_t
int zero_on_device(void* dst, std::size_t bytes);                    // async; cudaError_t

// An owning device array. resize() only grows, and does not keep the contents.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(index_t n) { resize(n); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(o.n_) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  ~DeviceBuffer() { device_free(p_); }

  void resize(index_t n) {
    if (n <= n_) return;
    device_free(std::exchange(p_, nullptr));
    n_ = 0;
    p_ = static_cast<T*>(device_alloc(std::size_t(n) * sizeof(T)));
    n_ = n;
  }
  T* data() const { return p_; }
  index_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  index_t n_ = 0;
};

// The executor of the layer programs on the GPU (HostExec in host_exec.hpp is its
// CPU twin, running the same bodies in loops). One cuBLAS handle, the default stream.
class DeviceExec {
 public:
  template <class T>
  using Buffer = DeviceBuffer<T>;

  DeviceExec();  // throws when no device is usable
  ~DeviceExec();
  DeviceExec(const DeviceExec&) = delete;
  DeviceExec& operator=(const DeviceExec&) = delete;

  // C (M,N) = op(A) (M,Kd) · op(B) (Kd,N) [+ C], row-major, as mtp::matmul.
  void gemm(const float* A, bool ta, const float* B, bool tb, float* C, index_t M, index_t N,
            index_t Kd, bool accumulate);
  void gemm(const double* A, bool ta, const double* B, bool tb, double* C, index_t M, index_t N,
            index_t Kd, bool accumulate);

  template <class Body>
  void run(const Body& body) {
    note_cuda(launch(body), "kernel launch");
  }
  template <class T>
  void copy(T* dst, const T* src, index_t n) {
    note_cuda(copy_on_device(dst, src, std::size_t(n) * sizeof(T)), "device copy");
  }
  template <class T>
  void zero(T* dst, index_t n) {
    note_cuda(zero_on_device(dst, std::size_t(n) * sizeof(T)), "device memset");
  }
  template <class T>
  void upload(T* dst, const T* host, index_t n) {
    copy_to_device(dst, host, std::size_t(n) * sizeof(T));
  }
  template <class T>
  void download(T* host, const T* src, index_t n) {
    copy_to_host(host, src, std::size_t(n) * sizeof(T));
  }

  // Waits for the device and throws the first failure since the last finish, naming
  // `what` (e.g. "forward").
  void finish(const char* what);

 private:
  void note_cuda(int status, const char* where) {
    if (status != 0 && cuda_error_ == 0) cuda_error_ = status, where_ = where;
  }
  cublasContext* blas_ = nullptr;
  int cuda_error_ = 0, blas_error_ = 0;
  const char* where_ = "";
};

}  // namespace mtp::cuda
