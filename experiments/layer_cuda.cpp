#include "mtp/experiments/layer_cuda.hpp"

#include "mtp/core/cuda/layer.hpp"
#include "mtp/experiments/dispatch.hpp"

namespace mtp::exp {

void require_cuda_device() {
  cuda::require_device();
}

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

#define MTP_CUDA_LAYER(S, CELL, AGG) \
  template void run_layer_cuda(const CudaLayerJob<Perspectives<CELL<S>, AGG<S>>>&);
#define MTP_CUDA_LAYERS_OF(S, CELL)          \
  MTP_CUDA_LAYER(S, CELL, MeanAggregator)    \
  MTP_CUDA_LAYER(S, CELL, LearnedAggregator) \
  MTP_CUDA_LAYER(S, CELL, FixedAggregator)
#define MTP_CUDA_LAYERS(S)           \
  MTP_CUDA_LAYERS_OF(S, Gru)         \
  MTP_CUDA_LAYERS_OF(S, Lstm)        \
  MTP_CUDA_LAYERS_OF(S, RwkvTimeMix) \
  MTP_CUDA_LAYERS_OF(S, LinearSsm)
MTP_CUDA_LAYERS(float)
MTP_CUDA_LAYERS(double)

}  // namespace mtp::exp
