// The definition of run_layer_cuda (layer_cuda.hpp), for the one translation unit that
// instantiates it for the built-in pairs (registry.cpp, with the CUDA backend).
#pragma once

#include "mtp/core/cuda/layer.hpp"
#include "mtp/experiments/layer_cuda.hpp"

namespace mtp::exp {

template <class Mixer>
void run_layer_cuda(const CudaLayerJob<Mixer>& job) {
  cuda::PerspectiveLayer<typename Mixer::CellType, typename Mixer::AggregatorType> layer(
      *job.config);
  MTP_CHECK(layer.param_count() == job.store->size(),
            "CUDA layer has {} parameters, the CPU layout {}", layer.param_count(),
            job.store->size());
  layer.set_params(job.store->values());
  layer.forward(job.x, job.y, StepContext{});
  if (job.dy.empty()) return;
  layer.backward(job.x, job.dy, job.dx);
  layer.get_grads(job.store->grads());
}

template <class Mixer>
consteval bool has_device_layer() {
  return cuda::kHasCellProgram<typename Mixer::CellType> &&
         cuda::kHasAggProgram<typename Mixer::AggregatorType>;
}

}  // namespace mtp::exp
