// cuDNN's RNN as the benchmark peer of mtp's GRU and LSTM layers on the GPU (docs/cuda.md,
// issue 7: "LSTM K = 1 >= 0.8 x cuDNN"). One training step is what mtp's layer does in
// forward + backward: cudnnRNNForward (CUDNN_FWD_MODE_TRAINING), cudnnRNNBackwardData_v8
// (dx) and cudnnRNNBackwardWeights_v8 (weight and bias gradients, accumulated), for one
// unidirectional layer with both biases (PyTorch's b_ih and b_hh), zero initial state,
// x (T,B,I) → y (T,B,H), float with FP32 math (no TF32: cudnn_rnn_peer.cpp says why).
//
// Nothing here includes a cuDNN or CUDA header. Built without cuDNN (CMake found no
// cudnn.h >= 9), every call reports "not built" instead of a number.
#pragma once

#include <string>

#include "mtp/core/tensor.hpp"

namespace mtp::cuda {

enum class CudnnCell { lstm, gru };

struct CudnnRnnTiming {
  bool ok = false;
  double ms = 0;      // median milliseconds per training step, when ok
  std::string error;  // one line, when not ok
};

// The peer in one line, e.g. "cuDNN 9.19.0 (libcudnn.so.9), float, CUDNN_FMA_MATH (FP32,
// no TF32), ALGO_STANDARD, SEQ_MAJOR_PACKED", or why it is unavailable.
std::string cudnn_peer_description();

// Times one training step of a cuDNN LSTM or GRU on the current device: x (T,B,I),
// h (B,H), random weights and inputs; the median of `reps` runs after one warm-up, by
// CUDA events on the default stream (where mtp's DeviceExec runs too). Never throws: a
// failure (no cuDNN, a cuDNN or CUDA error, out of memory) comes back as ok = false.
CudnnRnnTiming time_cudnn_rnn_step(CudnnCell cell, index_t T, index_t B, index_t I, index_t H,
                                   int reps);

}  // namespace mtp::cuda
