// Elementwise and row-wise bodies shared by the cells and the aggregators: bias and
// skip terms, column sums (bias gradients), strided copies (state packing), the
// weighted sums of the mean and fixed aggregators and of the learned selector, and
// the selector itself (noise, top-k, softmax; aggregators/learned.hpp).
#pragma once

#include "mtp/core/cuda/hd.hpp"

namespace mtp::cuda {

// y (R,N) += bias (N) broadcast over rows; one thread per element.
template <class S>
struct AddRowBias {
  index_t R, N;
  const S* bias;
  S* y;
  index_t count() const { return R * N; }
  MTP_HD void operator()(index_t i) const { y[i] += bias[i % N]; }
};

// db (N) += Σ_r x[r,:] for x (R,N); one thread per column, summed in double.
template <class S>
struct ColumnSum {
  index_t R, N;
  const S* x;
  S* db;
  index_t count() const { return N; }
  MTP_HD void operator()(index_t n) const {
    double s = 0;
    for (index_t r = 0; r < R; ++r) s += double(x[r * N + n]);
    db[n] += S(s);
  }
};

// dst[r·dst_stride + j] = src[r·src_stride + j] for r < R, j < W: packing and unpacking
// per-row slices of states; one thread per element.
template <class S>
struct CopyColumns {
  index_t R, W;
  const S* src;
  index_t src_stride;
  S* dst;
  index_t dst_stride;
  index_t count() const { return R * W; }
  MTP_HD void operator()(index_t i) const {
    const index_t r = i / W, j = i % W;
    dst[r * dst_stride + j] = src[r * src_stride + j];
  }
};

// The SSM's skip term, one thread per element of (R,I): y += skip ⊙ x.
template <class S>
struct SkipForward {
  index_t R, I;
  const S *skip, *x;
  S* y;
  index_t count() const { return R * I; }
  MTP_HD void operator()(index_t e) const { y[e] += skip[e % I] * x[e]; }
};
// Backward of SkipForward for x: dx += skip ⊙ dy.
template <class S>
struct SkipBackward {
  index_t R, I;
  const S *skip, *dy;
  S* dx;
  index_t count() const { return R * I; }
  MTP_HD void operator()(index_t e) const { dx[e] += skip[e % I] * dy[e]; }
};
// Backward of SkipForward for skip, one thread per column: dskip += Σ_r dy ⊙ x.
template <class S>
struct SkipGrad {
  index_t R, I;
  const S *dy, *x;
  S* dskip;
  index_t count() const { return I; }
  MTP_HD void operator()(index_t i) const {
    double s = 0;
    for (index_t r = 0; r < R; ++r) s += double(dy[r * I + i]) * double(x[r * I + i]);
    dskip[i] += S(s);
  }
};

// A (R,D) = Σ_k w[r·w_stride + k] Yk (R,K,D): constant weights (w_stride 0: mean, fixed)
// or per-row selection weights α (w_stride K: learned). One thread per (r, d).
template <class S>
struct WeightedSum {
  index_t R, D;
  int K;
  const S* w;
  index_t w_stride;
  const S* Yk;
  S* A;
  index_t count() const { return R * D; }
  MTP_HD void operator()(index_t i) const {
    const index_t r = i / D, d = i % D;
    const S* wr = w + r * w_stride;
    S s = 0;
    for (int k = 0; k < K; ++k) s += wr[k] * Yk[(r * K + k) * D + d];
    A[i] = s;
  }
};
// Backward of WeightedSum for Yk: dYk (R,K,D) = w_k dA, overwritten; one thread per element.
template <class S>
struct WeightedSumBackward {
  index_t R, D;
  int K;
  const S* w;
  index_t w_stride;
  const S* dA;
  S* dYk;
  index_t count() const { return R * K * D; }
  MTP_HD void operator()(index_t i) const {
    const index_t d = i % D, k = (i / D) % K, r = i / (D * K);
    dYk[i] = w[r * w_stride + k] * dA[r * D + d];
  }
};

// dα (R,K) = ⟨dA_r, Yk_{r,k}⟩ for dA (R,D), Yk (R,K,D): the weights' gradient of a
// weighted sum, one thread per (r, k) summing over d in a fixed order (deterministic).
// The SSM's mixed scan uses it with its saved states h in place of Yk.
template <class S>
struct RowDots {
  index_t R, D;
  int K;
  const S *dA, *Yk;
  S* dalpha;
  index_t count() const { return R * K; }
  MTP_HD void operator()(index_t i) const {
    const S* da = dA + (i / K) * D;
    const S* y = Yk + i * D;
    double s = 0;
    for (index_t d = 0; d < D; ++d) s += double(da[d]) * double(y[d]);
    dalpha[i] = S(s);
  }
};

// Where the selector noise of one forward comes from: aggregators/learned.hpp's
// CounterRng(seed, stream).normal((step << 40) + i) for logit i of the step.
struct NoiseKey {
  std::uint64_t seed = 0, stream = 0, step = 0;
  MTP_HD double epsilon(index_t i) const {
    return philox_normal(seed, stream, (step << 40) + std::uint64_t(i));
  }
};

// The learned selector, one thread per row r of (R,K): the logits x W_s^T (in α, from a
// GEMM) + b_s, + σ ε when noisy (σ the fixed scale, or softplus(W_n x) from noise_pre),
// top-k (the k largest kept, ties to the lower index), softmax → α in place.
template <class S>
struct Selector {
  index_t R;
  int K, top_k;
  const S* bias;
  bool noisy;
  double noise;        // fixed σ
  const S* noise_pre;  // (R,K) W_n x, or null for the fixed σ
  NoiseKey key;
  S* alpha;  // (R,K) logits in, α out
  index_t count() const { return R; }
  MTP_HD void operator()(index_t r) const {
    S* l = alpha + r * K;
    for (int k = 0; k < K; ++k) {
      l[k] += bias[k];
      if (noisy) {
        const index_t i = r * K + k;
        const S scale = noise_pre ? hd_softplus(noise_pre[i]) : S(noise);
        l[k] += scale * S(key.epsilon(i));
      }
    }
    if (top_k > 0 && top_k < K) {
      std::uint64_t keep = 0;  // K ≤ 64
      for (int j = 0; j < top_k; ++j) {
        int best = -1;
        for (int k = 0; k < K; ++k)
          if (!((keep >> k) & 1u) && (best < 0 || l[k] > l[best])) best = k;
        keep |= std::uint64_t{1} << best;
      }
      for (int k = 0; k < K; ++k)
        if (!((keep >> k) & 1u)) l[k] = S(-INFINITY);
    }
    S mx = l[0];
    for (int k = 1; k < K; ++k) mx = l[k] > mx ? l[k] : mx;
    S sum = 0;
    for (int k = 0; k < K; ++k) sum += (l[k] = hd_exp(l[k] - mx));
    const S inv = S(1) / sum;
    for (int k = 0; k < K; ++k) l[k] *= inv;
  }
};

// Backward of Selector + WeightedSum for the logits, one thread per row r. Saved: α,
// Yk (and W_n x). dA (R,D) → dℓ (R,K) overwritten; with learned noise also
// dn (R,K) = dℓ ε σ(W_n x), overwritten (ℓ += softplus(n) ε: ∂ℓ/∂n = ε σ(n)). With Yk
// null (a mixed scan, which computed dα itself) dlogits holds dα on entry and dA is unused.
template <class S>
struct SelectorBackward {
  index_t R, D;
  int K;
  const S *alpha, *Yk, *dA;
  S* dlogits;
  const S* noise_pre;  // null unless noisy with learned noise
  NoiseKey key;
  S* dnoise;
  index_t count() const { return R; }
  MTP_HD void operator()(index_t r) const {
    const S* al = alpha + r * K;
    const S* da = Yk ? dA + r * D : nullptr;
    S* dl = dlogits + r * K;
    S dot = 0;
    for (int k = 0; k < K; ++k) {
      if (Yk) {
        const S* y = Yk + (r * K + k) * D;
        S s = 0;
        for (index_t d = 0; d < D; ++d) s += da[d] * y[d];
        dl[k] = s;
      }
      dot += al[k] * dl[k];
    }
    for (int k = 0; k < K; ++k) dl[k] = al[k] * (dl[k] - dot);
    if (noise_pre)
      for (int k = 0; k < K; ++k) {
        const index_t i = r * K + k;
        dnoise[i] = dl[k] * S(key.epsilon(i)) * hd_sigmoid(noise_pre[i]);
      }
  }
};

}  // namespace mtp::cuda
