// GRU cell with a per-perspective update-gate decay (docs/contract.md §4.1). PyTorch gate order
// (r, z, n), "linear before reset": the reset gate scales W_hn h + b_hn.
//
//   gi = W_ih x + b_ih                       pre,   (T,B,3H) over all T·B rows at once
//   gh = W_hh h + b_hh                       recur, one GEMM per step over all B·K rows
//   r  = σ(gi_r + gh_r)
//   z  = σ(gi_z + gh_z + decay[k])           decay[k] shifts the update gate: a larger
//   n  = tanh(gi_n + r ⊙ gh_n)               value keeps more of the past (slower view)
//   h' = (1 − z) ⊙ n + z ⊙ h                 output of perspective k
//   post: identity (O = H)
//
// Params: weight_ih (3H,I), weight_hh (3H,H), bias_ih (3H), bias_hh (3H); decay (K,H)
// belongs to the wrapper. State (B,K,H) = h. With K = 1 and decay = 0 this is
// torch.nn.GRU.
#pragma once

#include <algorithm>
#include <cmath>
#include <string_view>

#include "mtp/cells/matrix_cell.hpp"
#include "mtp/core/ops/activations.hpp"

namespace mtp {

template <class S>
class Gru : public GatedMatrixCell<S, 3> {
  using Base = GatedMatrixCell<S, 3>;
  using Base::H_;

 public:
  using typename Base::Config;
  static constexpr std::string_view kName = "gru";
  static constexpr std::string_view kDescription = "GRU, decay on the update gate";

  explicit Gru(const Config& cfg) : Base(cfg) {}

  // The fraction of a channel's state kept per step at decay d with neutral (zero) gate
  // input: the update gate z = σ(d). What reports turn into the views' time scales, 1/(1 −
  // retention).
  static double retention(double d) { return 1.0 / (1.0 + std::exp(-d)); }

  index_t state_width() const { return H_; }
  // Floats per (t, b) kept for backward, with backward's scratch: the gates (K,4H) and
  // ∂L/∂gh (K,3H). For memory estimates.
  index_t activation_floats_per_token(int K) const { return 7 * index_t(K) * H_; }

  // P (T,B,3H), decay (K,H), s0 (B,K,H) or empty → Yk (T,B,K,H), sT (B,K,H) or empty.
  // s0 and sT may alias. Saves s0 and the gates (r, z, n, gh_n) for backward.
  void recur_forward(const RecurIn<S>& in, const RecurOut<S>& out) {
    const CView<S> P = in.P, decay = in.decay, s0 = in.s0;
    const View<S> Yk = out.Yk, sT = out.sT;
    const index_t T = Yk.dim(0), B = Yk.dim(1), K = Yk.dim(2), H = H_, BK = B * K;
    s0_.resize({B, K, H});
    if (s0.empty())
      s0_.zero();
    else
      std::copy(s0.begin(), s0.end(), s0_.data());
    gates_.resize({T, B, K, 4 * H});
    gh_.resize({BK, 3 * H});

    this->pack_recurrent_forward(BK);
    for (index_t t = 0; t < T; ++t) {
      const S* hprev = t == 0 ? s0_.data() : Yk.data + (t - 1) * BK * H;
      S* hnext = Yk.data + t * BK * H;
      this->recurrent_projection(hprev, gh_.data());
      const S* gi_t = P.data + t * B * 3 * H;
      S* gate_t = gates_.data() + t * BK * 4 * H;
#pragma omp parallel for if (BK * H > 8192)
      for (index_t row = 0; row < BK; ++row) {
        const index_t b = row / K, k = row % K;
        const S* gi = gi_t + b * 3 * H;
        const S* gh = gh_.data() + row * 3 * H;
        const S* dk = decay.data + k * H;
        const S* hp = hprev + row * H;
        S* h = hnext + row * H;
        S* g = gate_t + row * 4 * H;  // [r | z | n | gh_n]
#pragma omp simd
        for (index_t j = 0; j < H; ++j) {
          const S r = sigmoid(gi[j] + gh[j]);
          const S z = sigmoid(gi[H + j] + gh[H + j] + dk[j]);
          const S n = tanh_fast(gi[2 * H + j] + r * gh[2 * H + j]);
          h[j] = (S(1) - z) * n + z * hp[j];
          g[j] = r;
          g[H + j] = z;
          g[2 * H + j] = n;
          g[3 * H + j] = gh[2 * H + j];
        }
      }
    }
    if (!sT.empty()) std::copy_n(Yk.data + (T - 1) * BK * H, BK * H, sT.data);
  }

  // Saved from forward: s0, gates (r, z, n, gh_n), and the outputs Yk (which are the
  // states h_t). dYk (T,B,K,H), dsT (B,K,H) or empty → dP (T,B,3H) +=, ddecay (K,H) +=,
  // dW_hh, db_hh +=, ds0 (B,K,H) += where wanted.
  void recur_backward(const RecurIn<S>&, CView<S> Yk, const RecurGrad<S>& grad) {
    const CView<S> dYk = grad.dYk;
    const View<S> dP = grad.dP;
    const index_t T = Yk.dim(0), B = Yk.dim(1), K = Yk.dim(2), H = H_, BK = B * K;
    dgh_.resize({T, B, K, 3 * H});
    carry_.resize({BK, H});  // at t = T−1: the final state's gradient, h_T = Yk_{T−1}
    if (grad.dsT.empty())
      carry_.zero();
    else
      std::copy(grad.dsT.begin(), grad.dsT.end(), carry_.data());
    this->begin_grad_partials(B, K);

    this->pack_recurrent_backward(BK);
    for (index_t t = T - 1; t >= 0; --t) {
      const S* hprev = t == 0 ? s0_.data() : Yk.data + (t - 1) * BK * H;
      const S* gate_t = gates_.data() + t * BK * 4 * H;
      const S* dy_t = dYk.data + t * BK * H;
      S* dgh_t = dgh_.data() + t * BK * 3 * H;
      S* dP_t = dP.data + t * B * 3 * H;
#pragma omp parallel for if (BK * H > 8192)
      for (index_t b = 0; b < B; ++b) {
        S* dgi = dP_t + b * 3 * H;  // the K perspectives of sequence b share gi
        S* dbias = this->bias_partial(b);
        for (index_t k = 0; k < K; ++k) {
          const index_t row = b * K + k;
          const S* g = gate_t + row * 4 * H;
          const S* hp = hprev + row * H;
          S* dh_carry = carry_.data() + row * H;
          S* dgh = dgh_t + row * 3 * H;
          S* ddecay_k = this->decay_partial(b, k);
#pragma omp simd
          for (index_t j = 0; j < H; ++j) {
            const S r = g[j], z = g[H + j], n = g[2 * H + j], ghn = g[3 * H + j];
            const S dh = dy_t[row * H + j] + dh_carry[j];
            const S dn_pre = dh * (S(1) - z) * (S(1) - n * n);
            const S dz_pre = dh * (hp[j] - n) * z * (S(1) - z);
            const S dr_pre = dn_pre * ghn * r * (S(1) - r);
            dgh[j] = dr_pre;
            dgh[H + j] = dz_pre;
            dgh[2 * H + j] = dn_pre * r;
            dgi[j] += dr_pre;
            dgi[H + j] += dz_pre;
            dgi[2 * H + j] += dn_pre;
            dbias[j] += dr_pre;
            dbias[H + j] += dz_pre;
            dbias[2 * H + j] += dn_pre * r;
            ddecay_k[j] += dz_pre;  // the decay shifts z
            dh_carry[j] = dh * z;   // the direct path h' ← z ⊙ h
          }
        }
      }
      // dh_{t−1} += dgh_t · W_hh; at t = 0 that is s0's, only when wanted.
      if (t > 0 || !grad.ds0.empty()) this->recurrent_projection_backward(dgh_t, carry_.data());
    }
    this->recurrent_weight_grads(dgh_.data(), s0_.data(), Yk.data, T, BK);
    this->finish_grad_partials(B, K, grad.ddecay);
    if (!grad.ds0.empty())
      for (index_t i = 0; i < grad.ds0.numel(); ++i) grad.ds0[i] += carry_[i];
  }

 private:
  Tensor<S> s0_;     // (B,K,H) initial state of the last forward
  Tensor<S> gates_;  // (T,B,K,4H) r, z, n, gh_n of the last forward
  Tensor<S> gh_;     // (BK,3H) scratch
  Tensor<S> dgh_;    // (T,B,K,3H) ∂L/∂gh pre-activations
  Tensor<S> carry_;  // (BK,H) ∂L/∂h_{t−1} carried back through time
};

}  // namespace mtp
