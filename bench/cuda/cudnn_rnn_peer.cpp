// The cuDNN RNN peer of bench_cuda (cudnn_rnn_peer.hpp).
//
// cuDNN is loaded at run time (dlopen of libcudnn.so.9), not linked: a GPU machine
// without cuDNN must still run every other benchmark of bench_cuda, and a binary linked
// against libcudnn.so.9 would not even start there (the GPU bundle cannot carry cuDNN:
// libcudnn_adv alone is over 100 MB). The entry points keep the exact types of the
// cudnn.h this file is compiled against (decltype), so a changed signature still fails
// to compile, as a direct call would.
//
// Fair comparison with mtp's layer: mtp's DeviceExec keeps cuBLAS's default math mode
// (it never calls cublasSetMathMode), and CUBLAS_DEFAULT_MATH runs cublasSgemm in FP32
// without TF32. cuDNN's CUDNN_DEFAULT_MATH would allow TF32 tensor cores for float RNNs
// on sm_80 and newer, so the peer asks for CUDNN_FMA_MATH: FP32 FMA kernels only.
#include "cudnn_rnn_peer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <exception>
#include <vector>

#if MTP_WITH_CUDNN_PEER
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <dlfcn.h>

#include <cstdint>

#include "mtp/core/cuda/device.hpp"
#include "mtp/core/error.hpp"
#include "mtp/core/rng.hpp"
#endif

namespace mtp::cuda {

#if MTP_WITH_CUDNN_PEER
namespace {

// Every cuDNN function the peer calls, resolved from the library at run time.
#define MTP_CUDNN_FUNCTIONS(X)     \
  X(cudnnGetVersion)               \
  X(cudnnGetErrorString)           \
  X(cudnnCreate)                   \
  X(cudnnDestroy)                  \
  X(cudnnCreateTensorDescriptor)   \
  X(cudnnSetTensorNdDescriptor)    \
  X(cudnnDestroyTensorDescriptor)  \
  X(cudnnCreateDropoutDescriptor)  \
  X(cudnnSetDropoutDescriptor)     \
  X(cudnnDestroyDropoutDescriptor) \
  X(cudnnCreateRNNDescriptor)      \
  X(cudnnSetRNNDescriptor_v8)      \
  X(cudnnDestroyRNNDescriptor)     \
  X(cudnnCreateRNNDataDescriptor)  \
  X(cudnnSetRNNDataDescriptor)     \
  X(cudnnDestroyRNNDataDescriptor) \
  X(cudnnGetRNNWeightSpaceSize)    \
  X(cudnnGetRNNTempSpaceSizes)     \
  X(cudnnRNNForward)               \
  X(cudnnRNNBackwardData_v8)       \
  X(cudnnRNNBackwardWeights_v8)

struct CudnnApi {
#define MTP_CUDNN_POINTER(f) decltype(&::f) f = nullptr;
  MTP_CUDNN_FUNCTIONS(MTP_CUDNN_POINTER)
#undef MTP_CUDNN_POINTER
  // Optional: the detail behind a status (cuDNN >= 9.0); null when the library lacks it.
  decltype(&::cudnnGetLastErrorString) cudnnGetLastErrorString = nullptr;
  std::string path;   // what was loaded
  std::string error;  // why the peer cannot run; empty when it can
};

template <class F>
void resolve(void* so, const char* name, F& f, std::string& missing) {
  f = reinterpret_cast<F>(dlsym(so, name));
  if (!f && missing.empty()) missing = name;
}

CudnnApi load_cudnn() {
  CudnnApi a;
  // The soname first (LD_LIBRARY_PATH, the loader's cache), then the library CMake found
  // on the build machine.
  void* so = nullptr;
  std::string why;
  for (const char* name : {"libcudnn.so.9", MTP_CUDNN_LIBRARY_PATH}) {
    so = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (so) {
      a.path = name;
      break;
    }
    const char* e = dlerror();
    why += fmt::format("{}{}", why.empty() ? "" : "; ", e ? e : name);
  }
  if (!so) {
    a.error = fmt::format("cannot load cuDNN ({})", why);
    return a;
  }
  // Never dlclose: cuDNN's sub-libraries and their atexit handlers stay referenced until
  // the process ends.
  std::string missing;
#define MTP_CUDNN_RESOLVE(f) resolve(so, #f, a.f, missing);
  MTP_CUDNN_FUNCTIONS(MTP_CUDNN_RESOLVE)
#undef MTP_CUDNN_RESOLVE
  if (!missing.empty()) {
    a.error = fmt::format("{} lacks {} (not cuDNN 9?)", a.path, missing);
    return a;
  }
  std::string optional;
  resolve(so, "cudnnGetLastErrorString", a.cudnnGetLastErrorString, optional);
  const std::size_t v = a.cudnnGetVersion();
  if (v / 10000 != CUDNN_MAJOR)
    a.error = fmt::format("{} is cuDNN {}.{}.{}, the peer is built for cuDNN {}", a.path, v / 10000,
                          v % 10000 / 100, v % 100, CUDNN_MAJOR);
  return a;
}

const CudnnApi& api() {
  static const CudnnApi a = load_cudnn();  // once, thread-safe
  return a;
}

std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

void check(cudnnStatus_t s, const char* what) {
  if (s == CUDNN_STATUS_SUCCESS) return;
  std::string detail;
  if (api().cudnnGetLastErrorString) {
    char buf[512] = {};
    api().cudnnGetLastErrorString(buf, sizeof buf);
    detail = one_line(buf);
  }
  fail("{}: {}{}{}{}", what, api().cudnnGetErrorString(s), detail.empty() ? "" : " (", detail,
       detail.empty() ? "" : ")");
}

void check_cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so that the benchmarks after this one run
  fail("{}: {}", what, cudaGetErrorString(e));
}

// One cuDNN object (handle or descriptor), created by `Create` and destroyed by `Destroy`
// (members of CudnnApi).
template <class H, auto Create, auto Destroy>
class Owned {
 public:
  explicit Owned(const char* what) { check((api().*Create)(&h_), what); }
  ~Owned() {
    if (h_) (api().*Destroy)(h_);
  }
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  H get() const { return h_; }

 private:
  H h_ = nullptr;
};
using Handle = Owned<cudnnHandle_t, &CudnnApi::cudnnCreate, &CudnnApi::cudnnDestroy>;
using TensorDesc = Owned<cudnnTensorDescriptor_t, &CudnnApi::cudnnCreateTensorDescriptor,
                         &CudnnApi::cudnnDestroyTensorDescriptor>;
using DropoutDesc = Owned<cudnnDropoutDescriptor_t, &CudnnApi::cudnnCreateDropoutDescriptor,
                          &CudnnApi::cudnnDestroyDropoutDescriptor>;
using RnnDesc = Owned<cudnnRNNDescriptor_t, &CudnnApi::cudnnCreateRNNDescriptor,
                      &CudnnApi::cudnnDestroyRNNDescriptor>;
using RnnDataDesc = Owned<cudnnRNNDataDescriptor_t, &CudnnApi::cudnnCreateRNNDataDescriptor,
                          &CudnnApi::cudnnDestroyRNNDataDescriptor>;

class Event {
 public:
  Event() { check_cuda(cudaEventCreate(&e_), "cudaEventCreate"); }
  ~Event() {
    if (e_) cudaEventDestroy(e_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

// n floats uniform in [lo, hi), generated on the host and uploaded.
void fill_uniform(DeviceBuffer<float>& b, index_t n, double lo, double hi, std::uint64_t seed) {
  std::vector<float> h(n);
  RngSequence rng(seed, 11);
  for (float& v : h) v = float(rng.uniform(lo, hi));
  b.resize(n);
  copy_to_device(b.data(), h.data(), std::size_t(n) * sizeof(float));
}

double time_step(CudnnCell cell, index_t T, index_t B, index_t I, index_t H, int reps) {
  const CudnnApi& a = api();
  if (!a.error.empty()) fail("{}", a.error);
  // cuDNN takes int dimensions (its sizes in bytes are size_t).
  MTP_CHECK(std::max({T, B, I, H}) < (index_t(1) << 31),
            "T={} B={} I={} H={} exceed cuDNN's int dimensions", T, B, I, H);
  const int t = int(T), b = int(B), in = int(I), h = int(H);

  Handle handle("cudnnCreate");  // on the default stream, as mtp's DeviceExec
  // One layer has no dropout, but the RNN descriptor wants a dropout descriptor; with
  // probability 0 it needs no random-number states.
  DropoutDesc dropout("cudnnCreateDropoutDescriptor");
  check(a.cudnnSetDropoutDescriptor(dropout.get(), handle.get(), 0.f, nullptr, 0, 0),
        "cudnnSetDropoutDescriptor");
  // CUDNN_GRU is PyTorch's GRU (linear before reset, r ⊙ (W_hn h + b_hn)), CUDNN_LSTM is
  // PyTorch's LSTM: the cells of docs/contract.md §4.1–4.2 with K = 1. ALGO_STANDARD is the general
  // algorithm (PyTorch's choice for float); projSize = H means no projection.
  RnnDesc rnn("cudnnCreateRNNDescriptor");
  check(a.cudnnSetRNNDescriptor_v8(rnn.get(), CUDNN_RNN_ALGO_STANDARD,
                                   cell == CudnnCell::lstm ? CUDNN_LSTM : CUDNN_GRU,
                                   CUDNN_RNN_DOUBLE_BIAS, CUDNN_UNIDIRECTIONAL, CUDNN_LINEAR_INPUT,
                                   CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, CUDNN_FMA_MATH, in, h, h, 1,
                                   dropout.get(), CUDNN_RNN_PADDED_IO_DISABLED),
        "cudnnSetRNNDescriptor_v8");

  // x (T,B,I) and y (T,B,H), time-major as mtp's layers: every sequence has length T, so
  // SEQ_MAJOR_PACKED is exactly that array (the unpacked layouts would need padded I/O).
  const std::vector<int> lengths(B, t);
  RnnDataDesc x_desc("cudnnCreateRNNDataDescriptor"), y_desc("cudnnCreateRNNDataDescriptor");
  check(a.cudnnSetRNNDataDescriptor(x_desc.get(), CUDNN_DATA_FLOAT,
                                    CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_PACKED, t, b, in,
                                    lengths.data(), nullptr),
        "cudnnSetRNNDataDescriptor (x)");
  check(a.cudnnSetRNNDataDescriptor(y_desc.get(), CUDNN_DATA_FLOAT,
                                    CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_PACKED, t, b, h, lengths.data(),
                                    nullptr),
        "cudnnSetRNNDataDescriptor (y)");
  // h and c (layers·directions = 1, B, H): described for their shape only. hx, cx, hy, cy
  // and their gradients are all null: zero initial state, no state gradients, as mtp's
  // layer in the benchmark.
  TensorDesc h_desc("cudnnCreateTensorDescriptor");
  const int dims[3] = {1, b, h}, strides[3] = {b * h, h, 1};
  check(a.cudnnSetTensorNdDescriptor(h_desc.get(), CUDNN_DATA_FLOAT, 3, dims, strides),
        "cudnnSetTensorNdDescriptor (h)");

  std::size_t weight_bytes = 0, work_bytes = 0, reserve_bytes = 0;
  check(a.cudnnGetRNNWeightSpaceSize(handle.get(), rnn.get(), &weight_bytes),
        "cudnnGetRNNWeightSpaceSize");
  check(a.cudnnGetRNNTempSpaceSizes(handle.get(), rnn.get(), CUDNN_FWD_MODE_TRAINING, x_desc.get(),
                                    &work_bytes, &reserve_bytes),
        "cudnnGetRNNTempSpaceSizes");

  // The weight space holds W_ih (G·H,I), W_hh (G·H,H) and both biases (G = 4 or 3) in
  // cuDNN's order; random values in mtp's benchmark range fill it all.
  const index_t n_weights = index_t(weight_bytes / sizeof(float));
  DeviceBuffer<float> x, dy, y(T * B * H), dx(T * B * I), w, dw(n_weights);
  fill_uniform(x, T * B * I, -1, 1, 2);
  fill_uniform(dy, T * B * H, -1, 1, 3);
  fill_uniform(w, n_weights, -0.05, 0.05, 1);
  check_cuda(cudaMemset(dw.data(), 0, weight_bytes), "cudaMemset (dw)");
  DeviceBuffer<unsigned char> work{index_t(work_bytes)}, reserve{index_t(reserve_bytes)};
  DeviceBuffer<std::int32_t> seq_lengths(B);  // the device copy cuDNN's v8 calls read
  copy_to_device(seq_lengths.data(), lengths.data(), lengths.size() * sizeof(int));

  const auto step = [&] {
    check(a.cudnnRNNForward(handle.get(), rnn.get(), CUDNN_FWD_MODE_TRAINING, seq_lengths.data(),
                            x_desc.get(), x.data(), y_desc.get(), y.data(), h_desc.get(), nullptr,
                            nullptr, h_desc.get(), nullptr, nullptr, weight_bytes, w.data(),
                            work_bytes, work.data(), reserve_bytes, reserve.data()),
          "cudnnRNNForward");
    check(a.cudnnRNNBackwardData_v8(handle.get(), rnn.get(), seq_lengths.data(), y_desc.get(),
                                    y.data(), dy.data(), x_desc.get(), dx.data(), h_desc.get(),
                                    nullptr, nullptr, nullptr, h_desc.get(), nullptr, nullptr,
                                    nullptr, weight_bytes, w.data(), work_bytes, work.data(),
                                    reserve_bytes, reserve.data()),
          "cudnnRNNBackwardData_v8");
    // ADD: mtp's layer accumulates its parameter gradients too.
    check(a.cudnnRNNBackwardWeights_v8(handle.get(), rnn.get(), CUDNN_WGRAD_MODE_ADD,
                                       seq_lengths.data(), x_desc.get(), x.data(), h_desc.get(),
                                       nullptr, y_desc.get(), y.data(), weight_bytes, dw.data(),
                                       work_bytes, work.data(), reserve_bytes, reserve.data()),
          "cudnnRNNBackwardWeights_v8");
  };

  // As bench_cuda's time_ms: one warm-up (cuDNN picks and builds its kernels there), then
  // the median of `reps` runs between CUDA events.
  step();
  check_cuda(cudaDeviceSynchronize(), "cuDNN warm-up step");
  Event start, stop;
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    check_cuda(cudaEventRecord(start.get()), "cudaEventRecord");
    step();
    check_cuda(cudaEventRecord(stop.get()), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop.get()), "cuDNN training step");
    float elapsed = 0;
    check_cuda(cudaEventElapsedTime(&elapsed, start.get(), stop.get()), "cudaEventElapsedTime");
    ms.push_back(elapsed);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

std::string cudnn_peer_description() {
  const CudnnApi& a = api();
  if (!a.error.empty()) return fmt::format("cuDNN peer unavailable: {}", a.error);
  const std::size_t v = a.cudnnGetVersion();
  return fmt::format(
      "cuDNN {}.{}.{} ({}), float, CUDNN_FMA_MATH (FP32, no TF32, as mtp's cuBLAS default "
      "math), ALGO_STANDARD, SEQ_MAJOR_PACKED",
      v / 10000, v % 10000 / 100, v % 100, a.path);
}

CudnnRnnTiming time_cudnn_rnn_step(CudnnCell cell, index_t T, index_t B, index_t I, index_t H,
                                   int reps) {
  try {
    return {true, time_step(cell, T, B, I, H, std::max(reps, 1)), {}};
  } catch (const std::exception& e) {
    return {false, 0, one_line(e.what())};
  }
}

#else  // built without cuDNN

std::string cudnn_peer_description() {
  return "cuDNN peer not built (CMake found no cudnn.h >= 9 and libcudnn)";
}

CudnnRnnTiming time_cudnn_rnn_step(CudnnCell, index_t, index_t, index_t, index_t, int) {
  return {false, 0, "cuDNN peer not built (CMake found no cudnn.h >= 9 and libcudnn)"};
}

#endif

}  // namespace mtp::cuda
