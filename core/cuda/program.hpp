// A perspective layer (core/perspectives.hpp) as a sequence of GEMMs and body launches
// on an executor: DeviceExec runs it on the GPU (cuBLAS + kernels.cu), HostExec runs
// the same sequence on the CPU (mtp::matmul + the bodies in loops), which is how the
// tests check it without a GPU.
//
// The parameters are one flat buffer in exactly the layout of the CPU layer's
// ParamStore (same names, shapes, offsets: the program declares a CPU Perspectives<>
// to get it), and so are the gradients. Gradients accumulate; dx is overwritten.
//
// Each cell has a CellProgram with the parts of the Cell concept, called in this order:
// forward (pre + recur), post_forward; post_backward, backward (recur + pre). Each
// aggregator has an AggProgram. As on the CPU (Config::mixed_scan), the diagonal cells
// (RWKV, SSM) take the aggregator's weights α (T,B,K) into their scans instead
// (forward_mixed, backward_mixed; AggProgram::weights_forward, weights_backward), so the
// per-perspective outputs (T,B,K,D) and their gradient are never written. Buffers grow
// on the first call of a shape and are reused; nothing is allocated inside the per-step
// loops. All pointers are the executor's memory (device memory for DeviceExec).
#pragma once

#include <string_view>
#include <vector>

#include "mtp/aggregators/fixed.hpp"
#include "mtp/aggregators/learned.hpp"
#include "mtp/aggregators/mean.hpp"
#include "mtp/cells/gru.hpp"
#include "mtp/cells/lstm.hpp"
#include "mtp/cells/rwkv.hpp"
#include "mtp/cells/ssm.hpp"
#include "mtp/core/cuda/common_bodies.hpp"
#include "mtp/core/cuda/gate_bodies.hpp"
#include "mtp/core/cuda/scan_bodies.hpp"
#include "mtp/core/perspectives.hpp"

namespace mtp::cuda {

// The scans keep their K states in registers for K ≤ 4 (scan_bodies.hpp).
inline constexpr int kMaxPerspectives = 64;

template <class Scan, class Exec>
void run_fused(Exec& ex, int K, const Scan& scan) {
  if (K == 1)
    ex.run(FusedK<1, Scan>{scan});
  else if (K <= 4)
    ex.run(FusedK<4, Scan>{scan});
  else
    ex.run(FusedK<kMaxPerspectives, Scan>{scan});
}

// Names → pointers into the flat value and gradient buffers. Used when a program is
// built, never in its loops.
template <class S>
struct ParamPointers {
  const std::vector<ParamInfo>* infos;
  S* values;
  S* grads;
  index_t offset(std::string_view name) const {
    for (const ParamInfo& p : *infos)
      if (p.name == name) return p.offset;
    fail("the CUDA layer has no parameter '{}'", name);
  }
  S* value(std::string_view name) const { return values + offset(name); }
  S* grad(std::string_view name) const { return grads + offset(name); }
};

// The shape of the current call, shared by the parts.
struct CallShape {
  index_t T = 0, B = 0;
  int K = 1;
};

template <class CellT, class Exec>
class CellProgram;

// Whether a cell has a device program: set beside each CellProgram specialisation, so
// that a cell without one is registered without `layer --backend cuda`.
template <class CellT>
inline constexpr bool kHasCellProgram = false;

// ------------------------------------------------------------------ linear SSM

template <class S>
inline constexpr bool kHasCellProgram<LinearSsm<S>> = true;
template <class S, class Exec>
class CellProgram<LinearSsm<S>, Exec> {
  template <class T>
  using Buf = typename Exec::template Buffer<T>;

 public:
  CellProgram(Exec& ex, const LinearSsm<S>& cell)
      : ex_(ex), I_(cell.input_width()), N_(cell.state_width()) {}

  void bind(const ParamPointers<S>& p) {
    in_ = p.value("in_proj.weight"), out_ = p.value("out_proj.weight"), skip_ = p.value("skip");
    g_in_ = p.grad("in_proj.weight"), g_out_ = p.grad("out_proj.weight");
    g_skip_ = p.grad("skip");
  }

  // x (T,B,I), decay (K,N), s0 (B,K,N) or null → Yk (T,B,K,N), sT or null (may alias
  // s0). Saves b = P, a, g and s0.
  void forward(const CallShape& cs, const S* x, const S* decay, const S* s0, S* Yk, S* sT) {
    run_fused(ex_, cs.K, pre_forward(cs, x, decay, s0, Yk, sT));
  }
  // The mixed scan: α (T,B,K) → A (T,B,N) = Σ_k α_k h^k in place of Yk. Saves what
  // forward saves and the states h (T,B,K,N) for backward_mixed (the scan keeps no
  // checkpoints), so the memory it saves is the gradient's: no dYk.
  void forward_mixed(const CallShape& cs, const S* x, const S* decay, const S* s0, const S* alpha,
                     S* A, S* sT) {
    h_.resize(cs.T * cs.B * cs.K * N_);
    SsmForward<S> scan = pre_forward(cs, x, decay, s0, h_.data(), sT);
    scan.alpha = alpha;
    scan.A = A;
    run_fused(ex_, cs.K, scan);
  }
  // A (T,B,N), x → y (T,B,I) = A W_out^T + skip ⊙ x.
  void post_forward(const S* A, const S* x, S* y) {
    const index_t TB = cs_.T * cs_.B;
    ex_.gemm(A, false, out_, true, y, TB, I_, N_, false);
    ex_.run(SkipForward<S>{TB, I_, skip_, x, y});
  }
  // Saved: A, x. dy (T,B,I) → dA (T,B,N) overwritten; dx +=; dW_out, dskip +=.
  void post_backward(const S* dy, const S* A, const S* x, S* dA, S* dx) {
    const index_t TB = cs_.T * cs_.B;
    ex_.gemm(dy, false, out_, false, dA, TB, N_, I_, false);
    ex_.gemm(dy, true, A, false, g_out_, I_, N_, TB, true);
    ex_.run(SkipBackward<S>{TB, I_, skip_, dy, dx});
    ex_.run(SkipGrad<S>{TB, I_, dy, x, g_skip_});
  }
  // Saved: b, a, g, s0 and the states Yk. dYk → dx +=, ddecay +=, dW_in +=.
  void backward(const S* dYk, const S* x, const S* Yk, const S* decay, S* dx, S* ddecay) {
    run_fused(ex_, cs_.K, scan_backward(Yk, dYk));
    post_scan_backward(x, decay, dx, ddecay);
  }
  // Backward of forward_mixed. Saved: b, a, g, s0, the states h. dA (T,B,N), α (T,B,K) →
  // dx +=, ddecay +=, dW_in +=; dα (T,B,K) = ⟨dA_t, h^k_t⟩ overwritten, unless null (the
  // weights take no gradient).
  void backward_mixed(const S* dA, const S* x, const S* alpha, const S* decay, S* dx, S* ddecay,
                      S* dalpha) {
    SsmBackward<S> scan = scan_backward(h_.data(), dA);
    scan.alpha = alpha;
    run_fused(ex_, cs_.K, scan);
    if (dalpha) ex_.run(RowDots<S>{cs_.T * cs_.B, N_, cs_.K, dA, h_.data(), dalpha});
    post_scan_backward(x, decay, dx, ddecay);
  }

 private:
  const S* saved_s0() { return has_s0_ ? s0_.data() : nullptr; }

  // b = P = x W_in^T, a, g, the saved s0; the scan writing the states to h, or null.
  SsmForward<S> pre_forward(const CallShape& cs, const S* x, const S* decay, const S* s0, S* h,
                            S* sT) {
    cs_ = cs;
    const index_t B = cs.B, N = N_, TB = cs.T * B;
    const int K = cs.K;
    P_.resize(TB * N);
    a_.resize(K * N);
    g_.resize(K * N);
    ex_.gemm(x, false, in_, true, P_.data(), TB, N, I_, false);
    ex_.run(SsmCoefficients<S>{K * N, decay, a_.data(), g_.data()});
    has_s0_ = s0 != nullptr;
    if (has_s0_) {
      s0_.resize(B * K * N);
      ex_.copy(s0_.data(), s0, B * K * N);
    }
    return {cs.T, B, N, K, P_.data(), a_.data(), g_.data(), saved_s0(), h, sT};
  }
  // The backward scan over the states h with gradient gy (dYk, or dA once α is set).
  SsmBackward<S> scan_backward(const S* h, const S* gy) {
    const index_t B = cs_.B, N = N_;
    const int K = cs_.K;
    dP_.resize(cs_.T * B * N);
    da_.resize(B * K * N);
    dg_.resize(B * K * N);
    return {cs_.T,      B, N,  K,          P_.data(),  a_.data(), g_.data(),
            saved_s0(), h, gy, dP_.data(), da_.data(), dg_.data()};
  }
  // After the scan: ddecay from the partials, then db through W_in.
  void post_scan_backward(const S* x, const S* decay, S* dx, S* ddecay) {
    const index_t TB = cs_.T * cs_.B, N = N_;
    ex_.run(SsmReduce<S>{cs_.B, N, cs_.K, decay, da_.data(), dg_.data(), ddecay});
    ex_.gemm(dP_.data(), false, in_, false, dx, TB, I_, N, true);
    ex_.gemm(dP_.data(), true, x, false, g_in_, N, I_, TB, true);
  }

  Exec& ex_;
  index_t I_, N_;
  CallShape cs_;
  S *in_ = nullptr, *out_ = nullptr, *skip_ = nullptr;
  S *g_in_ = nullptr, *g_out_ = nullptr, *g_skip_ = nullptr;
  bool has_s0_ = false;
  Buf<S> P_, a_, g_, s0_, dP_;  // (T,B,N), (K,N), (K,N), (B,K,N), (T,B,N)
  Buf<S> h_;                    // (T,B,K,N) the states, mixed scan only
  Buf<double> da_, dg_;         // (B,K,N) per-sequence ∂L/∂a, ∂L/∂g
};

// ------------------------------------------------------------------ RWKV-4 time mix

template <class S>
inline constexpr bool kHasCellProgram<RwkvTimeMix<S>> = true;
template <class S, class Exec>
class CellProgram<RwkvTimeMix<S>, Exec> {
  template <class T>
  using Buf = typename Exec::template Buffer<T>;

 public:
  CellProgram(Exec& ex, const RwkvTimeMix<S>& cell) : ex_(ex), C_(cell.input_width()) {}

  void bind(const ParamPointers<S>& p) {
    const char* names[kParams] = {"time_mix_k",        "time_mix_v",   "time_mix_r",
                                  "time_first",        "key.weight",   "value.weight",
                                  "receptance.weight", "output.weight"};
    for (int i = 0; i < kParams; ++i) value_[i] = p.value(names[i]), grad_[i] = p.grad(names[i]);
  }

  // x (T,B,C), decay (K,C), s0 (B,K,4C) or null → Yk = wkv (T,B,K,C), sT or null (may
  // alias s0). Saves the mixed inputs, P = [k | v | r], w, the carried last x and the
  // (a, b, p) entering every step.
  void forward(const CallShape& cs, const S* x, const S* decay, const S* s0, S* Yk, S* sT) {
    run_fused(ex_, cs.K, pre_forward(cs, x, decay, s0, Yk, sT));
  }
  // The mixed scan: α (T,B,K) → A (T,B,C) = Σ_k α_k wkv^k in place of Yk. Saves what
  // forward saves.
  void forward_mixed(const CallShape& cs, const S* x, const S* decay, const S* s0, const S* alpha,
                     S* A, S* sT) {
    WkvForward<S> scan = pre_forward(cs, x, decay, s0, A, sT);
    scan.alpha = alpha;
    run_fused(ex_, cs.K, scan);
  }
  // A (T,B,C) → y (T,B,C) = W_o(σ(r) ⊙ A). Saves σ(r) and σ(r) ⊙ A.
  void post_forward(const S* A, const S*, S* y) {
    const index_t TB = cs_.T * cs_.B, TBC = TB * C_;
    sr_.resize(TBC);
    ra_.resize(TBC);
    ex_.run(RwkvGate<S>{TBC, P_.data() + 2 * TBC, A, sr_.data(), ra_.data()});
    ex_.gemm(ra_.data(), false, value_[kOutput], true, y, TB, C_, C_, false);
  }
  // Saved: σ(r), σ(r) ⊙ A, A. dy → dA overwritten, dP_r overwritten, dW_o +=.
  void post_backward(const S* dy, const S* A, const S*, S* dA, S*) {
    const index_t TB = cs_.T * cs_.B, TBC = TB * C_;
    dra_.resize(TBC);
    dP_.resize(3 * TBC);
    ex_.gemm(dy, false, value_[kOutput], false, dra_.data(), TB, C_, C_, false);
    ex_.gemm(dy, true, ra_.data(), false, grad_[kOutput], C_, C_, TB, true);
    ex_.run(RwkvGateBackward<S>{TBC, dra_.data(), sr_.data(), A, dA, dP_.data() + 2 * TBC});
  }
  // Saved: see forward. dYk → dx +=, ddecay +=, every other gradient +=.
  void backward(const S* dYk, const S* x, const S* Yk, const S*, S* dx, S* ddecay) {
    run_fused(ex_, cs_.K, scan_backward(Yk, dYk));
    post_scan_backward(x, dx, ddecay);
  }
  // Backward of forward_mixed. Saved: see forward (wkv is recomputed from the saved
  // states). dA (T,B,C), α (T,B,K) → dx +=, ddecay +=, every other gradient +=;
  // dα (T,B,K) = ⟨dA_t, wkv^k_t⟩ overwritten, unless null (the weights take no gradient).
  void backward_mixed(const S* dA, const S* x, const S* alpha, const S*, S* dx, S* ddecay,
                      S* dalpha) {
    WkvBackward<S> scan = scan_backward(nullptr, dA);
    scan.alpha = alpha;
    run_fused(ex_, cs_.K, scan);
    if (dalpha) {
      const index_t TBC = cs_.T * cs_.B * C_;
      ex_.run(WkvMixWeightGrad<S>{cs_.T, cs_.B, C_, cs_.K, P_.data(), P_.data() + TBC,
                                  value_[kFirst], saved_ab_.data(), saved_p_.data(), dA, dalpha});
    }
    post_scan_backward(x, dx, ddecay);
  }

 private:
  // The backward scan with gradient gy (dYk, or dA once α is set) and y (Yk, or null).
  WkvBackward<S> scan_backward(const S* y, const S* gy) {
    const index_t B = cs_.B, C = C_, TBC = cs_.T * B * C;
    gw_.resize(B * cs_.K * C);
    gu_.resize(B * cs_.K * C);
    return {cs_.T,
            B,
            C,
            cs_.K,
            P_.data(),
            P_.data() + TBC,
            value_[kFirst],
            w_.data(),
            saved_ab_.data(),
            saved_p_.data(),
            y,
            gy,
            dP_.data(),
            dP_.data() + TBC,
            gw_.data(),
            gu_.data()};
  }
  // After the scan: ddecay, dtime_first, then dk, dv, dr through the projections and the
  // token shift to dx.
  void post_scan_backward(const S* x, S* dx, S* ddecay) {
    const index_t T = cs_.T, B = cs_.B, C = C_, TB = T * B, TBC = TB * C;
    const int K = cs_.K;
    x_ = x;
    ex_.run(WkvReduce<S>{B, C, K, w_.data(), gw_.data(), gu_.data(), ddecay, grad_[kFirst]});
    // Through the three projections to the mixed inputs, then the token shift.
    Buf<S>* xm[3] = {&xk_, &xv_, &xr_};
    for (Buf<S>* b : {&dxk_, &dxv_, &dxr_}) b->resize(TBC);
    Buf<S>* dxm[3] = {&dxk_, &dxv_, &dxr_};
    for (int p = 0; p < 3; ++p) {
      const S* dproj = dP_.data() + p * TBC;
      ex_.gemm(dproj, false, value_[kKey + p], false, dxm[p]->data(), TB, C, C, false);
      ex_.gemm(dproj, true, xm[p]->data(), false, grad_[kKey + p], C, C, TB, true);
    }
    ex_.run(TokenShiftBackward<S>{T, B, C, value_[kMixK], value_[kMixV], value_[kMixR], dxk_.data(),
                                  dxv_.data(), dxr_.data(), dx});
    ex_.run(TokenShiftMuGrad<S>{shift(), dxk_.data(), dxv_.data(), dxr_.data(), grad_[kMixK],
                                grad_[kMixV], grad_[kMixR]});
  }

  enum { kMixK, kMixV, kMixR, kFirst, kKey, kValue, kReceptance, kOutput, kParams };
  TokenShiftForward<S> shift() {
    return {cs_.T,
            cs_.B,
            C_,
            x_,
            has_prev_ ? x_prev_.data() : nullptr,
            C_,
            value_[kMixK],
            value_[kMixV],
            value_[kMixR],
            xk_.data(),
            xv_.data(),
            xr_.data()};
  }

  // The token shift, the three projections into P = [k | v | r], w and the saved x_prev;
  // the scan writing y (Yk, or A once α is set), saving (a, b, p) every step.
  WkvForward<S> pre_forward(const CallShape& cs, const S* x, const S* decay, const S* s0, S* y,
                            S* sT) {
    cs_ = cs;
    x_ = x;
    const index_t T = cs.T, B = cs.B, C = C_, TB = T * B, TBC = TB * C;
    const int K = cs.K;
    for (Buf<S>* b : {&xk_, &xv_, &xr_}) b->resize(TBC);
    P_.resize(3 * TBC);
    w_.resize(K * C);
    saved_ab_.resize(TB * K * 2 * C);
    saved_p_.resize(TB * K * C);
    has_prev_ = s0 != nullptr;
    if (has_prev_) {  // before the scan: sT may overwrite s0
      x_prev_.resize(B * C);
      ex_.run(CopyColumns<S>{B, C, s0 + 3 * C, K * 4 * C, x_prev_.data(), C});
    }
    ex_.run(shift());
    ex_.gemm(xk_.data(), false, value_[kKey], true, P_.data(), TB, C, C, false);
    ex_.gemm(xv_.data(), false, value_[kValue], true, P_.data() + TBC, TB, C, C, false);
    ex_.gemm(xr_.data(), false, value_[kReceptance], true, P_.data() + 2 * TBC, TB, C, C, false);
    ex_.run(WkvDecay<S>{K * C, decay, w_.data()});
    return {T,
            B,
            C,
            K,
            P_.data(),
            P_.data() + TBC,
            value_[kFirst],
            w_.data(),
            s0,
            y,
            saved_ab_.data(),
            saved_p_.data(),
            sT,
            x};
  }

  Exec& ex_;
  index_t C_;
  CallShape cs_;
  const S* x_ = nullptr;  // the input of the current call, read by the token shift
  S* value_[kParams] = {};
  S* grad_[kParams] = {};
  bool has_prev_ = false;
  Buf<S> xk_, xv_, xr_, P_;      // (T,B,C) ×3, (3,T,B,C)
  Buf<double> w_;                // (K,C) −exp(decay)
  Buf<S> saved_ab_;              // (T,B,K,2C)
  Buf<double> saved_p_;          // (T,B,K,C)
  Buf<S> x_prev_;                // (B,C)
  Buf<S> sr_, ra_, dra_;         // (T,B,C)
  Buf<S> dP_, dxk_, dxv_, dxr_;  // (3,T,B,C), (T,B,C) ×3
  Buf<double> gw_, gu_;          // (B,K,C)
};

// ------------------------------------------------------------------ GRU and LSTM

// What GRU and LSTM share (cells/matrix_cell.hpp): gi = x W_ih^T + b_ih over all T·B
// rows, the per-step recurrent GEMM over B·K rows, dW_hh as two GEMMs at the end, the
// partials of db_hh and ddecay. G gate blocks of H.
template <class S, class Exec, int G>
class MatrixProgram {
 protected:
  template <class T>
  using Buf = typename Exec::template Buffer<T>;

  MatrixProgram(Exec& ex, index_t I, index_t H) : ex_(ex), I_(I), H_(H) {}

 public:
  void bind(const ParamPointers<S>& p) {
    w_ih_ = p.value("weight_ih"), w_hh_ = p.value("weight_hh");
    b_ih_ = p.value("bias_ih"), b_hh_ = p.value("bias_hh");
    g_w_ih_ = p.grad("weight_ih"), g_w_hh_ = p.grad("weight_hh");
    g_b_ih_ = p.grad("bias_ih"), g_b_hh_ = p.grad("bias_hh");
  }
  // post is the identity (O = H).
  void post_forward(const S* A, const S*, S* y) { ex_.copy(y, A, cs_.T * cs_.B * H_); }
  void post_backward(const S* dy, const S*, const S*, S* dA, S*) {
    ex_.copy(dA, dy, cs_.T * cs_.B * H_);
  }

 protected:
  // x (T,B,I) → P = gi (T,B,G·H).
  void pre_forward(const CallShape& cs, const S* x) {
    cs_ = cs;
    const index_t TB = cs.T * cs.B, GH = G * H_;
    P_.resize(TB * GH);
    ex_.gemm(x, false, w_ih_, true, P_.data(), TB, GH, I_, false);
    ex_.run(AddRowBias<S>{TB, GH, b_ih_, P_.data()});
  }
  // gh (BK,G·H) = h (BK,H) W_hh^T; its bias is added by the gate body.
  void recurrent(const S* h, S* gh) {
    ex_.gemm(h, false, w_hh_, true, gh, cs_.B * cs_.K, G * H_, H_, false);
  }
  // dh (BK,H) += dgh (BK,G·H) W_hh.
  void recurrent_backward(const S* dgh, S* dh) {
    ex_.gemm(dgh, false, w_hh_, false, dh, cs_.B * cs_.K, H_, G * H_, true);
  }
  void begin_backward() {
    const index_t B = cs_.B, BK = B * cs_.K, GH = G * H_;
    dgh_.resize(cs_.T * BK * GH);
    dP_.resize(cs_.T * B * GH);
    partial_.resize(B * (GH + cs_.K * H_));
    ex_.zero(partial_.data(), B * (GH + cs_.K * H_));
  }
  // Saved: x, h0, the outputs Yk (the states h_t). dgh, dP filled → dW_hh, db_hh,
  // ddecay, dx, dW_ih, db_ih +=.
  void end_backward(const S* x, const S* h0, const S* Yk, S* dx, S* ddecay) {
    const index_t T = cs_.T, BK = cs_.B * cs_.K, GH = G * H_, TB = T * cs_.B;
    ex_.gemm(dgh_.data(), true, h0, false, g_w_hh_, GH, H_, BK, true);
    if (T > 1)
      ex_.gemm(dgh_.data() + BK * GH, true, Yk, false, g_w_hh_, GH, H_, (T - 1) * BK, true);
    ex_.run(MatrixReduce<S>{cs_.B, GH, cs_.K * H_, partial_.data(), g_b_hh_, ddecay});
    ex_.gemm(dP_.data(), false, w_ih_, false, dx, TB, I_, GH, true);
    ex_.gemm(dP_.data(), true, x, false, g_w_ih_, GH, I_, TB, true);
    ex_.run(ColumnSum<S>{TB, GH, dP_.data(), g_b_ih_});
  }

  Exec& ex_;
  index_t I_, H_;
  CallShape cs_;
  S *w_ih_ = nullptr, *w_hh_ = nullptr, *b_ih_ = nullptr, *b_hh_ = nullptr;
  S *g_w_ih_ = nullptr, *g_w_hh_ = nullptr, *g_b_ih_ = nullptr, *g_b_hh_ = nullptr;
  Buf<S> P_, dP_;   // (T,B,G·H)
  Buf<S> dgh_;      // (T,B,K,G·H)
  Buf<S> partial_;  // (B, G·H + K·H)
};

template <class S>
inline constexpr bool kHasCellProgram<Gru<S>> = true;
template <class S, class Exec>
class CellProgram<Gru<S>, Exec> : public MatrixProgram<S, Exec, 3> {
  using Base = MatrixProgram<S, Exec, 3>;
  using Base::cs_, Base::ex_, Base::H_;

 public:
  CellProgram(Exec& ex, const Gru<S>& cell) : Base(ex, cell.input_width(), cell.recur_width()) {}

  // x (T,B,I), decay (K,H), s0 (B,K,H) or null → Yk (T,B,K,H), sT or null (may alias
  // s0). Saves gi, h0 and the gates (r, z, n, gh_n).
  void forward(const CallShape& cs, const S* x, const S* decay, const S* s0, S* Yk, S* sT) {
    this->pre_forward(cs, x);
    const index_t T = cs.T, B = cs.B, BK = B * cs.K, H = H_;
    h0_.resize(BK * H);
    gh_.resize(BK * 3 * H);
    gates_.resize(T * BK * 4 * H);
    if (s0)
      ex_.copy(h0_.data(), s0, BK * H);
    else
      ex_.zero(h0_.data(), BK * H);
    for (index_t t = 0; t < T; ++t) {
      const S* hprev = t == 0 ? h0_.data() : Yk + (t - 1) * BK * H;
      this->recurrent(hprev, gh_.data());
      ex_.run(GruGates<S>{B, H, cs.K, this->P_.data() + t * B * 3 * H, gh_.data(), this->b_hh_,
                          decay, hprev, Yk + t * BK * H, gates_.data() + t * BK * 4 * H});
    }
    if (sT) ex_.copy(sT, Yk + (T - 1) * BK * H, BK * H);
  }
  void backward(const S* dYk, const S* x, const S* Yk, const S*, S* dx, S* ddecay) {
    const index_t T = cs_.T, B = cs_.B, BK = B * cs_.K, H = H_;
    this->begin_backward();
    carry_.resize(BK * H);
    ex_.zero(carry_.data(), BK * H);
    for (index_t t = T - 1; t >= 0; --t) {
      const S* hprev = t == 0 ? h0_.data() : Yk + (t - 1) * BK * H;
      S* dgh_t = this->dgh_.data() + t * BK * 3 * H;
      ex_.run(GruGatesBackward<S>{B, H, cs_.K, gates_.data() + t * BK * 4 * H, hprev,
                                  dYk + t * BK * H, carry_.data(), dgh_t,
                                  this->dP_.data() + t * B * 3 * H, this->partial_.data()});
      if (t > 0) this->recurrent_backward(dgh_t, carry_.data());  // h0 needs no gradient
    }
    this->end_backward(x, h0_.data(), Yk, dx, ddecay);
  }

 private:
  typename Base::template Buf<S> h0_, gh_, gates_, carry_;  // (BK,H), (BK,3H), (T,BK,4H), (BK,H)
};

template <class S>
inline constexpr bool kHasCellProgram<Lstm<S>> = true;
template <class S, class Exec>
class CellProgram<Lstm<S>, Exec> : public MatrixProgram<S, Exec, 4> {
  using Base = MatrixProgram<S, Exec, 4>;
  using Base::cs_, Base::ex_, Base::H_;

 public:
  CellProgram(Exec& ex, const Lstm<S>& cell) : Base(ex, cell.input_width(), cell.recur_width()) {}

  // x (T,B,I), decay (K,H), s0 (B,K,2H) = [h | c] or null → Yk = h (T,B,K,H), sT or
  // null (may alias s0). Saves gi, h0, c0, the gates (i, f, g, o), c and tanh(c).
  void forward(const CallShape& cs, const S* x, const S* decay, const S* s0, S* Yk, S* sT) {
    this->pre_forward(cs, x);
    const index_t T = cs.T, B = cs.B, BK = B * cs.K, H = H_;
    h0_.resize(BK * H);
    c0_.resize(BK * H);
    gh_.resize(BK * 4 * H);
    gates_.resize(T * BK * 4 * H);
    c_.resize(T * BK * H);
    tc_.resize(T * BK * H);
    if (s0) {
      ex_.run(CopyColumns<S>{BK, H, s0, 2 * H, h0_.data(), H});
      ex_.run(CopyColumns<S>{BK, H, s0 + H, 2 * H, c0_.data(), H});
    } else {
      ex_.zero(h0_.data(), BK * H);
      ex_.zero(c0_.data(), BK * H);
    }
    for (index_t t = 0; t < T; ++t) {
      const S* hprev = t == 0 ? h0_.data() : Yk + (t - 1) * BK * H;
      const S* cprev = t == 0 ? c0_.data() : c_.data() + (t - 1) * BK * H;
      this->recurrent(hprev, gh_.data());
      ex_.run(LstmGates<S>{B, H, cs.K, this->P_.data() + t * B * 4 * H, gh_.data(), this->b_hh_,
                           decay, cprev, gates_.data() + t * BK * 4 * H, c_.data() + t * BK * H,
                           tc_.data() + t * BK * H, Yk + t * BK * H});
    }
    if (sT) {
      ex_.run(CopyColumns<S>{BK, H, Yk + (T - 1) * BK * H, H, sT, 2 * H});
      ex_.run(CopyColumns<S>{BK, H, c_.data() + (T - 1) * BK * H, H, sT + H, 2 * H});
    }
  }
  void backward(const S* dYk, const S* x, const S* Yk, const S*, S* dx, S* ddecay) {
    const index_t T = cs_.T, B = cs_.B, BK = B * cs_.K, H = H_;
    this->begin_backward();
    carry_h_.resize(BK * H);
    carry_c_.resize(BK * H);
    ex_.zero(carry_h_.data(), BK * H);
    ex_.zero(carry_c_.data(), BK * H);
    for (index_t t = T - 1; t >= 0; --t) {
      const S* cprev = t == 0 ? c0_.data() : c_.data() + (t - 1) * BK * H;
      S* dgh_t = this->dgh_.data() + t * BK * 4 * H;
      ex_.run(LstmGatesBackward<S>{B, H, cs_.K, gates_.data() + t * BK * 4 * H, cprev,
                                   tc_.data() + t * BK * H, dYk + t * BK * H, carry_h_.data(),
                                   carry_c_.data(), dgh_t, this->dP_.data() + t * B * 4 * H,
                                   this->partial_.data()});
      if (t > 0) this->recurrent_backward(dgh_t, carry_h_.data());
    }
    this->end_backward(x, h0_.data(), Yk, dx, ddecay);
  }

 private:
  typename Base::template Buf<S> h0_, c0_, gh_, gates_, c_, tc_, carry_h_, carry_c_;
};

// ------------------------------------------------------------------ aggregators

// Mean and fixed: constant weights w (K), taken from the CPU aggregator.
template <class Agg, class Exec>
class AggProgram {
  using S = typename Agg::Scalar;

 public:
  AggProgram(Exec& ex, const Agg& agg, int K) : ex_(ex), K_(K) {
    w_.resize(K);
    ex_.upload(w_.data(), agg.weights().data(), K);
  }
  void bind(const ParamPointers<S>&) {}
  // Yk (R,K,D) → A (R,D).
  void forward(const S* Yk, const S*, S* A, index_t R, index_t D, const StepContext&,
               std::uint64_t) {
    ex_.run(WeightedSum<S>{R, D, K_, w_.data(), 0, Yk, A});
  }
  // dA (R,D) → dYk (R,K,D) overwritten.
  void backward(const S* dA, const S*, const S*, S* dYk, S*, index_t R, index_t D) {
    ex_.run(WeightedSumBackward<S>{R, D, K_, w_.data(), 0, dA, dYk});
  }

  // For a mixed scan: α (R,K) = w in every row (x and the noise key are unused).
  const S* weights_forward(const S*, index_t R, const StepContext&, std::uint64_t) {
    alpha_.resize(R * K_);
    ex_.run(CopyColumns<S>{R, K_, w_.data(), 0, alpha_.data(), K_});
    return alpha_.data();
  }
  // Where the scan writes dα (R,K): nowhere, constant weights take no gradient.
  S* weights_grad(index_t) { return nullptr; }
  void weights_backward(const S*, S*, index_t) {}

 private:
  Exec& ex_;
  int K_;
  typename Exec::template Buffer<S> w_;
  typename Exec::template Buffer<S> alpha_;  // (R,K), mixed scans only
};

// Whether an aggregator has a device program: the constant weightings (the primary
// AggProgram) and the learned selector.
template <class Agg>
inline constexpr bool kHasAggProgram = requires(const Agg& a) {
  a.weights();
};
template <class S>
inline constexpr bool kHasAggProgram<LearnedAggregator<S>> = true;

// The learned selector (aggregators/learned.hpp).
template <class S, class Exec>
class AggProgram<LearnedAggregator<S>, Exec> {
  template <class T>
  using Buf = typename Exec::template Buffer<T>;
  using Options = typename LearnedAggregator<S>::Options;

 public:
  AggProgram(Exec& ex, const LearnedAggregator<S>&, int K, const Options& opt, index_t I)
      : ex_(ex), K_(K), I_(I), opt_(opt) {
    const S one = 1;
    one_.resize(1);
    ex_.upload(one_.data(), &one, 1);
  }

  void bind(const ParamPointers<S>& p) {
    w_ = p.value("selector.weight"), b_ = p.value("selector.bias");
    g_w_ = p.grad("selector.weight"), g_b_ = p.grad("selector.bias");
    if (learned_noise())
      wn_ = p.value("selector.noise.weight"), g_wn_ = p.grad("selector.noise.weight");
  }

  // Yk (R,K,D), x (R,I) → A (R,D). Saves α (R,K), and with learned noise W_n x and the
  // noise key (backward draws ε again).
  void forward(const S* Yk, const S* x, S* A, index_t R, index_t D, const StepContext& ctx,
               std::uint64_t stream) {
    if (K_ == 1) {  // α ≡ 1: A = Yk, the selector gets exactly zero gradient
      ex_.copy(A, Yk, R * D);
      return;
    }
    weights_forward(x, R, ctx, stream);
    ex_.run(WeightedSum<S>{R, D, K_, alpha_.data(), K_, Yk, A});
  }
  // Saved: α, Yk, x (and W_n x). dA (R,D) → dYk overwritten, dx +=, selector grads +=.
  void backward(const S* dA, const S* Yk, const S* x, S* dYk, S* dx, index_t R, index_t D) {
    if (K_ == 1) {
      ex_.copy(dYk, dA, R * D);
      return;
    }
    dlogits_.resize(R * K_);
    ex_.run(WeightedSumBackward<S>{R, D, K_, alpha_.data(), K_, dA, dYk});
    selector_backward(Yk, dA, x, dx, R, D);
  }

  // x (R,I) → α (R,K), for a mixed scan (ones at K = 1). Saves what forward saves.
  const S* weights_forward(const S* x, index_t R, const StepContext& ctx, std::uint64_t stream) {
    alpha_.resize(R * K_);
    if (K_ == 1) {
      ex_.run(CopyColumns<S>{R, 1, one_.data(), 0, alpha_.data(), 1});
      return alpha_.data();
    }
    ex_.gemm(x, false, w_, true, alpha_.data(), R, K_, I_, false);
    noisy_ = ctx.training && (learned_noise() || opt_.noise > 0);
    key_ = {ctx.seed, stream, ctx.step};
    const bool pre = noisy_ && learned_noise();
    if (pre) {
      noise_pre_.resize(R * K_);
      ex_.gemm(x, false, wn_, true, noise_pre_.data(), R, K_, I_, false);
    }
    ex_.run(Selector<S>{R, K_, opt_.top_k, b_, noisy_, opt_.noise,
                        pre ? noise_pre_.data() : nullptr, key_, alpha_.data()});
    return alpha_.data();
  }
  // Where a mixed scan writes dα (R,K) for weights_backward: null at K = 1, where the
  // selector's gradient is exactly zero.
  S* weights_grad(index_t R) {
    if (K_ == 1) return nullptr;
    dlogits_.resize(R * K_);
    return dlogits_.data();
  }
  // Saved: α, x (and W_n x); dα in weights_grad(R). → dx +=, selector grads +=.
  void weights_backward(const S* x, S* dx, index_t R) {
    if (K_ == 1) return;
    selector_backward(nullptr, nullptr, x, dx, R, 0);
  }

 private:
  bool learned_noise() const { return opt_.noise_mode == NoiseMode::learned; }

  // dℓ from Yk and dA, or (Yk null) from the dα already in dlogits_; then dx and the
  // selector's gradients through the GEMMs.
  void selector_backward(const S* Yk, const S* dA, const S* x, S* dx, index_t R, index_t D) {
    const bool pre = noisy_ && learned_noise();
    if (pre) dnoise_.resize(R * K_);
    ex_.run(SelectorBackward<S>{R, D, K_, alpha_.data(), Yk, dA, dlogits_.data(),
                                pre ? noise_pre_.data() : nullptr, key_,
                                pre ? dnoise_.data() : nullptr});
    ex_.gemm(dlogits_.data(), false, w_, false, dx, R, I_, K_, true);
    ex_.gemm(dlogits_.data(), true, x, false, g_w_, K_, I_, R, true);
    ex_.run(ColumnSum<S>{R, K_, dlogits_.data(), g_b_});
    if (pre) {
      ex_.gemm(dnoise_.data(), false, wn_, false, dx, R, I_, K_, true);
      ex_.gemm(dnoise_.data(), true, x, false, g_wn_, K_, I_, R, true);
    }
  }

  Exec& ex_;
  int K_;
  index_t I_;
  Options opt_;
  S *w_ = nullptr, *b_ = nullptr, *wn_ = nullptr;
  S *g_w_ = nullptr, *g_b_ = nullptr, *g_wn_ = nullptr;
  bool noisy_ = false;
  NoiseKey key_;
  Buf<S> alpha_, noise_pre_, dlogits_, dnoise_;  // (R,K)
  Buf<S> one_;                                   // (1) α at K = 1
};

// ------------------------------------------------------------------ the layer

template <Cell C, Aggregator Agg, class Exec>
class LayerProgram {
 public:
  using S = typename C::Scalar;
  using Reference = Perspectives<C, Agg>;
  using Config = typename Reference::Config;
  template <class T>
  using Buf = typename Exec::template Buffer<T>;

  LayerProgram(Exec& ex, const Config& cfg)
      : ex_(ex),
        ref_(checked(cfg)),
        K_(cfg.perspectives),
        cell_(ex, ref_.cell()),
        agg_(make_agg(ex, cfg)) {
    attach_params(ref_, layout_);
    values_.resize(layout_.size());
    grads_.resize(layout_.size());
    ex_.zero(values_.data(), layout_.size());
    ex_.zero(grads_.data(), layout_.size());
    const ParamPointers<S> p{&layout_.infos(), values_.data(), grads_.data()};
    cell_.bind(p);
    agg_.bind(p);
    decay_ = p.value("decay");
    g_decay_ = p.grad("decay");
  }

  const Config& config() const { return ref_.config(); }
  // Names, shapes and offsets of the flat parameter buffer: the CPU layer's ParamStore.
  const std::vector<ParamInfo>& params() const { return layout_.infos(); }
  index_t param_count() const { return layout_.size(); }
  index_t input_width() const { return ref_.input_width(); }
  index_t output_width() const { return ref_.output_width(); }
  index_t state_width() const { return ref_.state_width(); }
  int perspectives() const { return K_; }
  S* values() { return values_.data(); }
  S* grads() { return grads_.data(); }

  // x (T,B,I) → y (T,B,O); state (B,K,Sw) or null: the initial state, receiving the
  // final one. Saves what backward needs (x itself is passed again to backward).
  void forward(const S* x, S* y, index_t T, index_t B, const StepContext& ctx, S* state) {
    const index_t Dy = ref_.cell().recur_width(), TB = T * B;
    const std::uint64_t stream = ref_.noise_stream();
    cs_ = {T, B, K_};
    A_.resize(TB * Dy);
    mixed_ = false;
    if constexpr (MixingCell<C> && WeightingAggregator<Agg>) {
      if (ref_.config().mixed_scan) {  // as Perspectives::forward: Yk is never written
        mixed_ = true;
        alpha_ = agg_.weights_forward(x, TB, ctx, stream);
        cell_.forward_mixed(cs_, x, decay_, state, alpha_, A_.data(), state);
        cell_.post_forward(A_.data(), x, y);
        return;
      }
    }
    Yk_.resize(TB * K_ * Dy);
    cell_.forward(cs_, x, decay_, state, Yk_.data(), state);
    agg_.forward(Yk_.data(), x, A_.data(), TB, Dy, ctx, stream);
    cell_.post_forward(A_.data(), x, y);
  }
  // After forward on the same x: dy (T,B,O) → dx (T,B,I) overwritten; gradients +=.
  void backward(const S* x, const S* dy, S* dx) {
    const index_t Dy = ref_.cell().recur_width(), TB = cs_.T * cs_.B;
    dA_.resize(TB * Dy);
    ex_.zero(dx, TB * input_width());
    cell_.post_backward(dy, A_.data(), x, dA_.data(), dx);
    if constexpr (MixingCell<C> && WeightingAggregator<Agg>) {
      if (mixed_) {  // saved: α; dα goes from the scan to the aggregator, dYk is never written
        cell_.backward_mixed(dA_.data(), x, alpha_, decay_, dx, g_decay_, agg_.weights_grad(TB));
        agg_.weights_backward(x, dx, TB);
        return;
      }
    }
    dYk_.resize(TB * K_ * Dy);
    agg_.backward(dA_.data(), Yk_.data(), x, dYk_.data(), dx, TB, Dy);
    cell_.backward(dYk_.data(), x, Yk_.data(), decay_, dx, g_decay_);
  }
  // Whether the last forward applied the aggregation inside the cell's scan.
  bool used_mixed_scan() const { return mixed_; }
  // The per-perspective outputs of the last forward, (T,B,K,Dy); null after a mixed scan
  // (Config::mixed_scan = false keeps them).
  const S* perspective_outputs() const { return mixed_ ? nullptr : Yk_.data(); }

 private:
  static const Config& checked(const Config& cfg) {
    MTP_CHECK(cfg.perspectives >= 1 && cfg.perspectives <= kMaxPerspectives,
              "the CUDA layer supports 1 to {} perspectives, got {}", kMaxPerspectives,
              cfg.perspectives);
    return cfg;
  }
  AggProgram<Agg, Exec> make_agg(Exec& ex, const Config& cfg) {
    if constexpr (std::is_same_v<Agg, LearnedAggregator<S>>)
      return {ex, ref_.aggregator(), K_, cfg.aggregator, ref_.input_width()};
    else
      return {ex, ref_.aggregator(), K_};
  }

  Exec& ex_;
  Reference ref_;  // declares the layout; its own parameters are unused
  int K_;
  ParamStore<S> layout_;
  CellProgram<C, Exec> cell_;
  AggProgram<Agg, Exec> agg_;
  Buf<S> values_, grads_;
  S *decay_ = nullptr, *g_decay_ = nullptr;
  CallShape cs_;
  Buf<S> Yk_, A_, dYk_, dA_;  // (T,B,K,Dy), (T,B,Dy); Yk and dYk unmixed only
  bool mixed_ = false;        // the last forward ran the mixed scan
  const S* alpha_ = nullptr;  // (T,B,K) the aggregator's saved weights, mixed scan only
};

}  // namespace mtp::cuda
