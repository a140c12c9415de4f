// The vendor fast path for the matrix cells: oneDNN's fused LSTM and linear-before-reset
// GRU primitives (forward_training + backward), for one unidirectional layer in
// PyTorch's parameter layout.
//
//   x (T,B,I), h0 [c0] (B,H)  →  y (T,B,H), hT [cT] (B,H)
//   w_ih (G·H,I), w_hh (G·H,H)   PyTorch layout and gate order (LSTM i f g o, GRU r z n)
//   bias (Gb·H)                  oneDNN's gate order: LSTM i f g o (Gb = 4),
//                                LBR-GRU u r o u' (Gb = 4: u = z; u' is b_hh of n,
//                                the bias inside r ⊙ (W_hn h + b_hn))
//
// It exists for speed only: GatedMatrixCell uses it at K = 1 in float, where folding the
// decay into the gate bias makes the perspective layer exactly the vendor's cell, and
// the plain path (matrix_cell.hpp) is the reference it is tested against. Primitives,
// their weight reorders and workspace are created once per shape and reused; the
// object belongs to one layer (not thread-safe).
#pragma once

#include <memory>

#include "mtp/core/tensor.hpp"

namespace mtp {

enum class FusedRnnKind { lstm, lbr_gru };

class FusedRnn {
 public:
  explicit FusedRnn(FusedRnnKind kind);
  ~FusedRnn();
  FusedRnn(FusedRnn&&) noexcept;
  FusedRnn& operator=(FusedRnn&&) noexcept;

  // Gates G of the weights and Gb of the bias.
  int weight_gates() const;
  int bias_gates() const { return 4; }

  // Runs forward_training. Backward reads the workspace and h0, c0 (copied here) and
  // x, y, w_ih, w_hh, bias in place: they must stay unchanged until it runs.
  // h0, c0 may be null (zero); hT, cT may be null (not wanted). c0/cT are LSTM only.
  void forward(const float* x, const float* w_ih, const float* w_hh, const float* bias,
               const float* h0, const float* c0, float* y, float* hT, float* cT, index_t T,
               index_t B, index_t I, index_t H);

  // After forward, with the same weights: dy (T,B,H), dhT [dcT] (B,H) or null (none
  // enters through the final state) → dx (T,B,I) +=, dw_ih and dw_hh += (PyTorch
  // layout), dbias (Gb·H) overwritten (oneDNN's gate order), dh0 [dc0] (B,H)
  // overwritten where not null. dcT/dc0 are LSTM only.
  void backward(const float* dy, const float* dhT, const float* dcT, float* dx, float* dw_ih,
                float* dw_hh, float* dbias, float* dh0, float* dc0);

  // How many primitive pairs this object has created (for tests of the cache).
  index_t plans_created() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mtp
