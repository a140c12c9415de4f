// The fast path of the matrix cells, oneDNN's fused LSTM / LBR-GRU primitive at K = 1,
// against the plain path it replaces (the reference, matrix_cell.hpp), in float and
// against the double path: outputs, final state, dx and every gradient, with a random
// decay (folded into a gate's bias) and a random initial state, a gradient entering
// through the final state and the initial state's; carried state across
// chunks; where the fast path must not run; and the per-shape primitive cache.
#include <gtest/gtest.h>

#include "gradcheck.hpp"
#include "mtp/aggregators/learned.hpp"
#include "mtp/cells/gru.hpp"
#include "mtp/cells/lstm.hpp"
#include "mtp/core/perspectives.hpp"

namespace mtp {
namespace {

// A K-perspective layer of cell template Cell in scalar S, with the fast path on or off.
template <template <class> class Cell, class S>
struct Layer {
  using Mixer = Perspectives<Cell<S>, LearnedAggregator<S>>;
  Mixer layer;
  ParamStore<S> store;
  Layer(index_t I, index_t H, int K, bool fused) : layer(config(I, H, K, fused)) {
    attach_params(layer, store);
  }
  static typename Mixer::Config config(index_t I, index_t H, int K, bool fused) {
    typename Mixer::Config c;
    c.cell = {.input = I, .hidden = H, .fused = fused};
    c.perspectives = K;
    return c;
  }
  // Random parameters, the decay included: every gate bias and the decay matter.
  template <class From>
  void set_params(const From& values) {
    for (index_t i = 0; i < store.size(); ++i) store.values()[i] = S(values[i]);
    store.mark_all_set();
  }
};

using exp::checks::relative_error;

// One forward (with state in and out) and backward (with dsT when given); returns y,
// sT, dx and ds0 (when dsT is given) concatenated; gradients stay in the layer's store.
template <class L, class S>
std::vector<S> run(L& l, const std::vector<S>& x, const std::vector<S>& dy,
                   const std::vector<S>& s0, index_t T, index_t B, const std::vector<S>& dsT = {}) {
  const index_t I = l.layer.input_width(), O = l.layer.output_width();
  const int K = l.layer.perspectives();
  const Shape ss{B, index_t(K), l.layer.state_width()};
  Tensor<S> y({T, B, O}), dx({T, B, I}), state(ss), ds0(ss);
  std::copy(s0.begin(), s0.end(), state.data());
  l.store.zero_grad();
  l.layer.forward(CView<S>(x.data(), {T, B, I}), y.view(),
                  StepContext{.training = true, .seed = 1, .step = 2}, state.view());
  using StateGrad = typename L::Mixer::StateGrad;
  l.layer.backward(
      CView<S>(x.data(), {T, B, I}), CView<S>(dy.data(), {T, B, O}), dx.view(),
      dsT.empty() ? StateGrad{} : StateGrad{.dsT = CView<S>(dsT.data(), ss), .ds0 = ds0.view()});
  std::vector<S> out(y.data(), y.data() + y.numel());
  out.insert(out.end(), state.data(), state.data() + state.numel());
  out.insert(out.end(), dx.data(), dx.data() + dx.numel());
  if (!dsT.empty()) out.insert(out.end(), ds0.data(), ds0.data() + ds0.numel());
  return out;
}

// Parameters N(0, scale²): the wide shapes use a smaller scale, as an init would, so
// that saturated chaotic dynamics do not amplify float rounding over the T steps.
template <template <class> class Cell>
void fused_matches_plain(index_t T, index_t B, index_t I, index_t H, double scale) {
  Layer<Cell, float> fused(I, H, 1, true), plain(I, H, 1, false);
  Layer<Cell, double> reference(I, H, 1, false);
  std::vector<double> params(fused.store.size());
  test::fill_normal(params, 1, scale);
  fused.set_params(params);
  plain.set_params(params);
  reference.set_params(params);
  std::vector<double> x(T * B * I), dy(T * B * H), s0(B * fused.layer.state_width()),
      dsT(s0.size());
  test::fill_normal(x, 2);
  test::fill_normal(dy, 3);
  test::fill_normal(s0, 4, 0.5);
  test::fill_normal(dsT, 5);
  const std::vector<float> xf(x.begin(), x.end()), dyf(dy.begin(), dy.end()),
      s0f(s0.begin(), s0.end()), dsTf(dsT.begin(), dsT.end());

  const std::vector<float> a = run(fused, xf, dyf, s0f, T, B, dsTf);
  EXPECT_TRUE(fused.layer.used_fast_path()) << "K = 1 in float over T > 1 steps is fused";
  const std::vector<float> b = run(plain, xf, dyf, s0f, T, B, dsTf);
  EXPECT_FALSE(plain.layer.used_fast_path());
  const std::vector<double> r = run(reference, x, dy, s0, T, B, dsT);

  const index_t ny = T * B * H, ns = B * fused.layer.state_width(), nx = T * B * I;
  const char* part[] = {"y", "sT", "dx", "ds0"};
  const index_t begin[] = {0, ny, ny + ns, ny + ns + nx}, size[] = {ny, ns, nx, ns};
  for (int i = 0; i < 4; ++i) {
    EXPECT_LT(relative_error(a.data() + begin[i], b.data() + begin[i], size[i]), 1e-5) << part[i];
    EXPECT_LT(relative_error(a.data() + begin[i], r.data() + begin[i], size[i]), 2e-5) << part[i];
  }
  for (const ParamInfo& p : fused.store.infos()) {
    const float* g = fused.store.grads() + p.offset;
    if (p.name.rfind("selector.", 0) == 0) continue;  // zero at K = 1 on both paths
    EXPECT_LT(relative_error(g, plain.store.grads() + p.offset, p.shape.numel()), 5e-5) << p.name;
    EXPECT_LT(relative_error(g, reference.store.grads() + p.offset, p.shape.numel()), 5e-5)
        << p.name;
  }
}

TEST(FusedRnn, LstmMatchesThePlainPath) {
  fused_matches_plain<Lstm>(9, 3, 5, 7, 0.4);
}
TEST(FusedRnn, GruMatchesThePlainPath) {
  fused_matches_plain<Gru>(9, 3, 5, 7, 0.4);
}
TEST(FusedRnn, LstmMatchesAtAWideShape) {
  fused_matches_plain<Lstm>(32, 8, 64, 96, 0.1);
}
TEST(FusedRnn, GruMatchesAtAWideShape) {
  fused_matches_plain<Gru>(32, 8, 64, 96, 0.1);
}

// Training: the weights change between steps, so each forward must lay them out anew
// (the GRU's gate permutation included) and backward must use the same ones. A few SGD
// steps on both paths from the same start keep them together.
template <template <class> class Cell>
void fused_trains_like_plain() {
  constexpr index_t T = 7, B = 3, I = 5, H = 6;
  Layer<Cell, float> fused(I, H, 1, true), plain(I, H, 1, false);
  std::vector<double> params(fused.store.size());
  test::fill_normal(params, 11, 0.4);
  fused.set_params(params);
  plain.set_params(params);
  std::vector<double> x(T * B * I), dy(T * B * H), s0(B * fused.layer.state_width());
  test::fill_normal(x, 12);
  test::fill_normal(dy, 13);
  const std::vector<float> xf(x.begin(), x.end()), dyf(dy.begin(), dy.end()), s0f(s0.size(), 0.f);
  for (int step = 0; step < 4; ++step) {
    const std::vector<float> a = run(fused, xf, dyf, s0f, T, B);
    ASSERT_TRUE(fused.layer.used_fast_path());
    const std::vector<float> b = run(plain, xf, dyf, s0f, T, B);
    EXPECT_LT(relative_error(a.data(), b.data(), index_t(a.size())), 1e-5) << "step " << step;
    for (auto* l : {&fused.store, &plain.store})
      for (index_t i = 0; i < l->size(); ++i) l->values()[i] -= 0.05f * l->grads()[i];
  }
  EXPECT_LT(relative_error(fused.store.values(), plain.store.values(), fused.store.size()), 1e-5);
}

TEST(FusedRnn, LstmTrainsLikeThePlainPath) {
  fused_trains_like_plain<Lstm>();
}
TEST(FusedRnn, GruTrainsLikeThePlainPath) {
  fused_trains_like_plain<Gru>();
}

// Streaming through the fast path: chunks with the state carried equal one whole run
// (the last chunk is one step long, which runs the plain path: the two mix).
template <template <class> class Cell>
void chunks_equal_whole_run() {
  constexpr index_t T = 12, B = 2, I = 4, H = 6;
  Layer<Cell, float> l(I, H, 1, true);
  std::vector<double> params(l.store.size());
  test::fill_normal(params, 5, 0.4);
  l.set_params(params);
  std::vector<float> x(T * B * I);
  test::fill_normal(x, 6);
  Tensor<float> whole({T, B, H});
  const StepContext training{.training = true};
  l.layer.forward(CView<float>(x.data(), {T, B, I}), whole.view(), training);
  Tensor<float> state({B, 1, l.layer.state_width()});
  state.zero();
  index_t done = 0;
  for (index_t len : {index_t(3), index_t(8), index_t(1)}) {
    Tensor<float> part({len, B, H});
    l.layer.forward(CView<float>(x.data() + done * B * I, {len, B, I}), part.view(), training,
                    state.view());
    EXPECT_EQ(l.layer.used_fast_path(), len > 1);
    for (index_t i = 0; i < part.numel(); ++i)
      ASSERT_NEAR(part[i], whole[done * B * H + i], 1e-6) << "chunk at t=" << done;
    done += len;
  }
}

TEST(FusedRnn, LstmChunksWithCarriedStateEqualOneRun) {
  chunks_equal_whole_run<Lstm>();
}
TEST(FusedRnn, GruChunksWithCarriedStateEqualOneRun) {
  chunks_equal_whole_run<Gru>();
}

TEST(FusedRnn, OnlyAtOnePerspective) {
  Layer<Gru, float> l(4, 6, 3, true);
  RngSequence rng(0, 1);
  l.layer.init(rng);
  Tensor<float> x({5, 2, 4}), y({5, 2, 6});
  x.zero();
  l.layer.forward(x.view(), y.view(), StepContext{});
  EXPECT_FALSE(l.layer.used_fast_path()) << "K = 3 needs the per-perspective decays";
}

TEST(FusedRnn, OnlyInTraining) {
  Layer<Lstm, float> l(4, 6, 1, true);
  RngSequence rng(0, 1);
  l.layer.init(rng);
  Tensor<float> x({5, 2, 4}), y({5, 2, 6});
  x.zero();
  l.layer.forward(x.view(), y.view(), StepContext{.training = true, .seed = 0, .step = 0});
  EXPECT_TRUE(l.layer.used_fast_path());
  l.layer.forward(x.view(), y.view(), StepContext{});
  EXPECT_FALSE(l.layer.used_fast_path()) << "evaluation brings a new T per sequence";
}

// Primitives are created once per shape: a training loop creates none after its first
// step, and a new sequence length gets its own.
TEST(FusedRnn, CreatesPrimitivesOncePerShape) {
  constexpr index_t T = 6, B = 2, I = 3, H = 4;
  FusedRnn rnn(FusedRnnKind::lstm);
  std::vector<float> x(T * B * I), w_ih(4 * H * I), w_hh(4 * H * H), bias(4 * H, 0.1f),
      y(T * B * H), dy(T * B * H, 1.f), dx(T * B * I), dw_ih(w_ih.size()), dw_hh(w_hh.size()),
      dbias(4 * H);
  test::fill_normal(x, 7);
  test::fill_normal(w_ih, 8, 0.3);
  test::fill_normal(w_hh, 9, 0.3);
  for (int step = 0; step < 3; ++step) {
    rnn.forward(x.data(), w_ih.data(), w_hh.data(), bias.data(), nullptr, nullptr, y.data(),
                nullptr, nullptr, T, B, I, H);
    rnn.backward(dy.data(), nullptr, nullptr, dx.data(), dw_ih.data(), dw_hh.data(), dbias.data(),
                 nullptr, nullptr);
  }
  EXPECT_EQ(rnn.plans_created(), 1);
  rnn.forward(x.data(), w_ih.data(), w_hh.data(), bias.data(), nullptr, nullptr, y.data(), nullptr,
              nullptr, T - 1, B, I, H);
  EXPECT_EQ(rnn.plans_created(), 2);
  rnn.forward(x.data(), w_ih.data(), w_hh.data(), bias.data(), nullptr, nullptr, y.data(), nullptr,
              nullptr, T, B, I, H);
  EXPECT_EQ(rnn.plans_created(), 2);
}

}  // namespace
}  // namespace mtp
