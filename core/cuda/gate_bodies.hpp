// The pointwise halves of the GRU and LSTM steps (cells/gru.hpp, cells/lstm.hpp): the
// recurrent GEMM gh = h W_hh^T of a step runs on cuBLAS over all B·K rows, then one of
// these bodies applies the gates. Forward: one thread per (b, k, j). Backward: one
// thread per (b, j) looping over the K perspectives, because the K perspectives of a
// sequence share gi: the thread sums their dgi itself (no atomics) and owns its
// entries of the per-sequence partials of db_hh and ddecay.
//
// Partials (B, G·H + K·H) = [db_hh | ddecay[0] | … | ddecay[K−1]] per sequence b,
// accumulated over the steps and reduced over b once by MatrixReduce, as the CPU cells
// do (cells/matrix_cell.hpp).
#pragma once

#include "mtp/core/cuda/hd.hpp"

namespace mtp::cuda {

// GRU step, one thread per (b, k, j). gi (B,3H) = this step's W_ih x + b_ih; gh (BK,3H)
// = h_{t−1} W_hh^T without its bias, b_hh (3H), decay (K,H), hprev (BK,H) → h (BK,H);
// saves gates (BK,4H) = [r | z | n | gh_n + b_hn].
template <class S>
struct GruGates {
  index_t B, H;
  int K;
  const S *gi, *gh, *b_hh, *decay, *hprev;
  S *h, *gates;
  index_t count() const { return B * K * H; }
  MTP_HD void operator()(index_t i) const {
    const index_t row = i / H, j = i % H, b = row / K, k = row % K;
    const S* x = gi + b * 3 * H;
    const S* r_ = gh + row * 3 * H;
    const S ghn = r_[2 * H + j] + b_hh[2 * H + j];
    const S r = hd_sigmoid(x[j] + r_[j] + b_hh[j]);
    const S z = hd_sigmoid(x[H + j] + r_[H + j] + b_hh[H + j] + decay[k * H + j]);
    const S n = hd_tanh(x[2 * H + j] + r * ghn);
    h[i] = (S(1) - z) * n + z * hprev[i];
    S* g = gates + row * 4 * H;
    g[j] = r;
    g[H + j] = z;
    g[2 * H + j] = n;
    g[3 * H + j] = ghn;
  }
};

// Backward of GruGates, one thread per (b, j). Saved: gates, hprev. dy (BK,H) = this
// step's dYk; carry (BK,H) holds ∂L/∂h_t from later steps and leaves as dh ⊙ z, to
// which the caller adds dgh W_hh → dgh (BK,3H), dgi (B,3H) overwritten (the sum over k),
// partials +=.
template <class S>
struct GruGatesBackward {
  index_t B, H;
  int K;
  const S *gates, *hprev, *dy;
  S *carry, *dgh, *dgi, *partial;
  index_t count() const { return B * H; }
  MTP_HD void operator()(index_t i) const {
    const index_t b = i / H, j = i % H, GH = 3 * H;
    S* part = partial + b * (GH + K * H);
    S sr = 0, sz = 0, sn = 0;
    for (int k = 0; k < K; ++k) {
      const index_t row = b * K + k, e = row * H + j;
      const S* g = gates + row * 4 * H;
      const S r = g[j], z = g[H + j], n = g[2 * H + j], ghn = g[3 * H + j];
      const S dh = dy[e] + carry[e];
      const S dn_pre = dh * (S(1) - z) * (S(1) - n * n);
      const S dz_pre = dh * (hprev[e] - n) * z * (S(1) - z);
      const S dr_pre = dn_pre * ghn * r * (S(1) - r);
      S* d = dgh + row * GH;
      d[j] = dr_pre;
      d[H + j] = dz_pre;
      d[2 * H + j] = dn_pre * r;
      sr += dr_pre;
      sz += dz_pre;
      sn += dn_pre;
      part[j] += dr_pre;
      part[H + j] += dz_pre;
      part[2 * H + j] += dn_pre * r;
      part[GH + k * H + j] += dz_pre;  // the decay shifts z
      carry[e] = dh * z;
    }
    dgi[b * GH + j] = sr;
    dgi[b * GH + H + j] = sz;
    dgi[b * GH + 2 * H + j] = sn;
  }
};

// LSTM step, one thread per (b, k, j). gi (B,4H), gh (BK,4H) without bias, b_hh (4H),
// decay (K,H), cprev (BK,H) → c, tanh(c), h (BK,H); saves gates (BK,4H) = [i | f | g | o].
template <class S>
struct LstmGates {
  index_t B, H;
  int K;
  const S *gi, *gh, *b_hh, *decay, *cprev;
  S *gates, *c, *tc, *h;
  index_t count() const { return B * K * H; }
  MTP_HD void operator()(index_t e) const {
    const index_t row = e / H, j = e % H, b = row / K, k = row % K;
    const S* x = gi + b * 4 * H;
    const S* r_ = gh + row * 4 * H;
    const S ig = hd_sigmoid(x[j] + r_[j] + b_hh[j]);
    const S fg = hd_sigmoid(x[H + j] + r_[H + j] + b_hh[H + j] + decay[k * H + j]);
    const S gg = hd_tanh(x[2 * H + j] + r_[2 * H + j] + b_hh[2 * H + j]);
    const S og = hd_sigmoid(x[3 * H + j] + r_[3 * H + j] + b_hh[3 * H + j]);
    const S cn = fg * cprev[e] + ig * gg;
    const S t = hd_tanh(cn);
    S* g = gates + row * 4 * H;
    g[j] = ig;
    g[H + j] = fg;
    g[2 * H + j] = gg;
    g[3 * H + j] = og;
    c[e] = cn;
    tc[e] = t;
    h[e] = og * t;
  }
};

// Backward of LstmGates, one thread per (b, j). Saved: gates, cprev, tanh(c). dy (BK,H);
// carry_h (BK,H) holds ∂L/∂h_t through W_hh (the caller's GEMM) and is cleared for the
// next one; carry_c (BK,H) ∂L/∂c_t → dc ⊙ f. dgh (BK,4H), dgi (B,4H) overwritten,
// partials +=.
template <class S>
struct LstmGatesBackward {
  index_t B, H;
  int K;
  const S *gates, *cprev, *tc, *dy;
  S *carry_h, *carry_c, *dgh, *dgi, *partial;
  index_t count() const { return B * H; }
  MTP_HD void operator()(index_t i) const {
    const index_t b = i / H, j = i % H, GH = 4 * H;
    S* part = partial + b * (GH + K * H);
    S si = 0, sf = 0, sg = 0, so = 0;
    for (int k = 0; k < K; ++k) {
      const index_t row = b * K + k, e = row * H + j;
      const S* g = gates + row * 4 * H;
      const S ig = g[j], fg = g[H + j], gg = g[2 * H + j], og = g[3 * H + j];
      const S dh = dy[e] + carry_h[e];
      const S dc = carry_c[e] + dh * og * (S(1) - tc[e] * tc[e]);
      const S di = dc * gg * ig * (S(1) - ig);
      const S df = dc * cprev[e] * fg * (S(1) - fg);
      const S dg = dc * ig * (S(1) - gg * gg);
      const S dout = dh * tc[e] * og * (S(1) - og);
      S* d = dgh + row * GH;
      d[j] = di;
      d[H + j] = df;
      d[2 * H + j] = dg;
      d[3 * H + j] = dout;
      si += di;
      sf += df;
      sg += dg;
      so += dout;
      part[j] += di;
      part[H + j] += df;
      part[2 * H + j] += dg;
      part[3 * H + j] += dout;
      part[GH + k * H + j] += df;  // the decay shifts f
      carry_c[e] = dc * fg;
      carry_h[e] = 0;
    }
    dgi[b * GH + j] = si;
    dgi[b * GH + H + j] = sf;
    dgi[b * GH + 2 * H + j] = sg;
    dgi[b * GH + 3 * H + j] = so;
  }
};

// The partials summed over b, one thread per entry: db_hh (G·H) +=, ddecay (K,H) +=.
template <class S>
struct MatrixReduce {
  index_t B, GH, KH;
  const S* partial;
  S *db_hh, *ddecay;
  index_t count() const { return GH + KH; }
  MTP_HD void operator()(index_t i) const {
    double s = 0;
    for (index_t b = 0; b < B; ++b) s += double(partial[b * (GH + KH) + i]);
    if (i < GH)
      db_hh[i] += S(s);
    else
      ddecay[i - GH] += S(s);
  }
};

}  // namespace mtp::cuda
