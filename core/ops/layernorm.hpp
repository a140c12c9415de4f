// LayerNorm over the last dimension: y = (x − μ) · rstd · w + b, rstd = 1/√(σ² + ε).
#pragma once

#include <cmath>

#include "mtp/core/tensor.hpp"

namespace mtp {

inline constexpr double kLayerNormEps = 1e-5;

// x (R,C) → y (R,C); saves mean (R), rstd (R) for backward.
template <class S>
void layernorm_forward(In<S> x, In<S> w, In<S> b, View<S> y, View<S> mean, View<S> rstd) {
  const index_t C = w.numel(), R = x.numel() / C;
#pragma omp parallel for if (R * C > (1 << 16))
  for (index_t r = 0; r < R; ++r) {
    const S* xr = x.data + r * C;
    S m = 0;
    for (index_t c = 0; c < C; ++c) m += xr[c];
    m /= S(C);
    S var = 0;
    for (index_t c = 0; c < C; ++c) var += (xr[c] - m) * (xr[c] - m);
    const S rs = S(1) / std::sqrt(var / S(C) + S(kLayerNormEps));
    S* yr = y.data + r * C;
    for (index_t c = 0; c < C; ++c) yr[c] = (xr[c] - m) * rs * w[c] + b[c];
    mean[r] = m;
    rstd[r] = rs;
  }
}

// Saved from forward: x, mean, rstd. dx (R,C) overwritten; dw, db (C) accumulate.
template <class S>
void layernorm_backward(In<S> dy, In<S> x, In<S> w, In<S> mean, In<S> rstd, View<S> dx, View<S> dw,
                        View<S> db) {
  const index_t C = w.numel(), R = x.numel() / C;
  for (index_t r = 0; r < R; ++r) {
    const S* xr = x.data + r * C;
    const S* dyr = dy.data + r * C;
    const S m = mean[r], rs = rstd[r];
    // dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)), with ĝ = dy ⊙ w and x̂ the normalised x.
    S g_mean = 0, gx_mean = 0;
    for (index_t c = 0; c < C; ++c) {
      const S xhat = (xr[c] - m) * rs;
      const S g = dyr[c] * w[c];
      g_mean += g;
      gx_mean += g * xhat;
      dw[c] += dyr[c] * xhat;
      db[c] += dyr[c];
    }
    g_mean /= S(C);
    gx_mean /= S(C);
    S* dxr = dx.data + r * C;
    for (index_t c = 0; c < C; ++c) {
      const S xhat = (xr[c] - m) * rs;
      dxr[c] = (dyr[c] * w[c] - g_mean - xhat * gx_mean) * rs;
    }
  }
}

}  // namespace mtp
