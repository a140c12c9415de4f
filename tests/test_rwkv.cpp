// RWKV-4's WKV: the stable (a, b, p) scan against the naive sum formula of docs/contract.md §4.3,
// and its stability over T = 100 000 steps with large keys, forward and backward.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.hpp"
#include "mtp/aggregators/mean.hpp"
#include "mtp/cells/rwkv.hpp"
#include "mtp/core/perspectives.hpp"

namespace mtp {
namespace {

// wkv_t = (Σ_{i<t} e^{(t−1−i)w + k_i} v_i + e^{u+k_t} v_t) / (Σ_{i<t} e^{(t−1−i)w + k_i} +
// e^{u+k_t})
double naive_wkv(const std::vector<double>& k, const std::vector<double>& v, double w, double u,
                 index_t t) {
  double num = std::exp(u + k[t]) * v[t], den = std::exp(u + k[t]);
  for (index_t i = 0; i < t; ++i) {
    const double e = std::exp(double(t - 1 - i) * w + k[i]);
    num += e * v[i];
    den += e;
  }
  return num / den;
}

TEST(Wkv, StableScanMatchesNaiveSumFormula) {
  constexpr index_t T = 9, B = 2, K = 3, C = 4;
  RwkvTimeMix<double> cell({.channels = C});
  ParamStore<double> store;
  attach_params(cell, store);
  CView<double> u_view = store.value(store.find("time_first"));
  View<double> u(const_cast<double*>(u_view.data), u_view.shape);
  test::fill_normal(u, 1);
  // P planes [k | v | r], each (T,B,C); keys up to ±8 so the naive sums stay finite.
  std::vector<double> P(3 * T * B * C), decay(K * C), x(T * B * C);
  test::fill_normal(P, 2, 3.0);
  test::fill_normal(decay, 3);
  Tensor<double> Yk({T, B, K, C});
  cell.recur_forward({.x = CView<double>(x.data(), {T, B, C}),
                      .P = CView<double>(P.data(), {T, B, 3 * C}),
                      .decay = CView<double>(decay.data(), {K, C}),
                      .s0 = {}},
                     {.Yk = Yk.view(), .sT = {}});
  double worst = 0;
  for (index_t b = 0; b < B; ++b)
    for (index_t k = 0; k < K; ++k)
      for (index_t c = 0; c < C; ++c) {
        std::vector<double> ks(T), vs(T);
        for (index_t t = 0; t < T; ++t) {
          ks[t] = P[(t * B + b) * C + c];
          vs[t] = P[T * B * C + (t * B + b) * C + c];
        }
        const double w = -std::exp(decay[k * C + c]);
        for (index_t t = 0; t < T; ++t) {
          const double ref = naive_wkv(ks, vs, w, u[c], t);
          worst = std::max(worst, std::abs(Yk[((t * B + b) * K + k) * C + c] - ref) /
                                      std::max(1.0, std::abs(ref)));
        }
      }
  EXPECT_LT(worst, 1e-12);
}

// T = 100 000 with keys of magnitude ~100 (e^100 overflows float, e^1000 double): the
// scan must stay finite in float, forward and backward, and agree with double. With
// the running maximum updated by adding w in float it drifted by 1e-3 relative here;
// kept as anchor + n·w (and, before that, in double) the whole layer agrees to 1.5e-6.
TEST(Wkv, LongSequenceWithLargeKeysStaysFiniteAndAccurate) {
  constexpr index_t T = 100'000, B = 1, C = 8;
  constexpr int K = 3;
  using LayerD = Perspectives<RwkvTimeMix<double>, MeanAggregator<double>>;
  using LayerF = Perspectives<RwkvTimeMix<float>, MeanAggregator<float>>;
  LayerD::Config cd;
  cd.cell = {.channels = C};
  cd.perspectives = K;
  LayerF::Config cf;
  cf.cell = {.channels = C};
  cf.perspectives = K;
  LayerD ld(cd);
  LayerF lf(cf);
  ParamStore<double> sd;
  ParamStore<float> sf;
  attach_params(ld, sd);
  attach_params(lf, sf);
  RngSequence rng(4, 5);
  ld.init(rng);
  RngSequence noise(6, 7);
  for (index_t i = 0; i < sd.size(); ++i) sd.values()[i] += 0.3 * noise.normal();
  // Large keys: key.weight ~ N(0, 40²) gives |k| of order 100 for unit inputs.
  const ParamInfo& key = sd.info(sd.find("key.weight"));
  for (index_t i = 0; i < key.shape.numel(); ++i) sd.values()[key.offset + i] = 40 * noise.normal();
  for (index_t i = 0; i < sd.size(); ++i) sf.values()[i] = float(sd.values()[i]);
  sf.mark_all_set();

  std::vector<double> x(T * B * C), dy(T * B * C);
  test::fill_normal(x, 8);
  test::fill_normal(dy, 9);
  const std::vector<float> xf(x.begin(), x.end()), dyf(dy.begin(), dy.end());
  const Shape s{T, B, C};
  Tensor<double> yd(s), dxd(s);
  Tensor<float> yf(s), dxf(s);
  ld.forward(CView<double>(x.data(), s), yd.view(), StepContext{});
  lf.forward(CView<float>(xf.data(), s), yf.view(), StepContext{});
  lf.backward(CView<float>(xf.data(), s), CView<float>(dyf.data(), s), dxf.view());

  double max_abs_k = 0;
  for (index_t i = 0; i < T * C; ++i) {
    double k = 0;
    for (index_t j = 0; j < C; ++j)
      k += sd.values()[key.offset + (i % C) * C + j] * x[(i / C) * C + j];
    max_abs_k = std::max(max_abs_k, std::abs(k));
  }
  EXPECT_GT(max_abs_k, 200.0) << "the test must exercise keys far beyond exp's float range";
  double diff = 0, scale = 0;
  for (index_t i = 0; i < yf.numel(); ++i) {
    ASSERT_TRUE(std::isfinite(yf[i])) << "y at " << i;
    ASSERT_TRUE(std::isfinite(dxf[i])) << "dx at " << i;
    diff = std::max(diff, std::abs(double(yf[i]) - yd[i]));
    scale = std::max(scale, std::abs(yd[i]));
  }
  for (index_t i = 0; i < sf.size(); ++i)
    ASSERT_TRUE(std::isfinite(sf.grads()[i])) << sf.infos()[0].name;
  EXPECT_LT(diff / scale, 2e-5) << "float against double after 100 000 steps";
}

// Token shift's backward, which splits the rows into slabs above 2^16 elements, against
// the plain sums: dx_t = μ dxm_t + (1 − μ) dxm_{t+1}, dμ = Σ dxm_t (x_t − x_{t−1}), with
// x_{−1} the carried x_prev.
// The carried state's gradients where the final exponent p_T is still the initial p_0
// (a large p_0 that no key overtakes within T steps: p_T = p_0 + T·w) and where it is a
// key's: dsT's p plane reaches p_0 or that key, and w through the steps between. The
// generated layer checks draw states where keys usually win; this pins both branches.
TEST(Wkv, StateGradientsFollowWhatTheFinalExponentCameFrom) {
  constexpr index_t T = 6, B = 2, K = 2, C = 3;
  using Layer = Perspectives<RwkvTimeMix<double>, MeanAggregator<double>>;
  Layer::Config cfg;
  cfg.cell = {.channels = C};
  cfg.perspectives = K;
  exp::checks::CheckLayer<Layer> t(cfg);  // init, then a perturbation of every value
  Layer& layer = t.layer;
  ParamStore<double>& store = t.store;
  const Shape xs{T, B, C}, ss{B, K, 4 * C};
  std::vector<double> x(T * B * C), R(T * B * C), s0(ss.numel()), Q(ss.numel());
  test::fill_normal(x, 5);
  test::fill_normal(R, 6);
  test::fill_normal(s0, 7, 0.5);
  test::fill_normal(Q, 8);
  for (index_t i = 0; i < B * K; ++i)
    for (index_t c = 0; c < C; ++c) {
      double* row = s0.data() + i * 4 * C;
      row[C + c] = std::abs(row[C + c]) + 0.5;  // b > 0: a real history
      if (i % 2 == 0) row[2 * C + c] = 40;      // p_0 stays the maximum for these rows
    }
  Tensor<double> y(xs), s(ss), dx(xs), ds0(ss);
  const auto loss = [&] {
    std::copy(s0.begin(), s0.end(), s.data());
    layer.forward(CView<double>(x.data(), xs), y.view(), StepContext{}, s.view());
    double l = 0;
    for (index_t i = 0; i < y.numel(); ++i) l += y[i] * R[i];
    for (index_t i = 0; i < s.numel(); ++i) l += s[i] * Q[i];
    return l;
  };
  loss();
  store.zero_grad();
  layer.backward(CView<double>(x.data(), xs), CView<double>(R.data(), xs), dx.view(),
                 {.dsT = CView<double>(Q.data(), ss), .ds0 = ds0.view()});
  const std::vector<double> grads(store.grads(), store.grads() + store.size());
  EXPECT_LT(test::gradcheck(s0.data(), ds0.data(), ds0.numel(), loss), 1e-7);
  EXPECT_LT(test::gradcheck(x.data(), std::vector<double>(dx.data(), dx.data() + dx.numel()).data(),
                            dx.numel(), loss),
            1e-7);
  for (const char* name : {"layer.decay", "layer.key.weight"}) {
    const ParamInfo& p = store.info(store.find(name));
    EXPECT_LT(
        test::gradcheck(store.values() + p.offset, grads.data() + p.offset, p.shape.numel(), loss),
        1e-7)
        << name;
  }
}

TEST(TokenShift, BackwardMatchesPlainSumsAboveTheThreadThreshold) {
  constexpr index_t T = 20, B = 32, C = 136;  // T·B·C > 2^16; 640 rows in 8 slabs
  std::vector<double> dxm(T * B * C), x(T * B * C), x_prev(B * C), mu(C);
  test::fill_normal(dxm, 11);
  test::fill_normal(x, 12);
  test::fill_normal(x_prev, 13);
  test::fill_normal(mu, 14);
  std::vector<double> dx(T * B * C, 0.5), dmu(C, 0.25);  // both accumulate
  std::vector<double> dx_ref = dx, dmu_ref = dmu;
  for (index_t t = 0; t < T; ++t)
    for (index_t b = 0; b < B; ++b)
      for (index_t c = 0; c < C; ++c) {
        const index_t i = (t * B + b) * C + c;
        const double next = t + 1 < T ? dxm[i + B * C] : 0.0;
        const double prev = t > 0 ? x[i - B * C] : x_prev[b * C + c];
        dx_ref[i] += mu[c] * dxm[i] + (1 - mu[c]) * next;
        dmu_ref[c] += dxm[i] * (x[i] - prev);
      }
  const Shape s{T, B, C};
  token_shift_mix_backward<double>(CView<double>(dxm.data(), s), CView<double>(x.data(), s),
                                   x_prev.data(), CView<double>(mu.data(), {C}),
                                   View<double>(dx.data(), s), View<double>(dmu.data(), {C}));
  for (index_t i = 0; i < T * B * C; ++i) ASSERT_NEAR(dx[i], dx_ref[i], 1e-12) << i;
  for (index_t c = 0; c < C; ++c) EXPECT_NEAR(dmu[c], dmu_ref[c], 1e-10) << c;
}

// The exponent p = anchor + n·w counts steps in n, which is rebased into the anchor every
// 2^20 steps. One key k_0 followed by 1.2 million keys of 0 keeps the first key the
// maximum throughout (w = −1e-5 takes 100 000·k_0 steps to bring it down to 0), so the
// rebase happens mid-sequence. With v = 1 then 0, the sums have a closed form:
//   A_t = e^{(t−1)w + k_0},  B_t = A_t + (1 − e^{(t−1)w}) / (1 − e^w),
//   wkv_t = A_t / (B_t + e^u)   for t ≥ 1.
// Returns the worst relative error of wkv_t against it.
template <class S>
double error_across_count_rebase(double k0) {
  constexpr index_t T = 1'200'000;
  RwkvTimeMix<S> cell({.channels = 1});
  ParamStore<S> store;
  attach_params(cell, store);
  const double u = 0.5;
  store.values()[store.info(store.find("time_first")).offset] = S(u);
  std::vector<S> P(3 * T, S(0)), x(T, S(0)), decay{S(std::log(1e-5))};
  const double w = -std::exp(double(decay[0]));  // as the cell sees it
  P[0] = S(k0);                                  // k_0
  P[T] = 1;                                      // v_0
  Tensor<S> Yk({T, 1, 1, 1});
  cell.recur_forward({.x = CView<S>(x.data(), {T, 1, 1}),
                      .P = CView<S>(P.data(), {T, 1, 3}),
                      .decay = CView<S>(decay.data(), {1, 1}),
                      .s0 = {}},
                     {.Yk = Yk.view(), .sT = {}});
  double worst = 0;
  for (index_t t = 1; t < T; t += 997) {
    const double m = double(t - 1);
    const double A = std::exp(m * w + k0);
    const double B = A + std::expm1(m * w) / std::expm1(w);
    const double ref = A / (B + std::exp(u));
    worst = std::max(worst, std::abs(double(Yk[t]) - ref) / ref);
  }
  return worst;
}

TEST(Wkv, ExponentStaysExactAcrossTheCountRebase) {
  EXPECT_LT(error_across_count_rebase<double>(20), 1e-9);
  // Float with w split in two: k_0 = 12 keeps the added terms (e^{−p} ≥ e^{−12}) above
  // float's resolution of b, so the error left is the sum's rounding over 10^6 steps.
  EXPECT_LT(error_across_count_rebase<float>(12), 1e-4);
}

// Decays above ~88 overflow w = −e^decay in float. The history then vanishes after one
// step, e^w = 0: wkv_t = (e^{k_{t−1}} v_{t−1} + e^{u+k_t} v_t) / (e^{k_{t−1}} + e^{u+k_t}).
TEST(Wkv, DecayBeyondFloatRangeForgetsAllButTheLastStep) {
  constexpr index_t T = 50, C = 2;
  RwkvTimeMix<float> cell({.channels = C});
  ParamStore<float> store;
  attach_params(cell, store);
  const float u = 0.3f;
  std::fill_n(store.values() + store.info(store.find("time_first")).offset, C, u);
  std::vector<double> Pd(3 * T * C);
  test::fill_normal(Pd, 21, 2.0);
  const std::vector<float> P(Pd.begin(), Pd.end());
  std::vector<float> x(T * C, 0.0f), decay{100.0f, 89.0f};
  Tensor<float> Yk({T, 1, 1, C});
  cell.recur_forward({.x = CView<float>(x.data(), {T, 1, C}),
                      .P = CView<float>(P.data(), {T, 1, 3 * C}),
                      .decay = CView<float>(decay.data(), {1, C}),
                      .s0 = {}},
                     {.Yk = Yk.view(), .sT = {}});
  for (index_t t = 0; t < T; ++t)
    for (index_t c = 0; c < C; ++c) {
      const double k = P[t * C + c], v = P[T * C + t * C + c];
      const double ef = std::exp(u + k);
      double num = ef * v, den = ef;
      if (t > 0) {
        const double ep = std::exp(double(P[(t - 1) * C + c]));
        num += ep * P[T * C + (t - 1) * C + c];
        den += ep;
      }
      ASSERT_NEAR(Yk[t * C + c], num / den, 1e-5 * std::max(1.0, std::abs(num / den)))
          << "t " << t << " c " << c;
    }
}

}  // namespace
}  // namespace mtp
