#include "mtp/experiments/layer_cuda.hpp"

#include "mtp/core/cuda/device.hpp"

namespace mtp::exp {

void require_cuda_device() {
  cuda::require_device();
}

}  // namespace mtp::exp
