// Uses mtp::cuda as an installed package (built when the package has the CUDA backend):
// the exported target links with its CUDA dependencies, and the device query answers,
// with or without a GPU.
#include <mtp/core/cuda/layer.hpp>

#include <cstdio>

int main() {
  const int devices = mtp::cuda::device_count();
  std::printf("mtp::cuda consumer: %d CUDA device(s) visible\n", devices);
  if (devices > 0) {
    const mtp::cuda::DeviceInfo info = mtp::cuda::device_info();
    std::printf("device 0: %s, %.0f GB/s peak\n", info.name.c_str(), info.peak_bandwidth_gbs);
  }
  return devices >= 0 ? 0 : 1;
}
