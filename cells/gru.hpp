// GRU cell with a per-perspective update-gate decay (DESIGN §2). PyTorch gate order
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
// belongs to the wrapper. With K = 1 and decay = 0 this is torch.nn.GRU.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include "mtp/core/cell.hpp"
#include "mtp/core/gemm.hpp"
#include "mtp/core/ops/activations.hpp"
#include "mtp/core/ops/linear.hpp"

namespace mtp {

template <class S>
class Gru {
 public:
  using Scalar = S;
  struct Config {
    index_t input = 0;   // I
    index_t hidden = 0;  // H
  };
  static constexpr std::string_view kName = "gru";
  // The mixer of a model of width W (DESIGN §2): H = W.
  static Config model_config(index_t width) { return {width, width}; }
  // I and H from the shapes of a parameter file: weight_ih is (3H, I).
  template <class ShapeOf>
  static Config infer_config(ShapeOf&& shape_of) {
    const std::vector<index_t> w = shape_of("weight_ih");
    MTP_CHECK(w.size() == 2 && w[0] % 3 == 0 && w[0] > 0 && w[1] > 0,
              "weight_ih has shape {}, expected (3H,I)", shape_str(w));
    return {w[1], w[0] / 3};
  }

  explicit Gru(const Config& cfg) : I_(cfg.input), H_(cfg.hidden) {
    MTP_CHECK(I_ > 0 && H_ > 0, "gru needs input and hidden widths > 0, got I={} H={}", I_, H_);
  }

  index_t input_width() const { return I_; }
  index_t pre_width() const { return 3 * H_; }
  index_t recur_width() const { return H_; }
  index_t state_width() const { return H_; }
  index_t decay_width() const { return H_; }
  index_t output_width() const { return H_; }

  void declare(ParamStore<S>& store, const std::string& prefix) {
    weight_ih_ = store.add(prefix + "weight_ih", {3 * H_, I_}, ParamRole::base, true);
    weight_hh_ = store.add(prefix + "weight_hh", {3 * H_, H_}, ParamRole::base, true);
    bias_ih_ = store.add(prefix + "bias_ih", {3 * H_});
    bias_hh_ = store.add(prefix + "bias_hh", {3 * H_});
  }
  void bind(ParamStore<S>& store) { store.bind(weight_ih_, weight_hh_, bias_ih_, bias_hh_); }

  // PyTorch's GRU init, U(−1/√H, 1/√H) everywhere; base decay 0.
  void init(RngSequence& rng, View<S> base_decay, LayerPosition) {
    const double a = 1.0 / std::sqrt(double(H_));
    for (Param<S>* p : {&weight_ih_, &weight_hh_, &bias_ih_, &bias_hh_})
      for (S& w : p->value) w = S(rng.uniform(-a, a));
    std::fill(base_decay.begin(), base_decay.end(), S(0));
  }

  // x (T,B,I) → P = gi (T,B,3H).
  void pre_forward(CView<S> x, View<S> P) {
    linear_forward<S>(x, weight_ih_.value, bias_ih_.value.data, P);
  }

  // P (T,B,3H), decay (K,H), s0 (B,K,H) or empty → Yk (T,B,K,H), sT (B,K,H) or empty.
  // s0 and sT may alias. Saves s0 and the gates (r, z, n, gh_n) for backward.
  void recur_forward(CView<S> P, CView<S> decay, CView<S> s0, View<S> Yk, View<S> sT) {
    const index_t T = Yk.dim(0), B = Yk.dim(1), K = Yk.dim(2), H = H_, BK = B * K;
    s0_.resize({B, K, H});
    if (s0.empty())
      s0_.zero();
    else
      std::copy(s0.begin(), s0.end(), s0_.data());
    gates_.resize({T, B, K, 4 * H});
    gh_.resize({BK, 3 * H});
    const S* Whh = weight_hh_.value.data;
    const S* bhh = bias_hh_.value.data;

    for (index_t t = 0; t < T; ++t) {
      const S* hprev = t == 0 ? s0_.data() : Yk.data + (t - 1) * BK * H;
      S* hnext = Yk.data + t * BK * H;
      // gh (BK,3H) = hprev (BK,H) · W_hh^T (H,3H) + b_hh
      matmul(hprev, false, Whh, true, gh_.data(), BK, 3 * H, H, false, bhh);
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

  void post_forward(CView<S> A, CView<S>, CView<S>, View<S> y) {
    std::copy(A.begin(), A.end(), y.data);
  }
  void post_backward(CView<S> dy, CView<S>, CView<S>, CView<S>, View<S> dA, View<S>, View<S>) {
    std::copy(dy.begin(), dy.end(), dA.data);
  }

  // Saved from forward: s0, gates (r, z, n, gh_n), and the outputs Yk (which are the
  // states h_t). dYk (T,B,K,H) → dP (T,B,3H) +=, ddecay (K,H) +=, dW_hh, db_hh +=.
  void recur_backward(CView<S> dYk, CView<S>, CView<S>, CView<S> Yk, View<S> dP, View<S> ddecay) {
    const index_t T = Yk.dim(0), B = Yk.dim(1), K = Yk.dim(2), H = H_, BK = B * K;
    dgh_.resize({T, B, K, 3 * H});
    carry_.resize({BK, H});
    carry_.zero();
    const S* Whh = weight_hh_.value.data;

    for (index_t t = T - 1; t >= 0; --t) {
      const S* hprev = t == 0 ? s0_.data() : Yk.data + (t - 1) * BK * H;
      const S* gate_t = gates_.data() + t * BK * 4 * H;
      const S* dy_t = dYk.data + t * BK * H;
      S* dgh_t = dgh_.data() + t * BK * 3 * H;
      S* dP_t = dP.data + t * B * 3 * H;
#pragma omp parallel for if (BK * H > 8192)
      for (index_t b = 0; b < B; ++b) {
        S* dgi = dP_t + b * 3 * H;  // the K perspectives of sequence b share gi
        for (index_t k = 0; k < K; ++k) {
          const index_t row = b * K + k;
          const S* g = gate_t + row * 4 * H;
          const S* hp = hprev + row * H;
          S* dh_carry = carry_.data() + row * H;
          S* dgh = dgh_t + row * 3 * H;
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
            dh_carry[j] = dh * z;  // the direct path h' ← z ⊙ h
          }
        }
      }
      // dh_{t−1} (BK,H) += dgh_t (BK,3H) · W_hh (3H,H); the initial state needs none.
      if (t > 0) matmul(dgh_t, false, Whh, false, carry_.data(), BK, H, 3 * H, true);
    }

    // dW_hh (3H,H) += Σ_t dgh_t^T · h_{t−1}: one GEMM over all steps after t = 0,
    // whose h_{t−1} rows are Yk[0..T−2], contiguous; plus the t = 0 term on s0.
    const index_t rows = BK;
    matmul(dgh_.data(), true, s0_.data(), false, weight_hh_.grad.data, 3 * H, H, rows, true);
    if (T > 1)
      matmul(dgh_.data() + rows * 3 * H, true, Yk.data, false, weight_hh_.grad.data, 3 * H, H,
             (T - 1) * rows, true);
    sum_rows_accumulate(dgh_.data(), T * rows, 3 * H, bias_hh_.grad.data);
    // ddecay[k] = Σ_{t,b} ∂L/∂(z pre-activation), the z block of dgh.
    for (index_t tb = 0; tb < T * B; ++tb)
      for (index_t k = 0; k < K; ++k) {
        const S* dz = dgh_.data() + (tb * K + k) * 3 * H + H;
        S* dd = ddecay.data + k * H;
        for (index_t j = 0; j < H; ++j) dd[j] += dz[j];
      }
  }

  // Saved from forward: x. dP = dgi (T,B,3H) → dx +=, dW_ih +=, db_ih +=.
  void pre_backward(CView<S> dP, CView<S> x, View<S> dx) {
    const index_t R = x.numel() / I_;
    matmul(dP.data, false, weight_ih_.value.data, false, dx.data, R, I_, 3 * H_, true);
    matmul(dP.data, true, x.data, false, weight_ih_.grad.data, 3 * H_, I_, R, true);
    sum_rows_accumulate(dP.data, R, 3 * H_, bias_ih_.grad.data);
  }

 private:
  index_t I_, H_;
  Param<S> weight_ih_, weight_hh_, bias_ih_, bias_hh_;
  Tensor<S> s0_;     // (B,K,H) initial state of the last forward
  Tensor<S> gates_;  // (T,B,K,4H) r, z, n, gh_n of the last forward
  Tensor<S> gh_;     // (BK,3H) scratch
  Tensor<S> dgh_;    // (T,B,K,3H) ∂L/∂gh pre-activations
  Tensor<S> carry_;  // (BK,H) ∂L/∂h_{t−1} carried back through time
};

}  // namespace mtp
