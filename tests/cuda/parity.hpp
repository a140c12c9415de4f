// The CUDA layer programs against the CPU reference (Perspectives<Cell, Agg>), shared by
// the host-driven test (tests/test_cuda_bodies.cpp: LayerProgram on HostExec, the
// kernel bodies in loops) and the GPU test (tests/cuda/test_cuda_layer.cpp: the
// device layer). One case: a cell, an aggregator with its options, K, a carried
// initial state or none, training (selector noise) or evaluation, and for the diagonal
// cells whether both layers aggregate inside the scan (Config::mixed_scan). Compared: y, the
// final state, dx and the gradient of every parameter, by relative error
// max|got − want| / max|want| per tensor.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include "../test_layer.hpp"
#include "mtp/core/cuda/program.hpp"
#include "mtp/experiments/dispatch.hpp"
#include "mtp/experiments/layer_checks.hpp"
#include "mtp/experiments/registry.hpp"

namespace mtp::test {

struct ParityCase {
  std::string cell, aggregator;
  int K;
  bool state = false;     // a random carried initial state (else zero)
  bool training = false;  // selector noise on
  int option = -1;        // index into the aggregator's check_options(K); -1: default options
  bool mixed = true;      // Config::mixed_scan (only where the pair has a mixed scan)
};

inline std::string parity_name(const ParityCase& c) {
  std::string n = c.cell + "_" + c.aggregator + "_K" + std::to_string(c.K);
  if (c.state) n += "_state";
  if (c.training) n += "_train";
  if (c.option >= 0) n += "_option" + std::to_string(c.option);
  if (!c.mixed) n += "_unmixed";
  return n;
}

// Every registered pair with a device program (core/cuda/program.hpp), generated from the
// registry: K ∈ {1, 3} × (zero, carried state) with default options, and in training
// each of the aggregator's check options (layer_checks.hpp: noise, learned noise, top-k,
// weights) at K = 3 with a carried state. Pairs that mix inside the scan also run K = 5
// (the scans' general, K > 4, instantiation) and every case twice, with the mixed scan
// (the default) and without; the others run K = 5 once, with a carried state.
inline std::vector<ParityCase> parity_cases() {
  std::vector<ParityCase> cases;
  for (const exp::MixerEntry& e : exp::registry().mixers())
    exp::with_mixer<double>(e.cell, e.aggregator, [&]<class Mixer>() {
      using C = typename Mixer::CellType;
      using A = typename Mixer::AggregatorType;
      if constexpr (cuda::kHasCellProgram<C> && cuda::kHasAggProgram<A>) {
        constexpr bool mixing = MixingCell<C> && WeightingAggregator<A>;
        for (bool mixed : {true, false}) {
          if (!mixed && !mixing) continue;
          const auto add = [&](ParityCase c) {
            c.mixed = mixed;
            cases.push_back(c);
          };
          for (int K : {1, 3, 5}) {
            if (K == 5 && !mixing) continue;
            for (bool state : {false, true}) add({e.cell, e.aggregator, K, state});
          }
          const int variants = int(exp::checks::check_options<A>(3).size());
          for (int v = 0; v < variants; ++v) add({e.cell, e.aggregator, 3, true, true, v});
          if (mixing) add({e.cell, e.aggregator, 5, true, true, 0});
          if (!mixing) add({e.cell, e.aggregator, 5, true});
        }
      }
    });
  return cases;
}

// The mixing pairs' cases without the mixed scan: the reference side of the check that
// a mixed program matches an unmixed CPU layer.
inline std::vector<ParityCase> unmixed_cases() {
  std::vector<ParityCase> cases;
  for (const ParityCase& c : parity_cases())
    if (!c.mixed) cases.push_back(c);
  return cases;
}

template <class S>
struct LayerRun {
  std::vector<S> y, state, dx, grads;
};

template <class S>
struct ParityInputs {
  index_t T = 7, B = 3;
  std::vector<S> params, x, state, dy;
  StepContext ctx;
};

// The cell's widths and the aggregator's options from the hooks the generated layer checks
// use (experiments/layer_checks.hpp): no knowledge of a particular cell here.
template <class Mixer>
typename Mixer::Config parity_config(const ParityCase& c) {
  using A = typename Mixer::AggregatorType;
  typename Mixer::Config cfg;
  cfg.cell = exp::checks::check_config<typename Mixer::CellType>();
  cfg.perspectives = c.K;
  cfg.decay_spread = 0.7;
  cfg.aggregator =
      c.option < 0 ? typename A::Options{} : exp::checks::check_options<A>(c.K)[c.option];
  cfg.position = {.index = 2, .count = 4};
  cfg.noise_stream = 0x5eed;  // any stream: the CPU and the device layer share it
  cfg.mixed_scan = c.mixed;
  return cfg;
}

template <class S>
void fill_normal(std::vector<S>& v, std::uint64_t seed, double scale) {
  RngSequence rng(seed, 77);
  for (S& e : v) e = S(scale * rng.normal());
}

// Parameters from the cell's init plus a perturbation (no tensor left at zero, gates
// away from ½); inputs, state and dy normal, the state made one a history can produce by
// the cell's make_valid_state hook where it has one.
template <class Mixer>
ParityInputs<typename Mixer::Scalar> parity_inputs(const ParityCase& c,
                                                   const typename Mixer::Config& cfg) {
  using S = typename Mixer::Scalar;
  const TestLayer<Mixer> t(cfg, 5);
  const Mixer& layer = t.layer;
  ParityInputs<S> in;
  in.params.assign(t.store.values(), t.store.values() + t.store.size());
  in.x.resize(in.T * in.B * layer.input_width());
  in.dy.resize(in.T * in.B * layer.output_width());
  fill_normal(in.x, 11, 1.0);
  fill_normal(in.dy, 12, 1.0);
  if (c.state) {
    const index_t Sw = layer.state_width();
    in.state.resize(in.B * c.K * Sw);
    fill_normal(in.state, 13, 0.5);
    if constexpr (requires(View<S> v) { Mixer::CellType::make_valid_state(v); })
      Mixer::CellType::make_valid_state(View<S>(in.state.data(), {in.B, c.K, Sw}));
  }
  in.ctx = {.training = c.training, .seed = 21, .step = 4};
  return in;
}

// Forward (carrying the state when there is one) and backward of a layer whose
// parameters are set: y, the final state and dx. The caller reads the gradients, which
// the CPU and device layers hold differently.
template <class S, class Layer>
LayerRun<S> forward_backward(Layer& layer, int perspectives, const ParityInputs<S>& in) {
  const Shape xs{in.T, in.B, layer.input_width()}, ys{in.T, in.B, layer.output_width()};
  LayerRun<S> r;
  r.y.resize(ys.numel());
  r.dx.resize(xs.numel());
  r.state = in.state;
  const View<S> state = r.state.empty()
                            ? View<S>()
                            : View<S>(r.state.data(), {in.B, perspectives, layer.state_width()});
  layer.forward(CView<S>(in.x.data(), xs), View<S>(r.y.data(), ys), in.ctx, state);
  layer.backward(CView<S>(in.x.data(), xs), CView<S>(in.dy.data(), ys), View<S>(r.dx.data(), xs));
  return r;
}

// The CPU reference.
template <class Mixer>
LayerRun<typename Mixer::Scalar> cpu_run(const typename Mixer::Config& cfg,
                                         const ParityInputs<typename Mixer::Scalar>& in) {
  using S = typename Mixer::Scalar;
  Mixer layer(cfg);
  ParamStore<S> store;
  attach_params(layer, store);
  std::copy(in.params.begin(), in.params.end(), store.values());
  store.mark_all_set();
  LayerRun<S> r = forward_backward(layer, cfg.perspectives, in);
  r.grads.assign(store.grads(), store.grads() + store.size());
  return r;
}

template <class S>
double relative_error(const S* got, const S* want, index_t n) {
  double diff = 0, scale = 0;
  for (index_t i = 0; i < n; ++i) {
    if (!std::isfinite(double(got[i]))) return INFINITY;
    diff = std::max(diff, std::abs(double(got[i]) - double(want[i])));
    scale = std::max(scale, std::abs(double(want[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

// Runs `other` (cfg, inputs → LayerRun) and the CPU reference on the case, and checks
// every output and gradient within `tol`. `params` names the gradients.
template <class Mixer, class Other>
void expect_parity(const ParityCase& c, Other&& other, double tol) {
  using S = typename Mixer::Scalar;
  const typename Mixer::Config cfg = parity_config<Mixer>(c);
  const ParityInputs<S> in = parity_inputs<Mixer>(c, cfg);
  const LayerRun<S> want = cpu_run<Mixer>(cfg, in);
  const LayerRun<S> got = other(cfg, in);
  ASSERT_EQ(got.y.size(), want.y.size());
  ASSERT_EQ(got.grads.size(), want.grads.size());
  EXPECT_LE(relative_error(got.y.data(), want.y.data(), index_t(want.y.size())), tol) << "y";
  if (c.state) {
    EXPECT_LE(relative_error(got.state.data(), want.state.data(), index_t(want.state.size())), tol)
        << "final state";
  }
  EXPECT_LE(relative_error(got.dx.data(), want.dx.data(), index_t(want.dx.size())), tol)
      << "grad.x";
  Mixer layer(cfg);
  ParamStore<S> store;
  attach_params(layer, store);
  for (const ParamInfo& p : store.infos()) {
    const index_t n = p.shape.numel();
    EXPECT_LE(relative_error(got.grads.data() + p.offset, want.grads.data() + p.offset, n), tol)
        << "grad." << p.name;
  }
}

// Calls f.template operator()<Mixer>() for the case's cell and aggregator in scalar S.
template <class S, class F>
void with_case_mixer(const ParityCase& c, F&& f) {
  exp::with_mixer<S>(c.cell, c.aggregator, std::forward<F>(f));
}

// The fused WKV scan alone, forward and backward, against RwkvTimeMix's recur_forward
// and recur_backward on a long sequence with large keys (exponents far beyond what exp
// can take without the running maximum), a carried state, K perspectives. Also: the
// forward without saving (inference) gives the same wkv.
template <class S, class Exec>
void expect_wkv_scan_parity(Exec& ex, int K, index_t T, double tol) {
  const index_t B = 2, C = 3, TBC = T * B * C;
  RwkvTimeMix<S> cell({.channels = C});
  ParamStore<S> store;
  cell.declare(store, "");
  store.finalize();
  cell.bind(store);
  std::vector<S> P(3 * TBC), decay(K * C), s0(B * K * 4 * C), x(TBC), dYk(TBC * K);
  fill_normal(P, 31, 1.0);
  for (index_t i = 0; i < TBC; ++i) P[i] = S(40 + 20 * double(P[i]));  // keys ~ 40 ± 20
  fill_normal(decay, 32, 1.0);
  fill_normal(s0, 33, 0.5);
  for (index_t row = 0; row < B * K; ++row)
    for (index_t c = 0; c < C; ++c) {
      s0[row * 4 * C + C + c] = std::abs(s0[row * 4 * C + C + c]) + S(0.5);
      s0[row * 4 * C + 2 * C + c] = S(30);  // p: a history with large keys
    }
  fill_normal(x, 34, 1.0);
  fill_normal(dYk, 35, 1.0);
  std::vector<S> u(C);
  fill_normal(u, 36, 1.0);
  std::copy(u.begin(), u.end(), store.value(store.find("time_first")).data);

  // CPU reference
  const Shape act{T, B, C}, yk{T, B, K, C}, st{B, K, 4 * C};
  std::vector<S> y_ref(TBC * K), sT_ref = s0, dP_ref(3 * TBC, S(0)), dd_ref(K * C, S(0));
  const RecurIn<S> in{.x = CView<S>(x.data(), act),
                      .P = CView<S>(P.data(), {3, T, B, C}),
                      .decay = CView<S>(decay.data(), {K, C}),
                      .s0 = CView<S>(s0.data(), st)};
  cell.recur_forward(in, {.Yk = View<S>(y_ref.data(), yk), .sT = View<S>(sT_ref.data(), st)});
  cell.recur_backward(in, CView<S>(y_ref.data(), yk),
                      {.dYk = CView<S>(dYk.data(), yk),
                       .dsT = {},
                       .dP = View<S>(dP_ref.data(), {3, T, B, C}),
                       .ddecay = View<S>(dd_ref.data(), {K, C}),
                       .ds0 = {},
                       .dx = {}});
  const View<S> du_view = store.grad(store.find("time_first"));
  const std::vector<S> du_ref(du_view.begin(), du_view.end());

  // The bodies on the executor.
  typename Exec::template Buffer<S> dP, duv, dd, dy, sT, y, y2, xs, uu, dec, ab;
  typename Exec::template Buffer<double> w, sp, gw, gu;
  dP.resize(3 * TBC), dy.resize(TBC * K), sT.resize(B * K * 4 * C), y.resize(TBC * K);
  y2.resize(TBC * K), xs.resize(TBC), uu.resize(C), dec.resize(K * C), ab.resize(TBC * K * 2);
  dd.resize(K * C), duv.resize(C);
  w.resize(K * C), sp.resize(TBC * K), gw.resize(B * K * C), gu.resize(B * K * C);
  ex.upload(dP.data(), P.data(), 3 * TBC);  // P, reused below as the input planes
  ex.upload(dy.data(), dYk.data(), TBC * K);
  ex.upload(sT.data(), s0.data(), B * K * 4 * C);
  ex.upload(xs.data(), x.data(), TBC);
  ex.upload(uu.data(), u.data(), C);
  ex.upload(dec.data(), decay.data(), K * C);
  ex.zero(dd.data(), K * C);
  ex.zero(duv.data(), C);
  const S* kp = dP.data();
  const S* vp = dP.data() + TBC;
  ex.run(cuda::WkvDecay<S>{K * C, dec.data(), w.data()});
  // Inference first (no saving, no final state), then training with sT aliasing s0.
  cuda::run_fused(ex, K,
                  cuda::WkvForward<S>{T, B, C, K, kp, vp, uu.data(), w.data(), sT.data(), y2.data(),
                                      nullptr, nullptr, nullptr, xs.data()});
  cuda::run_fused(ex, K,
                  cuda::WkvForward<S>{T, B, C, K, kp, vp, uu.data(), w.data(), sT.data(), y.data(),
                                      ab.data(), sp.data(), sT.data(), xs.data()});
  typename Exec::template Buffer<S> dk, dvv;
  dk.resize(TBC), dvv.resize(TBC);
  cuda::run_fused(
      ex, K,
      cuda::WkvBackward<S>{T, B, C, K, kp, vp, uu.data(), w.data(), ab.data(), sp.data(), y.data(),
                           dy.data(), dk.data(), dvv.data(), gw.data(), gu.data()});
  ex.run(cuda::WkvReduce<S>{B, C, K, w.data(), gw.data(), gu.data(), dd.data(), duv.data()});
  ex.finish("wkv scan");
  std::vector<S> y_got(TBC * K), y2_got(TBC * K), sT_got(B * K * 4 * C), dk_got(TBC), dv_got(TBC),
      dd_got(K * C), du_got(C);
  ex.download(y_got.data(), y.data(), TBC * K);
  ex.download(y2_got.data(), y2.data(), TBC * K);
  ex.download(sT_got.data(), sT.data(), B * K * 4 * C);
  ex.download(dk_got.data(), dk.data(), TBC);
  ex.download(dv_got.data(), dvv.data(), TBC);
  ex.download(dd_got.data(), dd.data(), K * C);
  ex.download(du_got.data(), duv.data(), C);
  for (S v : y_got) {
    ASSERT_TRUE(std::isfinite(double(v)));
  }
  EXPECT_LE(relative_error(y_got.data(), y_ref.data(), TBC * K), tol) << "wkv";
  EXPECT_EQ(y_got, y2_got) << "the forward without saving differs";
  // The carried state: (a, b) scaled by e^p, compared as such; p and the last x exactly.
  EXPECT_LE(relative_error(sT_got.data(), sT_ref.data(), B * K * 4 * C), tol) << "final state";
  EXPECT_LE(relative_error(dk_got.data(), dP_ref.data(), TBC), tol) << "dk";
  EXPECT_LE(relative_error(dv_got.data(), dP_ref.data() + TBC, TBC), tol) << "dv";
  EXPECT_LE(relative_error(dd_got.data(), dd_ref.data(), K * C), tol) << "ddecay";
  EXPECT_LE(relative_error(du_got.data(), du_ref.data(), C), tol) << "dtime_first";
}

// The mixed WKV scan alone (α inside the scan, dα by WkvMixWeightGrad), forward and
// backward, against RwkvTimeMix's recur_mixed_forward and recur_mixed_backward on the
// same long sequence with large keys, a carried state and random weights α (T,B,K).
template <class S, class Exec>
void expect_wkv_mixed_scan_parity(Exec& ex, int K, index_t T, double tol) {
  const index_t B = 2, C = 3, TBC = T * B * C, TBK = T * B * K;
  RwkvTimeMix<S> cell({.channels = C});
  ParamStore<S> store;
  cell.declare(store, "");
  store.finalize();
  cell.bind(store);
  std::vector<S> P(3 * TBC), decay(K * C), s0(B * K * 4 * C), x(TBC), dA(TBC), alpha(TBK), u(C);
  fill_normal(P, 41, 1.0);
  for (index_t i = 0; i < TBC; ++i) P[i] = S(40 + 20 * double(P[i]));  // keys ~ 40 ± 20
  fill_normal(decay, 42, 1.0);
  fill_normal(s0, 43, 0.5);
  for (index_t row = 0; row < B * K; ++row)
    for (index_t c = 0; c < C; ++c) {
      s0[row * 4 * C + C + c] = std::abs(s0[row * 4 * C + C + c]) + S(0.5);
      s0[row * 4 * C + 2 * C + c] = S(30);
    }
  fill_normal(x, 44, 1.0);
  fill_normal(dA, 45, 1.0);
  fill_normal(alpha, 46, 1.0);
  fill_normal(u, 47, 1.0);
  std::copy(u.begin(), u.end(), store.value(store.find("time_first")).data);

  // CPU reference
  const Shape act{T, B, C}, ak{T, B, K}, st{B, K, 4 * C}, planes{3, T, B, C};
  std::vector<S> A_ref(TBC), sT_ref = s0, dP_ref(3 * TBC, S(0)), dd_ref(K * C, S(0)), da_ref(TBK);
  const RecurIn<S> in{.x = CView<S>(x.data(), act),
                      .P = CView<S>(P.data(), planes),
                      .decay = CView<S>(decay.data(), {K, C}),
                      .s0 = CView<S>(s0.data(), st)};
  cell.recur_mixed_forward(in, CView<S>(alpha.data(), ak),
                           {.A = View<S>(A_ref.data(), act), .sT = View<S>(sT_ref.data(), st)});
  cell.recur_mixed_backward(in, CView<S>(alpha.data(), ak),
                            {.dA = CView<S>(dA.data(), act),
                             .dsT = {},
                             .dP = View<S>(dP_ref.data(), planes),
                             .ddecay = View<S>(dd_ref.data(), {K, C}),
                             .dalpha = View<S>(da_ref.data(), ak),
                             .ds0 = {},
                             .dx = {}});
  const View<S> du_view = store.grad(store.find("time_first"));
  const std::vector<S> du_ref(du_view.begin(), du_view.end());

  // The bodies on the executor.
  typename Exec::template Buffer<S> Pd, dAd, ald, sT, A, xs, uu, dec, ab, dk, dv, dd, du, dal;
  typename Exec::template Buffer<double> w, sp, gw, gu;
  Pd.resize(3 * TBC), dAd.resize(TBC), ald.resize(TBK), sT.resize(B * K * 4 * C), A.resize(TBC);
  xs.resize(TBC), uu.resize(C), dec.resize(K * C), ab.resize(TBC * K * 2), dk.resize(TBC);
  dv.resize(TBC), dd.resize(K * C), du.resize(C), dal.resize(TBK);
  w.resize(K * C), sp.resize(TBC * K), gw.resize(B * K * C), gu.resize(B * K * C);
  ex.upload(Pd.data(), P.data(), 3 * TBC);
  ex.upload(dAd.data(), dA.data(), TBC);
  ex.upload(ald.data(), alpha.data(), TBK);
  ex.upload(sT.data(), s0.data(), B * K * 4 * C);
  ex.upload(xs.data(), x.data(), TBC);
  ex.upload(uu.data(), u.data(), C);
  ex.upload(dec.data(), decay.data(), K * C);
  ex.zero(dd.data(), K * C);
  ex.zero(du.data(), C);
  const S* kp = Pd.data();
  const S* vp = Pd.data() + TBC;
  ex.run(cuda::WkvDecay<S>{K * C, dec.data(), w.data()});
  cuda::WkvForward<S> fwd{T,         B,         C,         K,         kp,
                          vp,        uu.data(), w.data(),  sT.data(), A.data(),
                          ab.data(), sp.data(), sT.data(), xs.data()};
  fwd.alpha = ald.data();
  cuda::run_fused(ex, K, fwd);
  cuda::WkvBackward<S> bwd{T,         B,         C,         K,         kp,      vp,
                           uu.data(), w.data(),  ab.data(), sp.data(), nullptr, dAd.data(),
                           dk.data(), dv.data(), gw.data(), gu.data()};
  bwd.alpha = ald.data();
  cuda::run_fused(ex, K, bwd);
  ex.run(cuda::WkvMixWeightGrad<S>{T, B, C, K, kp, vp, uu.data(), ab.data(), sp.data(), dAd.data(),
                                   dal.data()});
  ex.run(cuda::WkvReduce<S>{B, C, K, w.data(), gw.data(), gu.data(), dd.data(), du.data()});
  ex.finish("mixed wkv scan");
  std::vector<S> A_got(TBC), sT_got(B * K * 4 * C), dk_got(TBC), dv_got(TBC), dd_got(K * C),
      du_got(C), da_got(TBK);
  ex.download(A_got.data(), A.data(), TBC);
  ex.download(sT_got.data(), sT.data(), B * K * 4 * C);
  ex.download(dk_got.data(), dk.data(), TBC);
  ex.download(dv_got.data(), dv.data(), TBC);
  ex.download(dd_got.data(), dd.data(), K * C);
  ex.download(du_got.data(), du.data(), C);
  ex.download(da_got.data(), dal.data(), TBK);
  EXPECT_LE(relative_error(A_got.data(), A_ref.data(), TBC), tol) << "A";
  EXPECT_LE(relative_error(sT_got.data(), sT_ref.data(), B * K * 4 * C), tol) << "final state";
  EXPECT_LE(relative_error(dk_got.data(), dP_ref.data(), TBC), tol) << "dk";
  EXPECT_LE(relative_error(dv_got.data(), dP_ref.data() + TBC, TBC), tol) << "dv";
  EXPECT_LE(relative_error(dd_got.data(), dd_ref.data(), K * C), tol) << "ddecay";
  EXPECT_LE(relative_error(du_got.data(), du_ref.data(), C), tol) << "dtime_first";
  EXPECT_LE(relative_error(da_got.data(), da_ref.data(), TBK), tol) << "dalpha";
}

}  // namespace mtp::test
