// The checks every registered (cell, aggregator) pair gets by registration alone, run by
// `mtp-exp check` and by the test suite (tests/test_layer_checks.cpp):
//  - gradients of x and of every parameter against central differences, in double, for
//    K = 1, 2, 3, with a carried state, across the scans' state checkpoints (T = 37),
//    and in training mode for each of the aggregator's check options (noise, top-k, ...);
//    with a carried state, the loss also reads the final state, and the initial state's
//    gradient is checked too;
//  - the float path against the double path on the same parameters;
//  - a sequence run in chunks with the state carried equals it run whole;
//  - for cells that mix inside their scan, the mixed scan equals recur + aggregator.
// A cell or aggregator tunes them with optional hooks, never with branches here:
//   Cell:       static Config check_config()         small widths (default model_config(5))
//               static void make_valid_state(View<S>) turn a random (B,K,Sw) state into one
//                                                     that describes a real history
//   Aggregator: static std::vector<Options> check_options(int K)   variants to check
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mtp/core/perspectives.hpp"
#include "mtp/core/rng.hpp"
#include "mtp/core/tensor.hpp"
#include "mtp/experiments/check_result.hpp"

namespace mtp::exp {

namespace checks {

// Max over elements of |a − b|, over the largest |b|.
template <class A, class B>
double relative_error(const A* a, const B* b, index_t n) {
  double diff = 0, scale = 1e-30;
  for (index_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return diff / scale;
}

// Central differences of `loss` wrt values[0..n), against `analytic`; values restored.
inline double gradient_error(double* values, const double* analytic, index_t n,
                             const std::function<double()>& loss, double eps = 1e-5) {
  std::vector<double> numeric(n);
  for (index_t i = 0; i < n; ++i) {
    const double keep = values[i];
    values[i] = keep + eps;
    const double up = loss();
    values[i] = keep - eps;
    const double down = loss();
    values[i] = keep;
    numeric[i] = (up - down) / (2 * eps);
  }
  return relative_error(analytic, numeric.data(), n);
}

template <class S>
void fill_normal(S* v, index_t n, std::uint64_t seed, double scale = 1.0) {
  RngSequence rng(seed, 77);
  for (index_t i = 0; i < n; ++i) v[i] = S(scale * rng.normal());
}

template <class C>
typename C::Config check_config() {
  if constexpr (requires { C::check_config(); })
    return C::check_config();
  else
    return C::model_config(5);
}

template <class A>
std::vector<typename A::Options> check_options(int K) {
  if constexpr (requires { A::check_options(K); })
    return A::check_options(K);
  else
    return {typename A::Options{}};
}

template <class Mixer>
typename Mixer::Config layer_config(int K, const typename Mixer::AggregatorType::Options& o) {
  typename Mixer::Config cfg;
  cfg.cell = check_config<typename Mixer::CellType>();
  cfg.perspectives = K;
  cfg.decay_spread = 0.7;
  cfg.aggregator = o;
  return cfg;
}

// A layer with its parameters: the cell's init, then 0.3·N(0,1) on every value, so
// that no tensor stays at an initial zero and gates sit away from ½.
template <class Mixer>
struct CheckLayer {
  using S = typename Mixer::Scalar;
  Mixer layer;
  ParamStore<S> store;
  explicit CheckLayer(const typename Mixer::Config& cfg) : layer(cfg) {
    attach_params(layer, store, "layer.");
    RngSequence rng(1, 2);
    layer.init(rng);
    RngSequence noise(1, 3);
    for (index_t i = 0; i < store.size(); ++i) store.values()[i] += S(0.3 * noise.normal());
  }
};

template <class Mixer>
std::vector<typename Mixer::Scalar> random_state(const Mixer& layer, index_t B, int K,
                                                 std::uint64_t seed) {
  using S = typename Mixer::Scalar;
  std::vector<S> s(B * K * layer.state_width());
  fill_normal(s.data(), index_t(s.size()), seed, 0.5);
  if constexpr (requires(View<S> v) { Mixer::CellType::make_valid_state(v); })
    Mixer::CellType::make_valid_state(View<S>(s.data(), {B, K, layer.state_width()}));
  return s;
}

// Gradients of L = ⟨y, R⟩ against central differences, in double; with a carried state
// L = ⟨y, R⟩ + ⟨sT, Q⟩, and the initial state's gradient as well.
template <class Mixer>
void gradients(std::vector<CheckResult>& out, const std::string& label, int K,
               const typename Mixer::AggregatorType::Options& o, bool state, bool training,
               index_t T, double tol = 1e-7) {
  CheckLayer<Mixer> t(layer_config<Mixer>(K, o));
  constexpr index_t B = 3;
  const index_t I = t.layer.input_width(), O = t.layer.output_width();
  std::vector<double> x(T * B * I), R(T * B * O);
  fill_normal(x.data(), index_t(x.size()), 3);
  fill_normal(R.data(), index_t(R.size()), 4);
  std::vector<double> s0 = random_state(t.layer, B, K, 5);
  const Shape xs{T, B, I}, ys{T, B, O}, ss{B, index_t(K), t.layer.state_width()};
  std::vector<double> Q(s0.size());  // (B,K,Sw), as s0
  fill_normal(Q.data(), index_t(Q.size()), 6);
  const StepContext ctx{.training = training, .seed = 42, .step = 7};
  Tensor<double> y(ys), s(ss);
  auto loss = [&] {
    if (state) std::copy(s0.begin(), s0.end(), s.data());
    t.layer.forward(CView<double>(x.data(), xs), y.view(), ctx, state ? s.view() : View<double>{});
    double l = 0;
    for (index_t i = 0; i < y.numel(); ++i) l += y[i] * R[i];
    if (state)
      for (index_t i = 0; i < s.numel(); ++i) l += s[i] * Q[i];
    return l;
  };
  loss();
  t.store.zero_grad();
  Tensor<double> dx(xs), ds0(ss);
  using StateGrad = typename Mixer::StateGrad;
  t.layer.backward(
      CView<double>(x.data(), xs), CView<double>(R.data(), ys), dx.view(),
      state ? StateGrad{.dsT = CView<double>(Q.data(), ss), .ds0 = ds0.view()} : StateGrad{});
  const std::vector<double> grads(t.store.grads(), t.store.grads() + t.store.size());
  out.push_back(
      {"gradients " + label + ": x",
       gradient_error(x.data(), std::vector<double>(dx.data(), dx.data() + dx.numel()).data(),
                      dx.numel(), loss),
       tol});
  if (state)
    out.push_back({"gradients " + label + ": initial state",
                   gradient_error(s0.data(), ds0.data(), ds0.numel(), loss), tol});
  for (const ParamInfo& p : t.store.infos())
    out.push_back({"gradients " + label + ": " + p.name,
                   gradient_error(t.store.values() + p.offset, grads.data() + p.offset,
                                  p.shape.numel(), loss),
                   tol});
}

// The float path against the double path on the same parameters, at width 32.
template <class MixerF, class MixerD>
void float_path(std::vector<CheckResult>& out) {
  constexpr index_t T = 24, B = 4, W = 32;
  typename MixerD::Config cd;
  cd.cell = MixerD::CellType::model_config(W);
  cd.perspectives = 3;
  typename MixerF::Config cf;
  cf.cell = MixerF::CellType::model_config(W);
  cf.perspectives = 3;
  CheckLayer<MixerD> d(cd);
  MixerF f(cf);
  ParamStore<float> fs;
  attach_params(f, fs, "layer.");
  for (index_t i = 0; i < d.store.size(); ++i) fs.values()[i] = float(d.store.values()[i]);
  fs.mark_all_set();
  const index_t I = d.layer.input_width(), O = d.layer.output_width();
  std::vector<double> x(T * B * I), dy(T * B * O);
  fill_normal(x.data(), index_t(x.size()), 8);
  fill_normal(dy.data(), index_t(dy.size()), 9);
  const std::vector<float> xf(x.begin(), x.end()), dyf(dy.begin(), dy.end());
  const Shape xs{T, B, I}, ys{T, B, O};
  Tensor<double> yd(ys), dxd(xs);
  Tensor<float> yf(ys), dxf(xs);
  d.layer.forward(CView<double>(x.data(), xs), yd.view(), StepContext{});
  f.forward(CView<float>(xf.data(), xs), yf.view(), StepContext{});
  d.layer.backward(CView<double>(x.data(), xs), CView<double>(dy.data(), ys), dxd.view());
  f.backward(CView<float>(xf.data(), xs), CView<float>(dyf.data(), ys), dxf.view());
  out.push_back({"float path: y", relative_error(yf.data(), yd.data(), yd.numel()), 1e-5});
  out.push_back({"float path: dx", relative_error(dxf.data(), dxd.data(), dxd.numel()), 1e-4});
  for (const ParamInfo& p : d.store.infos())
    out.push_back(
        {"float path: grad " + p.name,
         relative_error(fs.grads() + p.offset, d.store.grads() + p.offset, p.shape.numel()), 1e-4});
}

// A sequence run in chunks of 1, 4 and 6 steps with the state carried (from zeros, "no
// history") equals the sequence run whole.
template <class Mixer>
void chunked(std::vector<CheckResult>& out) {
  CheckLayer<Mixer> t(layer_config<Mixer>(3, {}));
  constexpr index_t T = 11, B = 2;
  const index_t I = t.layer.input_width(), O = t.layer.output_width();
  std::vector<double> x(T * B * I);
  fill_normal(x.data(), index_t(x.size()), 12);
  Tensor<double> whole({T, B, O}), parts({T, B, O});
  t.layer.forward(CView<double>(x.data(), {T, B, I}), whole.view(), StepContext{});
  Tensor<double> state({B, 3, t.layer.state_width()});
  index_t done = 0;
  for (index_t len : {index_t(1), index_t(4), index_t(6)}) {
    t.layer.forward(CView<double>(x.data() + done * B * I, {len, B, I}),
                    View<double>(parts.data() + done * B * O, {len, B, O}), StepContext{},
                    state.view());
    done += len;
  }
  out.push_back(
      {"chunked = whole", relative_error(parts.data(), whole.data(), whole.numel()), 1e-12});
}

// The mixed scan against recur + aggregator run apart: y, final state, dx, gradients.
template <class Mixer>
void mixed_scan(std::vector<CheckResult>& out, int K,
                const typename Mixer::AggregatorType::Options& o) {
  typename Mixer::Config mixed_cfg = layer_config<Mixer>(K, o), separate_cfg = mixed_cfg;
  separate_cfg.mixed_scan = false;
  CheckLayer<Mixer> mixed(mixed_cfg), separate(separate_cfg);
  constexpr index_t T = 37, B = 2;
  const index_t I = mixed.layer.input_width(), O = mixed.layer.output_width();
  std::vector<double> x(T * B * I), dy(T * B * O);
  fill_normal(x.data(), index_t(x.size()), 21);
  fill_normal(dy.data(), index_t(dy.size()), 22);
  const std::vector<double> s0 = random_state(mixed.layer, B, K, 23);
  const Shape xs{T, B, I}, ys{T, B, O}, ss{B, index_t(K), mixed.layer.state_width()};
  std::vector<double> dsT(s0.size());  // (B,K,Sw), as s0
  fill_normal(dsT.data(), index_t(dsT.size()), 24);
  const StepContext ctx{.training = true, .seed = 5, .step = 11};
  struct Run {
    Tensor<double> y, state, dx, ds0;
  };
  const auto run = [&](CheckLayer<Mixer>& t) {
    Run r{Tensor<double>(ys), Tensor<double>(ss), Tensor<double>(xs), Tensor<double>(ss)};
    std::copy(s0.begin(), s0.end(), r.state.data());
    t.layer.forward(CView<double>(x.data(), xs), r.y.view(), ctx, r.state.view());
    t.store.zero_grad();
    t.layer.backward(CView<double>(x.data(), xs), CView<double>(dy.data(), ys), r.dx.view(),
                     {.dsT = CView<double>(dsT.data(), ss), .ds0 = r.ds0.view()});
    return r;
  };
  const Run m = run(mixed), s = run(separate);
  const std::string label = "mixed scan K=" + std::to_string(K);
  out.push_back({label + ": used", mixed.layer.used_mixed_scan() ? 0.0 : 1.0, 0.0});
  out.push_back({label + ": y", relative_error(m.y.data(), s.y.data(), m.y.numel()), 1e-13});
  out.push_back({label + ": final state",
                 relative_error(m.state.data(), s.state.data(), m.state.numel()), 1e-13});
  out.push_back({label + ": dx", relative_error(m.dx.data(), s.dx.data(), m.dx.numel()), 1e-12});
  out.push_back({label + ": initial state's gradient",
                 relative_error(m.ds0.data(), s.ds0.data(), m.ds0.numel()), 1e-12});
  for (const ParamInfo& p : mixed.store.infos())
    out.push_back({label + ": grad " + p.name,
                   relative_error(mixed.store.grads() + p.offset, separate.store.grads() + p.offset,
                                  p.shape.numel()),
                   1e-12});
}

}  // namespace checks

// Every check of one pair; MixerF and MixerD are Perspectives<C<float>, A<float>> and
// Perspectives<C<double>, A<double>>.
template <class MixerF, class MixerD>
std::vector<CheckResult> run_layer_checks() {
  using A = typename MixerD::AggregatorType;
  using C = typename MixerD::CellType;
  std::vector<CheckResult> out;
  const typename A::Options plain{};
  for (int K = 1; K <= 3; ++K)
    checks::gradients<MixerD>(out, "K=" + std::to_string(K), K, plain, false, false, 5);
  checks::gradients<MixerD>(out, "K=3 state", 3, plain, true, false, 5);
  checks::gradients<MixerD>(out, "K=1 state", 1, plain, true, false, 5);
  checks::gradients<MixerD>(out, "K=3 state T=37", 3, plain, true, false, 37);
  const std::vector<typename A::Options> variants = checks::check_options<A>(3);
  for (size_t v = 0; v < variants.size(); ++v)
    checks::gradients<MixerD>(out, "K=3 training option " + std::to_string(v), 3, variants[v],
                              false, true, 5);
  checks::float_path<MixerF, MixerD>(out);
  checks::chunked<MixerD>(out);
  if constexpr (MixingCell<C> && WeightingAggregator<A>)
    for (int K : {1, 3}) checks::mixed_scan<MixerD>(out, K, checks::check_options<A>(K).back());
  return out;
}

}  // namespace mtp::exp
