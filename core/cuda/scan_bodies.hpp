// The diagonal recurrences fused over the K perspectives (cells/rwkv.hpp, cells/ssm.hpp):
// one thread per channel of one sequence, (b, c) or (b, n), runs the whole time loop,
// reads its k_t, v_t (or b_t) once per step and updates all K states. The K states live
// in registers: KM is a compile-time bound on K (4 covers the paper's 2–3; 64 is the
// general case), and every loop over k runs to KM with a `k < K` guard so that the
// arrays are indexed by constants.
//
// The mixed scans (core/cell.hpp's MixingCell, core/perspectives.hpp's mixed_scan): with
// the aggregator's weights α (T,B,K), a forward thread sums A_t = Σ_k α_{t,k} out^k_t in a
// register and writes only A (T,B,C); its backward takes dA (T,B,C) and uses
// ∂L/∂out^k_t = α_{t,k} dA_t. The per-perspective outputs (T,B,K,C) and their gradient
// are never written. dα_{t,k} = ⟨dA_t, out^k_t⟩ sums over channels, i.e. across the
// scan's threads, so a separate body with one thread per (t, b, k) computes it (no
// atomics: the sum's order is fixed, results are the same run to run).
//
// Each body is a functor: operator()(i) is one thread's work. The CUDA kernels
// (kernels.cu) call it for i < count(); the host-driven tests call it in a loop. The
// scans have apply<KM>(i) instead, and run as FusedK<KM, Scan>.
#pragma once

#include "mtp/core/cuda/hd.hpp"

namespace mtp::cuda {

// "No history yet", cells/rwkv.hpp's kWkvNoHistory.
inline constexpr double kNoHistory = -1e38;

// Two terms with exponents e_old, e_fresh brought to their maximum: the factors
// e^{e_old − m}, e^{e_fresh − m} (one of them 1). The difference in double, the exp in S.
// (cells/rwkv.hpp's rescale takes the difference in S: the CPU scan keeps p as
// anchor + n·w in S, this kernel keeps p in double.)
template <class S>
struct HdScale {
  S old, fresh;
};
template <class S>
MTP_HD inline HdScale<S> hd_rescale(double e_old, double e_fresh) {
  const S d = S(e_old - e_fresh);
  const bool old_wins = d > S(0);
  const S e = hd_exp(old_wins ? -d : d);
  return {old_wins ? S(1) : e, old_wins ? e : S(1)};
}

// wkv = (a e^{p−m} + v e^{u+k−m}) / (b e^{p−m} + e^{u+k−m}), m = max(p, u + k): the output
// of a step from the (a, b, p) entering it. Shared by the forward and the dα body, so the
// latter recomputes exactly the forward's value.
template <class S>
MTP_HD inline S hd_wkv_output(S a, S b, double p, double uk, S v) {
  const HdScale<S> out = hd_rescale<S>(p, uk);
  return (out.old * a + out.fresh * v) / (out.old * b + out.fresh);
}

// A scan with the bound KM ≥ K fixed: the body the kernels and loops run.
template <int KM, class Scan>
struct FusedK {
  Scan scan;
  index_t count() const { return scan.count(); }
  MTP_HD void operator()(index_t i) const { scan.template apply<KM>(i); }
};

// ------------------------------------------------------------------ RWKV-4 WKV

// w (K,C) = −exp(decay) in double; one thread per (k, c).
template <class S>
struct WkvDecay {
  index_t n;
  const S* decay;  // (K,C)
  double* w;       // (K,C)
  index_t count() const { return n; }
  MTP_HD void operator()(index_t i) const { w[i] = -::exp(double(decay[i])); }
};

// One thread per (b, c). k, v (T,B,C), u = time_first (C), w (K,C), s0 (B,K,4C) or null
// → y = wkv (T,B,K,C), or with α (T,B,K) the mixed y = A (T,B,C) = Σ_k α_k wkv^k; saved
// (a, b) (T,B,K,2C) and p (T,B,K,C) entering every step (null: not saved, inference); sT
// (B,K,4C) or null with the last x of (T,B,C) x. s0 and sT may alias: each thread reads
// its part of s0 before it writes its part of sT.
template <class S>
struct WkvForward {
  index_t T, B, C;
  int K;
  const S *k, *v, *u;
  const double* w;
  const S* s0;
  S* y;
  S* saved_ab;
  double* saved_p;
  S* sT;
  const S* x;
  const S* alpha = nullptr;  // (T,B,K), or null: y is Yk (last, so that older callers
                             // that list the fields above still compile)
  index_t count() const { return B * C; }
  template <int KM>
  MTP_HD void apply(index_t i) const {
    const index_t b = i / C, c = i % C;
    // Value-initialised: GCC cannot see that the loops below fill what they read.
    S a[KM] = {}, bs[KM] = {};
    double p[KM] = {}, wk[KM] = {};
    MTP_UNROLL
    for (int q = 0; q < KM; ++q) {
      if (q >= K) break;
      const S* st = s0 ? s0 + (b * K + q) * 4 * C : nullptr;
      a[q] = st ? st[c] : S(0);
      bs[q] = st ? st[C + c] : S(0);
      p[q] = st ? double(st[2 * C + c]) : kNoHistory;
      wk[q] = w[q * C + c];
    }
    const double uc = double(u[c]);
    for (index_t t = 0; t < T; ++t) {
      const S kt = k[(t * B + b) * C + c], vt = v[(t * B + b) * C + c];  // once for all K
      S mixed = 0;  // Σ_k α_k wkv^k, in a register
      MTP_UNROLL
      for (int q = 0; q < KM; ++q) {
        if (q >= K) break;
        const index_t row = (t * B + b) * K + q;
        if (saved_ab) {
          saved_ab[row * 2 * C + c] = a[q];
          saved_ab[row * 2 * C + C + c] = bs[q];
          saved_p[row * C + c] = p[q];
        }
        const S wkv = hd_wkv_output<S>(a[q], bs[q], p[q], uc + double(kt), vt);
        if (alpha)
          mixed += alpha[row] * wkv;
        else
          y[row * C + c] = wkv;
        const double wp = wk[q] + p[q];
        const HdScale<S> st = hd_rescale<S>(wp, double(kt));
        a[q] = st.old * a[q] + st.fresh * vt;
        bs[q] = st.old * bs[q] + st.fresh;
        p[q] = hd_max(wp, double(kt));
      }
      if (alpha) y[(t * B + b) * C + c] = mixed;
    }
    if (sT) {
      MTP_UNROLL
      for (int q = 0; q < KM; ++q) {
        if (q >= K) break;
        S* st = sT + (b * K + q) * 4 * C;
        st[c] = a[q];
        st[C + c] = bs[q];
        st[2 * C + c] = S(p[q]);
        st[3 * C + c] = x[((T - 1) * B + b) * C + c];
      }
    }
  }
};

// Backward of WkvForward, one thread per (b, c). Saved from forward: (a, b, p) entering
// every step, w, and y = Yk, or with α nothing more (y may be null: wkv is recomputed
// from the saved state, as cells/rwkv.hpp does). gy = dYk (T,B,K,C), or with α (T,B,K)
// gy = dA (T,B,C) and ∂L/∂wkv^k = α_k dA → dk, dv (T,B,C) overwritten (the sum over the
// K perspectives, which share k and v); per-sequence partials gw = ∂L/∂w and gu = ∂L/∂u,
// (B,K,C), overwritten and reduced by WkvReduce. dα is WkvMixWeightGrad's. The adjoints
// of the sums run backwards in the state's own scale, ga_t = gA_t e^{p_t}, as
// cells/rwkv.hpp's scan_backward: every factor is then the forward's output pair or its
// advance pair (e^{w+p_t−p_{t+1}}, e^{k_t−p_{t+1}}), two exps per step and no exponent
// of the adjoints' own.
template <class S>
struct WkvBackward {
  index_t T, B, C;
  int K;
  const S *k, *v, *u;
  const double* w;
  const S* saved_ab;
  const double* saved_p;
  const S *y, *gy;
  S *dk, *dv;
  double *gw_part, *gu_part;
  const S* alpha = nullptr;  // (T,B,K), or null: gy is dYk and y is read
  index_t count() const { return B * C; }
  template <int KM>
  MTP_HD void apply(index_t i) const {
    const index_t b = i / C, c = i % C;
    S ga[KM] = {}, gb[KM] = {};
    double wk[KM] = {}, gw[KM] = {}, gu[KM] = {};
    MTP_UNROLL
    for (int j = 0; j < KM; ++j) {
      if (j >= K) break;
      ga[j] = gb[j] = S(0);
      wk[j] = w[j * C + c];
      gw[j] = gu[j] = 0;
    }
    const double uc = double(u[c]);
    for (index_t t = T - 1; t >= 0; --t) {
      const S kt = k[(t * B + b) * C + c], vt = v[(t * B + b) * C + c];
      const S dA = alpha ? gy[(t * B + b) * C + c] : S(0);  // once for all K
      S dkt = 0, dvt = 0;
      MTP_UNROLL
      for (int j = 0; j < KM; ++j) {
        if (j >= K) break;
        const index_t row = (t * B + b) * K + j;
        const S aa = saved_ab[row * 2 * C + c], bb = saved_ab[row * 2 * C + C + c];
        const double pp = saved_p[row * C + c];
        const HdScale<S> out = hd_rescale<S>(pp, uc + double(kt));
        const HdScale<S> adv = hd_rescale<S>(wk[j] + pp, double(kt));
        const S inv_d = S(1) / (out.old * bb + out.fresh);
        const S yt = alpha ? (out.old * aa + out.fresh * vt) * inv_d : y[row * C + c];
        const S g = alpha ? alpha[row] * dA : gy[row * C + c];
        const S direct = g * out.fresh * inv_d;  // g e^{u+k_t} / D_t
        const S gak = ga[j] * adv.fresh, gbk = gb[j] * adv.fresh;
        dvt += direct + gak;
        dkt += direct * (vt - yt) + gak * vt + gbk;
        gu[j] += double(direct * (vt - yt));
        gw[j] += double((ga[j] * aa + gb[j] * bb) * adv.old);  // e^w (gA A + gB B)
        const S f_out = g * out.old * inv_d;                   // g e^{p_t} / D_t
        ga[j] = f_out + ga[j] * adv.old;
        gb[j] = -f_out * yt + gb[j] * adv.old;
      }
      dk[(t * B + b) * C + c] = dkt;
      dv[(t * B + b) * C + c] = dvt;
    }
    MTP_UNROLL
    for (int j = 0; j < KM; ++j) {
      if (j >= K) break;
      gw_part[(b * K + j) * C + c] = gw[j];
      gu_part[(b * K + j) * C + c] = gu[j];
    }
  }
};

// dα (T,B,K) = ⟨dA_t, wkv^k_t⟩ of the mixed scan, one thread per (t, b, k) summing over
// the channels in a fixed order (deterministic, no atomics). Saved from forward: the
// (a, b, p) entering every step; wkv is recomputed from them exactly as the forward
// computed it. k, v, dA (T,B,C), u (C) → dα overwritten.
//
// Why recompute rather than have WkvBackward write the products dA·wkv^k (T,B,K,C) for a
// reduction to read: that buffer is as large as the Yk the mixed scan exists to avoid
// (4 + 4 bytes per (t, b, k, c) in float, write then read), while this body only reads:
// the saved state, 16 bytes per (t, b, k, c), plus k, v, dA per (t, b, c), shared by the K
// threads of a (t, b). It runs only when α takes a gradient (the learned selector, K > 1).
template <class S>
struct WkvMixWeightGrad {
  index_t T, B, C;
  int K;
  const S *k, *v, *u;
  const S* saved_ab;      // (T,B,K,2C)
  const double* saved_p;  // (T,B,K,C)
  const S* dA;            // (T,B,C)
  S* dalpha;              // (T,B,K)
  index_t count() const { return T * B * K; }
  MTP_HD void operator()(index_t row) const {
    const index_t tb = row / K;
    const S *kt = k + tb * C, *vt = v + tb * C, *da = dA + tb * C;
    const S *aa = saved_ab + row * 2 * C, *bb = aa + C;
    const double* pp = saved_p + row * C;
    double dot = 0;
    for (index_t c = 0; c < C; ++c)
      dot += double(da[c]) *
             double(hd_wkv_output<S>(aa[c], bb[c], pp[c], double(u[c]) + double(kt[c]), vt[c]));
    dalpha[row] = S(dot);
  }
};

// The sums over sequences of WkvBackward's partials, one thread per channel c:
// ddecay (K,C) += w ⊙ Σ_b gw (∂w/∂decay = w), dtime_first (C) += Σ_{b,k} gu.
template <class S>
struct WkvReduce {
  index_t B, C;
  int K;
  const double *w, *gw_part, *gu_part;
  S *ddecay, *du;
  index_t count() const { return C; }
  MTP_HD void operator()(index_t c) const {
    double su = 0;
    for (int k = 0; k < K; ++k) {
      double sw = 0;
      for (index_t b = 0; b < B; ++b) {
        sw += gw_part[(b * K + k) * C + c];
        su += gu_part[(b * K + k) * C + c];
      }
      ddecay[k * C + c] += S(sw * w[k * C + c]);
    }
    du[c] += S(su);
  }
};

// ------------------------------------------------------------------ RWKV token shift

// One thread per (t, b, c): the three mixed inputs xm = μ ⊙ x + (1 − μ) ⊙ x̄ (k, v, r),
// x̄_t = x_{t−1}, x̄_0 = x_prev[b·prev_stride + c] or 0 when x_prev is null.
template <class S>
struct TokenShiftForward {
  index_t T, B, C;
  const S* x;
  const S* x_prev;
  index_t prev_stride;
  const S *mu_k, *mu_v, *mu_r;
  S *xk, *xv, *xr;
  index_t count() const { return T * B * C; }
  MTP_HD S shifted(index_t t, index_t b, index_t c) const {
    if (t > 0) return x[((t - 1) * B + b) * C + c];
    return x_prev ? x_prev[b * prev_stride + c] : S(0);
  }
  MTP_HD void operator()(index_t i) const {
    const index_t c = i % C, b = (i / C) % B, t = i / (B * C);
    const S xt = x[i], xs = shifted(t, b, c);
    xk[i] = mu_k[c] * xt + (S(1) - mu_k[c]) * xs;
    xv[i] = mu_v[c] * xt + (S(1) - mu_v[c]) * xs;
    xr[i] = mu_r[c] * xt + (S(1) - mu_r[c]) * xs;
  }
};

// Backward of TokenShiftForward for x, one thread per (t, b, c). Saved: nothing but μ.
// g_k, g_v, g_r = ∂L/∂xm (T,B,C) → dx +=: x_t reaches xm_t through μ and xm_{t+1}
// through 1 − μ.
template <class S>
struct TokenShiftBackward {
  index_t T, B, C;
  const S *mu_k, *mu_v, *mu_r;
  const S *gk, *gv, *gr;
  S* dx;
  index_t count() const { return T * B * C; }
  MTP_HD void operator()(index_t i) const {
    const index_t c = i % C, t = i / (B * C), next = i + B * C;
    S d = mu_k[c] * gk[i] + mu_v[c] * gv[i] + mu_r[c] * gr[i];
    if (t + 1 < T)
      d += (S(1) - mu_k[c]) * gk[next] + (S(1) - mu_v[c]) * gv[next] + (S(1) - mu_r[c]) * gr[next];
    dx[i] += d;
  }
};

// The μ gradients, one thread per channel c: dμ (C) += Σ_{t,b} g ⊙ (x − x̄) for k, v, r.
// Saved from forward: x and the carried x_prev.
template <class S>
struct TokenShiftMuGrad {
  TokenShiftForward<S> fwd;  // x, x_prev and the shape
  const S *gk, *gv, *gr;
  S *dmu_k, *dmu_v, *dmu_r;
  index_t count() const { return fwd.C; }
  MTP_HD void operator()(index_t c) const {
    double sk = 0, sv = 0, sr = 0;
    for (index_t t = 0; t < fwd.T; ++t)
      for (index_t b = 0; b < fwd.B; ++b) {
        const index_t i = (t * fwd.B + b) * fwd.C + c;
        const double diff = double(fwd.x[i] - fwd.shifted(t, b, c));
        sk += double(gk[i]) * diff;
        sv += double(gv[i]) * diff;
        sr += double(gr[i]) * diff;
      }
    dmu_k[c] += S(sk);
    dmu_v[c] += S(sv);
    dmu_r[c] += S(sr);
  }
};

// RWKV's post before W_o, one thread per (t, b, c): σ(r) and σ(r) ⊙ A (both saved).
template <class S>
struct RwkvGate {
  index_t n;
  const S *r, *A;
  S *sr, *ra;
  index_t count() const { return n; }
  MTP_HD void operator()(index_t i) const {
    sr[i] = hd_sigmoid(r[i]);
    ra[i] = sr[i] * A[i];
  }
};
// Backward of RwkvGate. Saved: σ(r), A. d(σ(r) ⊙ A) → dA, dr, both overwritten.
template <class S>
struct RwkvGateBackward {
  index_t n;
  const S *dra, *sr, *A;
  S *dA, *dr;
  index_t count() const { return n; }
  MTP_HD void operator()(index_t i) const {
    dA[i] = dra[i] * sr[i];
    dr[i] = dra[i] * A[i] * sr[i] * (S(1) - sr[i]);
  }
};

// ------------------------------------------------------------------ linear SSM

// a = exp(−exp(decay)), g = √(1 − a²) = √(−expm1(−2ν)), in double; one thread per (k, n).
template <class S>
struct SsmCoefficients {
  index_t n;
  const S* decay;
  S *a, *g;
  index_t count() const { return n; }
  MTP_HD void operator()(index_t i) const {
    const double nu = ::exp(double(decay[i]));
    a[i] = S(::exp(-nu));
    g[i] = S(::sqrt(-::expm1(-2 * nu)));
  }
};

// One thread per (b, n). bt = P (T,B,N), a, g (K,N), s0 (B,K,N) or null → h = Yk
// (T,B,K,N) (null: not written), sT (B,K,N) or null (may alias s0); with α (T,B,K) also
// the mixed A (T,B,N) = Σ_k α_k h^k, summed in a register. (The mixed layer still saves
// h for backward in Yk's place: this scan keeps no checkpoints.)
template <class S>
struct SsmForward {
  index_t T, B, N;
  int K;
  const S *P, *a, *g, *s0;
  S* Yk;
  S* sT;
  const S* alpha = nullptr;  // (T,B,K), or null: no A
  S* A = nullptr;            // (T,B,N), with alpha
  index_t count() const { return B * N; }
  template <int KM>
  MTP_HD void apply(index_t i) const {
    const index_t b = i / N, n = i % N;
    S h[KM] = {}, ak[KM] = {}, gk[KM] = {};
    MTP_UNROLL
    for (int k = 0; k < KM; ++k) {
      if (k >= K) break;
      h[k] = s0 ? s0[(b * K + k) * N + n] : S(0);
      ak[k] = a[k * N + n];
      gk[k] = g[k * N + n];
    }
    for (index_t t = 0; t < T; ++t) {
      const S bt = P[(t * B + b) * N + n];  // once for all K
      S mixed = 0;                          // Σ_k α_k h^k, in a register
      MTP_UNROLL
      for (int k = 0; k < KM; ++k) {
        if (k >= K) break;
        const index_t row = (t * B + b) * K + k;
        h[k] = ak[k] * h[k] + gk[k] * bt;
        if (Yk) Yk[row * N + n] = h[k];
        if (alpha) mixed += alpha[row] * h[k];
      }
      if (alpha) A[(t * B + b) * N + n] = mixed;
    }
    if (sT) {
      MTP_UNROLL
      for (int k = 0; k < KM; ++k) {
        if (k >= K) break;
        sT[(b * K + k) * N + n] = h[k];
      }
    }
  }
};

// Backward of SsmForward, one thread per (b, n). Saved: s0 (null: zero), a, g and the
// states h (Yk). dYk (T,B,K,N), or with α (T,B,K) dYk = dA (T,B,N) and ∂L/∂h^k = α_k dA
// → dP = db (T,B,N) overwritten; partials ∂L/∂a, ∂L/∂g (B,K,N) overwritten.
// G_t = ∂L/∂h_t + a G_{t+1}; db_t = Σ_k g G_t. dα is RowDots' over the saved h.
template <class S>
struct SsmBackward {
  index_t T, B, N;
  int K;
  const S *P, *a, *g, *s0, *Yk, *dYk;
  S* dP;
  double *da_part, *dg_part;
  const S* alpha = nullptr;  // (T,B,K), or null: dYk is the per-perspective gradient
  index_t count() const { return B * N; }
  template <int KM>
  MTP_HD void apply(index_t i) const {
    const index_t b = i / N, n = i % N;
    S G[KM] = {}, ak[KM] = {}, gk[KM] = {};
    double da[KM] = {}, dg[KM] = {};
    MTP_UNROLL
    for (int k = 0; k < KM; ++k) {
      if (k >= K) break;
      G[k] = S(0);
      ak[k] = a[k * N + n];
      gk[k] = g[k * N + n];
      da[k] = dg[k] = 0;
    }
    for (index_t t = T - 1; t >= 0; --t) {
      const S bt = P[(t * B + b) * N + n];
      const S dA = alpha ? dYk[(t * B + b) * N + n] : S(0);  // once for all K
      S db = 0;
      MTP_UNROLL
      for (int k = 0; k < KM; ++k) {
        if (k >= K) break;
        const index_t row = (b * K + k) * N + n;
        const S hp = t > 0 ? Yk[(t - 1) * B * K * N + row] : s0 ? s0[row] : S(0);
        const S gh = alpha ? alpha[(t * B + b) * K + k] * dA : dYk[t * B * K * N + row];
        const S Gt = gh + G[k];
        db += gk[k] * Gt;
        da[k] += double(Gt * hp);
        dg[k] += double(Gt * bt);
        G[k] = ak[k] * Gt;
      }
      dP[(t * B + b) * N + n] = db;
    }
    MTP_UNROLL
    for (int k = 0; k < KM; ++k) {
      if (k >= K) break;
      da_part[(b * K + k) * N + n] = da[k];
      dg_part[(b * K + k) * N + n] = dg[k];
    }
  }
};

// ddecay (K,N) += Σ_b (∂L/∂a · ∂a/∂decay + ∂L/∂g · ∂g/∂decay), one thread per (k, n):
// a = e^{−ν}, ν = e^{decay}: ∂a/∂decay = −aν; g = √(1 − a²): ∂g/∂decay = ν a² / g.
template <class S>
struct SsmReduce {
  index_t B, N;
  int K;
  const S* decay;
  const double *da_part, *dg_part;
  S* ddecay;
  index_t count() const { return K * N; }
  MTP_HD void operator()(index_t i) const {
    const index_t k = i / N, n = i % N;
    double da = 0, dg = 0;
    for (index_t b = 0; b < B; ++b) {
      da += da_part[(b * K + k) * N + n];
      dg += dg_part[(b * K + k) * N + n];
    }
    const double nu = ::exp(double(decay[i]));
    const double a = ::exp(-nu), g = ::sqrt(-::expm1(-2 * nu));
    ddecay[i] += S(da * (-a * nu) + dg * (nu * a * a / g));
  }
};

}  // namespace mtp::cuda
