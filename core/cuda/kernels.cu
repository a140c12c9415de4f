// Every CUDA kernel of the backend: one generic index-mapping kernel, instantiated for
// each body. The math lives in the bodies (scan_bodies.hpp, gate_bodies.hpp,
// common_bodies.hpp), which the host-driven tests run on the CPU.
#include <cuda_runtime.h>

#include "mtp/core/cuda/common_bodies.hpp"
#include "mtp/core/cuda/gate_bodies.hpp"
#include "mtp/core/cuda/launch.hpp"
#include "mtp/core/cuda/scan_bodies.hpp"

namespace mtp::cuda {
namespace {

constexpr int kBlock = 256;

template <class Body>
__global__ void __launch_bounds__(kBlock) for_each_index(const Body body, index_t n) {
  const index_t i = index_t(blockIdx.x) * kBlock + threadIdx.x;
  if (i < n) body(i);
}

}  // namespace

template <class Body>
int launch(const Body& body) {
  const index_t n = body.count();
  if (n <= 0) return 0;
  const auto blocks = static_cast<unsigned>((n + kBlock - 1) / kBlock);
  for_each_index<<<blocks, kBlock>>>(body, n);
  return static_cast<int>(cudaGetLastError());
}

#define MTP_LAUNCH(...) template int launch<__VA_ARGS__>(const __VA_ARGS__&);
#define MTP_LAUNCH_SCALAR(S)             \
  MTP_LAUNCH(WkvDecay<S>)                \
  MTP_LAUNCH(FusedK<1, WkvForward<S>>)   \
  MTP_LAUNCH(FusedK<4, WkvForward<S>>)   \
  MTP_LAUNCH(FusedK<64, WkvForward<S>>)  \
  MTP_LAUNCH(FusedK<1, WkvBackward<S>>)  \
  MTP_LAUNCH(FusedK<4, WkvBackward<S>>)  \
  MTP_LAUNCH(FusedK<64, WkvBackward<S>>) \
  MTP_LAUNCH(WkvMixWeightGrad<S>)        \
  MTP_LAUNCH(WkvReduce<S>)               \
  MTP_LAUNCH(TokenShiftForward<S>)       \
  MTP_LAUNCH(TokenShiftBackward<S>)      \
  MTP_LAUNCH(TokenShiftMuGrad<S>)        \
  MTP_LAUNCH(RwkvGate<S>)                \
  MTP_LAUNCH(RwkvGateBackward<S>)        \
  MTP_LAUNCH(SsmCoefficients<S>)         \
  MTP_LAUNCH(FusedK<1, SsmForward<S>>)   \
  MTP_LAUNCH(FusedK<4, SsmForward<S>>)   \
  MTP_LAUNCH(FusedK<64, SsmForward<S>>)  \
  MTP_LAUNCH(FusedK<1, SsmBackward<S>>)  \
  MTP_LAUNCH(FusedK<4, SsmBackward<S>>)  \
  MTP_LAUNCH(FusedK<64, SsmBackward<S>>) \
  MTP_LAUNCH(SsmReduce<S>)               \
  MTP_LAUNCH(GruGates<S>)                \
  MTP_LAUNCH(GruGatesBackward<S>)        \
  MTP_LAUNCH(LstmGates<S>)               \
  MTP_LAUNCH(LstmGatesBackward<S>)       \
  MTP_LAUNCH(MatrixReduce<S>)            \
  MTP_LAUNCH(AddRowBias<S>)              \
  MTP_LAUNCH(ColumnSum<S>)               \
  MTP_LAUNCH(CopyColumns<S>)             \
  MTP_LAUNCH(SkipForward<S>)             \
  MTP_LAUNCH(SkipBackward<S>)            \
  MTP_LAUNCH(SkipGrad<S>)                \
  MTP_LAUNCH(WeightedSum<S>)             \
  MTP_LAUNCH(WeightedSumBackward<S>)     \
  MTP_LAUNCH(RowDots<S>)                 \
  MTP_LAUNCH(Selector<S>)                \
  MTP_LAUNCH(SelectorBackward<S>)

MTP_LAUNCH_SCALAR(float)
MTP_LAUNCH_SCALAR(double)

}  // namespace mtp::cuda
