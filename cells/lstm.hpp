// LSTM cell with a per-perspective forget-gate decay (docs/contract.md §4.2). PyTorch gate order
// (i, f, g, o).
//
//   gi = W_ih x + b_ih                         pre,   (T,B,4H) over all T·B rows at once
//   gh = W_hh h + b_hh                         recur, one GEMM per step over all B·K rows
//   i = σ(gi_i + gh_i)      f = σ(gi_f + gh_f + decay[k])     decay[k] shifts the forget
//   g = tanh(gi_g + gh_g)   o = σ(gi_o + gh_o)                 gate: larger keeps more
//   c' = f ⊙ c + i ⊙ g      h' = o ⊙ tanh(c')                  h' is perspective k's output
//   post: identity (O = H)
//
// Params: weight_ih (4H,I), weight_hh (4H,H), bias_ih (4H), bias_hh (4H); decay (K,H)
// belongs to the wrapper. State (B,K,2H) = [h | c]. With K = 1 and decay = 0 this is
// torch.nn.LSTM.
#pragma once

#include <algorithm>
#include <cmath>
#include <string_view>

#include "mtp/cells/matrix_cell.hpp"
#include "mtp/core/ops/activations.hpp"

namespace mtp {

template <class S>
class Lstm : public GatedMatrixCell<S, 4> {
  using Base = GatedMatrixCell<S, 4>;
  using Base::H_;

 public:
  using typename Base::Config;
  static constexpr std::string_view kName = "lstm";
  static constexpr std::string_view kDescription = "LSTM, decay on the forget gate";

  explicit Lstm(const Config& cfg) : Base(cfg) {}

  // The fraction of a channel's state kept per step at decay d with neutral (zero) gate
  // input: the forget gate f = σ(d). What reports turn into the views' time scales, 1/(1 −
  // retention).
  static double retention(double d) { return 1.0 / (1.0 + std::exp(-d)); }

  index_t state_width() const { return 2 * H_; }
  // Floats per (t, b) kept for backward, with backward's scratch: the gates (K,4H), c and
  // tanh(c) (K,H) each, ∂L/∂gh (K,4H). For memory estimates.
  index_t activation_floats_per_token(int K) const { return 10 * index_t(K) * H_; }

  // P (T,B,4H), decay (K,H), s0 (B,K,2H) or empty → Yk (T,B,K,H) = h, sT (B,K,2H) or
  // empty. s0 and sT may alias. Saves h0, c0, the gates (i, f, g, o), c and tanh(c).
  void recur_forward(const RecurIn<S>& in, const RecurOut<S>& out) {
    const CView<S> P = in.P, decay = in.decay, s0 = in.s0;
    const View<S> Yk = out.Yk, sT = out.sT;
    const index_t T = Yk.dim(0), B = Yk.dim(1), K = Yk.dim(2), H = H_, BK = B * K;
    h0_.resize({BK, H});
    c0_.resize({BK, H});
    if (s0.empty()) {
      h0_.zero();
      c0_.zero();
    } else {
      for (index_t row = 0; row < BK; ++row) {
        std::copy_n(s0.data + row * 2 * H, H, h0_.data() + row * H);
        std::copy_n(s0.data + row * 2 * H + H, H, c0_.data() + row * H);
      }
    }
    gates_.resize({T, B, K, 4 * H});
    c_.resize({T, B, K, H});
    tanh_c_.resize({T, B, K, H});
    gh_.resize({BK, 4 * H});

    this->pack_recurrent_forward(BK);
    for (index_t t = 0; t < T; ++t) {
      const S* hprev = t == 0 ? h0_.data() : Yk.data + (t - 1) * BK * H;
      const S* cprev = t == 0 ? c0_.data() : c_.data() + (t - 1) * BK * H;
      this->recurrent_projection(hprev, gh_.data());
      const S* gi_t = P.data + t * B * 4 * H;
      S* gate_t = gates_.data() + t * BK * 4 * H;
      S* c_t = c_.data() + t * BK * H;
      S* tc_t = tanh_c_.data() + t * BK * H;
      S* h_t = Yk.data + t * BK * H;
#pragma omp parallel for if (BK * H > 8192)
      for (index_t row = 0; row < BK; ++row) {
        const index_t b = row / K, k = row % K;
        const S* gi = gi_t + b * 4 * H;
        const S* gh = gh_.data() + row * 4 * H;
        const S* dk = decay.data + k * H;
        const S* cp = cprev + row * H;
        S* g = gate_t + row * 4 * H;  // [i | f | g | o]
#pragma omp simd
        for (index_t j = 0; j < H; ++j) {
          const S ig = sigmoid(gi[j] + gh[j]);
          const S fg = sigmoid(gi[H + j] + gh[H + j] + dk[j]);
          const S gg = tanh_fast(gi[2 * H + j] + gh[2 * H + j]);
          const S og = sigmoid(gi[3 * H + j] + gh[3 * H + j]);
          const S c = fg * cp[j] + ig * gg;
          const S tc = tanh_fast(c);
          g[j] = ig;
          g[H + j] = fg;
          g[2 * H + j] = gg;
          g[3 * H + j] = og;
          c_t[row * H + j] = c;
          tc_t[row * H + j] = tc;
          h_t[row * H + j] = og * tc;
        }
      }
    }
    if (!sT.empty())
      for (index_t row = 0; row < BK; ++row) {
        std::copy_n(Yk.data + ((T - 1) * BK + row) * H, H, sT.data + row * 2 * H);
        std::copy_n(c_.data() + ((T - 1) * BK + row) * H, H, sT.data + row * 2 * H + H);
      }
  }

  // Saved from forward: h0, c0, gates (i, f, g, o), c, tanh(c), and the outputs Yk (the
  // states h_t). dYk (T,B,K,H), dsT (B,K,2H) or empty → dP (T,B,4H) +=, ddecay (K,H) +=,
  // dW_hh, db_hh +=, ds0 (B,K,2H) += where wanted.
  void recur_backward(const RecurIn<S>&, CView<S> Yk, const RecurGrad<S>& grad) {
    const CView<S> dYk = grad.dYk;
    const View<S> dP = grad.dP;
    const index_t T = Yk.dim(0), B = Yk.dim(1), K = Yk.dim(2), H = H_, BK = B * K;
    dgh_.resize({T, B, K, 4 * H});
    carry_h_.resize({BK, H});
    carry_c_.resize({BK, H});
    // At t = T−1 the carries hold the final state's gradient [dh_T | dc_T].
    if (grad.dsT.empty()) {
      carry_h_.zero();
      carry_c_.zero();
    } else {
      for (index_t row = 0; row < BK; ++row) {
        std::copy_n(grad.dsT.data + row * 2 * H, H, carry_h_.data() + row * H);
        std::copy_n(grad.dsT.data + row * 2 * H + H, H, carry_c_.data() + row * H);
      }
    }
    this->begin_grad_partials(B, K);

    this->pack_recurrent_backward(BK);
    for (index_t t = T - 1; t >= 0; --t) {
      const S* cprev = t == 0 ? c0_.data() : c_.data() + (t - 1) * BK * H;
      const S* gate_t = gates_.data() + t * BK * 4 * H;
      const S* tc_t = tanh_c_.data() + t * BK * H;
      const S* dy_t = dYk.data + t * BK * H;
      S* dgh_t = dgh_.data() + t * BK * 4 * H;
      S* dP_t = dP.data + t * B * 4 * H;
#pragma omp parallel for if (BK * H > 8192)
      for (index_t b = 0; b < B; ++b) {
        S* dgi = dP_t + b * 4 * H;  // the K perspectives of sequence b share gi
        S* dbias = this->bias_partial(b);
        for (index_t k = 0; k < K; ++k) {
          S* ddecay_k = this->decay_partial(b, k);
          const index_t row = b * K + k;
          const S* g = gate_t + row * 4 * H;
          const S* cp = cprev + row * H;
          const S* tc = tc_t + row * H;
          S* dh_carry = carry_h_.data() + row * H;
          S* dc_carry = carry_c_.data() + row * H;
          S* dgh = dgh_t + row * 4 * H;
#pragma omp simd
          for (index_t j = 0; j < H; ++j) {
            const S ig = g[j], fg = g[H + j], gg = g[2 * H + j], og = g[3 * H + j];
            const S dh = dy_t[row * H + j] + dh_carry[j];
            const S dc = dc_carry[j] + dh * og * (S(1) - tc[j] * tc[j]);
            const S di = dc * gg * ig * (S(1) - ig);
            const S df = dc * cp[j] * fg * (S(1) - fg);
            const S dg = dc * ig * (S(1) - gg * gg);
            const S dout = dh * tc[j] * og * (S(1) - og);
            dgh[j] = di;
            dgh[H + j] = df;
            dgh[2 * H + j] = dg;
            dgh[3 * H + j] = dout;
            dgi[j] += di;
            dgi[H + j] += df;
            dgi[2 * H + j] += dg;
            dgi[3 * H + j] += dout;
            dbias[j] += di;
            dbias[H + j] += df;
            dbias[2 * H + j] += dg;
            dbias[3 * H + j] += dout;
            ddecay_k[j] += df;  // the decay shifts f
            dc_carry[j] = dc * fg;
            dh_carry[j] = 0;  // h reaches the next step only through W_hh, added below
          }
        }
      }
      // dh_{t−1} += dgh_t · W_hh; at t = 0 that is s0's, only when wanted.
      if (t > 0 || !grad.ds0.empty()) this->recurrent_projection_backward(dgh_t, carry_h_.data());
    }
    this->recurrent_weight_grads(dgh_.data(), h0_.data(), Yk.data, T, BK);
    this->finish_grad_partials(B, K, grad.ddecay);
    if (!grad.ds0.empty())
      for (index_t row = 0; row < BK; ++row)
        for (index_t j = 0; j < H; ++j) {
          grad.ds0[row * 2 * H + j] += carry_h_[row * H + j];
          grad.ds0[row * 2 * H + H + j] += carry_c_[row * H + j];
        }
  }

 private:
  Tensor<S> h0_, c0_;            // (BK,H) initial state of the last forward
  Tensor<S> gates_;              // (T,B,K,4H) i, f, g, o of the last forward
  Tensor<S> c_, tanh_c_;         // (T,B,K,H) cell states and their tanh
  Tensor<S> gh_;                 // (BK,4H) scratch
  Tensor<S> dgh_;                // (T,B,K,4H) ∂L/∂ gate pre-activations
  Tensor<S> carry_h_, carry_c_;  // (BK,H) ∂L/∂h_{t−1}, ∂L/∂c_{t−1}
};

}  // namespace mtp
