// mtp::cuda::PerspectiveLayer<Cell, Aggregator>: the GPU twin of Perspectives<Cell,
// Aggregator> (core/perspectives.hpp). Same configuration, same parameter layout (the
// CPU layer's ParamStore: names, shapes, offsets), same forward and backward; it runs
// on one CUDA device through cuBLAS and the kernels of kernels.cu.
//
//   PerspectiveLayer<Gru<float>, MeanAggregator<float>> gpu(cfg);   // throws without a GPU
//   gpu.set_params(store.values());      // the flat buffer of a CPU layer's ParamStore
//   gpu.forward(x, y, ctx);              // host views, as Perspectives::forward
//   gpu.backward(x, dy, dx);             // then gpu.get_grads(store.grads())
//
// The host-view calls copy in and out; program() gives the device-resident layer
// (device pointers) for code that keeps its tensors on the GPU.
#pragma once

#include "mtp/core/cuda/device.hpp"
#include "mtp/core/cuda/program.hpp"

namespace mtp::cuda {

template <Cell C, Aggregator Agg>
class PerspectiveLayer {
 public:
  using S = typename C::Scalar;
  using Scalar = S;
  using Program = LayerProgram<C, Agg, DeviceExec>;
  using Config = typename Program::Config;

  explicit PerspectiveLayer(const Config& cfg) : prog_(exec_, cfg) {}

  const std::vector<ParamInfo>& params() const { return prog_.params(); }
  index_t param_count() const { return prog_.param_count(); }
  index_t input_width() const { return prog_.input_width(); }
  index_t output_width() const { return prog_.output_width(); }
  index_t state_width() const { return prog_.state_width(); }
  int perspectives() const { return prog_.perspectives(); }

  // values: param_count() entries in the ParamStore layout of params().
  void set_params(const S* values) { exec_.upload(prog_.values(), values, param_count()); }
  void get_params(S* values) { exec_.download(values, prog_.values(), param_count()); }
  void get_grads(S* grads) { exec_.download(grads, prog_.grads(), param_count()); }
  void zero_grad() {
    exec_.zero(prog_.grads(), param_count());
    exec_.finish("zero_grad");
  }

  // x (T,B,I) → y (T,B,O), host memory. When `state` (B,K,Sw) is given it is the
  // initial state and receives the final one; otherwise states start at zero.
  void forward(CView<S> x, View<S> y, const StepContext& ctx, View<S> state = {}) {
    MTP_CHECK(x.shape.rank() == 3 && x.dim(2) == input_width(),
              "perspective layer input has shape {}, expected (T,B,{})", x.shape.str(),
              input_width());
    const index_t T = x.dim(0), B = x.dim(1), K = perspectives();
    check_shape(y.shape, {T, B, output_width()}, "perspective layer output");
    if (!state.empty()) check_shape(state.shape, {B, K, state_width()}, "perspective state");
    // cuBLAS takes int dimensions; the largest operand is (T·B·K, 4·max width).
    const index_t widest = std::max({input_width(), output_width(), state_width()});
    MTP_CHECK(T * B * K * 4 * widest < (index_t(1) << 31),
              "the CUDA layer's operands exceed 2^31 elements (T={} B={} K={})", T, B, K);
    x_.resize(x.numel());
    y_.resize(y.numel());
    exec_.upload(x_.data(), x.data, x.numel());
    if (!state.empty()) {
      state_.resize(state.numel());
      exec_.upload(state_.data(), state.data, state.numel());
    }
    prog_.forward(x_.data(), y_.data(), T, B, ctx, state.empty() ? nullptr : state_.data());
    exec_.finish("forward");
    exec_.download(y.data, y_.data(), y.numel());
    if (!state.empty()) exec_.download(state.data, state_.data(), state.numel());
    T_ = T, B_ = B;
  }

  // After forward on the same x: dy (T,B,O) → dx (T,B,I) overwritten, host memory;
  // parameter gradients accumulate on the device (get_grads reads them).
  void backward(CView<S> x, CView<S> dy, View<S> dx) {
    MTP_CHECK(T_ > 0, "perspective layer backward before any forward");
    check_shape(x.shape, {T_, B_, input_width()},
                "perspective layer x (backward takes the last forward's input)");
    check_shape(dy.shape, {T_, B_, output_width()}, "perspective layer dy");
    check_shape(dx.shape, x.shape, "perspective layer dx");
    dy_.resize(dy.numel());
    dx_.resize(dx.numel());
    exec_.upload(x_.data(), x.data, x.numel());
    exec_.upload(dy_.data(), dy.data, dy.numel());
    prog_.backward(x_.data(), dy_.data(), dx_.data());
    exec_.finish("backward");
    exec_.download(dx.data, dx_.data(), dx.numel());
  }

  // The device-resident layer: forward/backward on device pointers (call
  // executor().finish() to wait for them and surface errors).
  Program& program() { return prog_; }
  DeviceExec& executor() { return exec_; }

 private:
  DeviceExec exec_;  // first: the program's buffers live on its device
  Program prog_;
  DeviceBuffer<S> x_, y_, dy_, dx_, state_;
  index_t T_ = 0, B_ = 0;
};

}  // namespace mtp::cuda
