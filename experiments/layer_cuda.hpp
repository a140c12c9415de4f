// `mtp-exp layer --backend cuda`: the wrapped layer on the GPU (core/cuda/layer.hpp),
// given the parameters the CPU path loaded. Compiled only with the CUDA backend
// (MTP_WITH_CUDA); layer_command.cpp refuses --backend cuda otherwise.
#pragma once

#include "mtp/core/param_store.hpp"
#include "mtp/core/tensor.hpp"

namespace mtp::exp {

template <class Mixer>
struct CudaLayerJob {
  using S = typename Mixer::Scalar;
  const typename Mixer::Config* config;
  ParamStore<S>* store;  // the values go in; with dy, the gradients come back
  CView<S> x;            // (T,B,I)
  View<S> y;             // (T,B,O)
  CView<S> dy;           // (T,B,O), or empty: forward only
  View<S> dx;            // (T,B,I), with dy
};

// Throws mtp::Error when no CUDA device is visible.
void require_cuda_device();

// Forward in evaluation mode (no selector noise, zero initial states), then backward
// when dy is given. Defined in layer_cuda_impl.hpp, instantiated for the built-in pairs.
template <class Mixer>
void run_layer_cuda(const CudaLayerJob<Mixer>& job);

// Whether the pair has a device program (core/cuda): defined in layer_cuda_impl.hpp, and
// asked only where it is included (registry.cpp, with the CUDA backend).
template <class Mixer>
consteval bool has_device_layer();

}  // namespace mtp::exp
