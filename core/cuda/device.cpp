#include "mtp/core/cuda/device.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace mtp::cuda {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("CUDA error in {}: {}", what, cudaGetErrorString(e));
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error of a failed query
    return 0;
  }
  return n;
}

void require_device() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail("no CUDA device is visible (cudaGetDeviceCount: {})", cudaGetErrorString(e));
  }
  if (n == 0) fail("no CUDA device is visible");
}

DeviceInfo device_info() {
  require_device();
  int dev = 0, clock_khz = 0, bus_bits = 0, sms = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  check(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, dev), "memory clock");
  check(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev), "bus width");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "SM count");
  // Double data rate: two transfers per memory clock.
  return {prop.name, 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9, sms};
}

void* device_alloc(std::size_t bytes) {
  void* p = nullptr;
  if (bytes == 0) return nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail("CUDA cannot allocate {} bytes: {}", bytes, cudaGetErrorString(e));
  }
  return p;
}
void device_free(void* p) noexcept {
  if (p) cudaFree(p);
}
void copy_to_device(void* dst, const void* src, std::size_t bytes) {
  if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "copy to device");
}
void copy_to_host(void* dst, const void* src, std::size_t bytes) {
  if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "copy to host");
}
int copy_on_device(void* dst, const void* src, std::size_t bytes) {
  return bytes ? int(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice)) : 0;
}
int zero_on_device(void* dst, std::size_t bytes) {
  return bytes ? int(cudaMemsetAsync(dst, 0, bytes)) : 0;
}

DeviceExec::DeviceExec() {
  require_device();
  const cublasStatus_t s = cublasCreate(&blas_);
  if (s != CUBLAS_STATUS_SUCCESS) fail("cuBLAS cannot start: {}", cublasGetStatusString(s));
}
DeviceExec::~DeviceExec() {
  if (blas_) cublasDestroy(blas_);
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLAS gets B first.
// A row-major (R,Cols) array is a column-major (Cols,R) one with leading dimension Cols.
void DeviceExec::gemm(const float* A, bool ta, const float* B, bool tb, float* C, index_t M,
                      index_t N, index_t Kd, bool accumulate) {
  const float one = 1, beta = accumulate ? 1.f : 0.f;
  const cublasStatus_t s = cublasSgemm(
      blas_, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, int(N), int(M),
      int(Kd), &one, B, int(tb ? Kd : N), A, int(ta ? M : Kd), &beta, C, int(N));
  if (s != CUBLAS_STATUS_SUCCESS && blas_error_ == 0) blas_error_ = int(s);
}
void DeviceExec::gemm(const double* A, bool ta, const double* B, bool tb, double* C, index_t M,
                      index_t N, index_t Kd, bool accumulate) {
  const double one = 1, beta = accumulate ? 1.0 : 0.0;
  const cublasStatus_t s = cublasDgemm(
      blas_, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, int(N), int(M),
      int(Kd), &one, B, int(tb ? Kd : N), A, int(ta ? M : Kd), &beta, C, int(N));
  if (s != CUBLAS_STATUS_SUCCESS && blas_error_ == 0) blas_error_ = int(s);
}

void DeviceExec::finish(const char* what) {
  const cudaError_t sync = cudaDeviceSynchronize();
  const int cuda_error = cuda_error_, blas_error = blas_error_;
  const char* where = where_;
  cuda_error_ = blas_error_ = 0;
  if (cuda_error != 0)
    fail("CUDA error in {} ({}): {}", what, where,
         cudaGetErrorString(static_cast<cudaError_t>(cuda_error)));
  if (blas_error != 0)
    fail("cuBLAS error in {}: {}", what,
         cublasGetStatusString(static_cast<cublasStatus_t>(blas_error)));
  check(sync, what);
}

}  // namespace mtp::cuda
