// Every model op against central differences in double, and the oneDNN GEMM against
// its Eigen reference in float.
#include <gtest/gtest.h>

#include <limits>

#include "gradcheck.hpp"
#include "mtp/core/gemm.hpp"
#include "mtp/core/ops/activations.hpp"
#include "mtp/core/ops/embedding.hpp"
#include "mtp/core/ops/layernorm.hpp"
#include "mtp/core/ops/linear.hpp"
#include "mtp/core/ops/softmax.hpp"
#include "mtp/core/optim.hpp"

namespace mtp {
namespace {

constexpr double kTol = 1e-7;
using Vec = std::vector<double>;

TEST(Ops, LinearGradients) {
  const index_t R = 5, In = 4, Out = 3;
  Vec x(R * In), W(Out * In), b(Out), Rw(R * Out);
  test::fill_normal(x, 1);
  test::fill_normal(W, 2);
  test::fill_normal(b, 3);
  test::fill_normal(Rw, 4);
  Vec y(R * Out);
  auto loss = [&] {
    linear_forward<double>(CView<double>(x.data(), {R, In}), CView<double>(W.data(), {Out, In}),
                           b.data(), View<double>(y.data(), {R, Out}));
    return test::dot(y.data(), Rw.data(), R * Out);
  };
  loss();
  Vec dx(R * In), dW(Out * In, 0.0), db(Out, 0.0);
  linear_backward<double>(CView<double>(Rw.data(), {R, Out}), CView<double>(x.data(), {R, In}),
                          CView<double>(W.data(), {Out, In}), View<double>(dx.data(), {R, In}),
                          View<double>(dW.data(), {Out, In}), db.data());
  EXPECT_LT(test::gradcheck(x.data(), dx.data(), R * In, loss), kTol);
  EXPECT_LT(test::gradcheck(W.data(), dW.data(), Out * In, loss), kTol);
  EXPECT_LT(test::gradcheck(b.data(), db.data(), Out, loss), kTol);
}

TEST(Ops, LayerNormGradients) {
  const index_t R = 4, C = 7;
  Vec x(R * C), w(C), b(C), Rw(R * C), y(R * C), mean(R), rstd(R);
  test::fill_normal(x, 1, 2.0);
  test::fill_normal(w, 2);
  test::fill_normal(b, 3);
  test::fill_normal(Rw, 4);
  auto loss = [&] {
    layernorm_forward<double>(CView<double>(x.data(), {R, C}), CView<double>(w.data(), {C}),
                              CView<double>(b.data(), {C}), View<double>(y.data(), {R, C}),
                              View<double>(mean.data(), {R}), View<double>(rstd.data(), {R}));
    return test::dot(y.data(), Rw.data(), R * C);
  };
  loss();
  Vec dx(R * C), dw(C, 0.0), db(C, 0.0);
  layernorm_backward<double>(CView<double>(Rw.data(), {R, C}), CView<double>(x.data(), {R, C}),
                             CView<double>(w.data(), {C}), CView<double>(mean.data(), {R}),
                             CView<double>(rstd.data(), {R}), View<double>(dx.data(), {R, C}),
                             View<double>(dw.data(), {C}), View<double>(db.data(), {C}));
  EXPECT_LT(test::gradcheck(x.data(), dx.data(), R * C, loss), kTol);
  EXPECT_LT(test::gradcheck(w.data(), dw.data(), C, loss), kTol);
  EXPECT_LT(test::gradcheck(b.data(), db.data(), C, loss), kTol);
  // The output of a layer norm with w = 1, b = 0 has zero mean and unit variance.
  std::fill(w.begin(), w.end(), 1.0);
  std::fill(b.begin(), b.end(), 0.0);
  loss();
  for (index_t r = 0; r < R; ++r) {
    double m = 0, v = 0;
    for (index_t c = 0; c < C; ++c) m += y[r * C + c] / C;
    for (index_t c = 0; c < C; ++c) v += (y[r * C + c] - m) * (y[r * C + c] - m) / C;
    EXPECT_NEAR(m, 0.0, 1e-12);
    EXPECT_NEAR(v, 1.0, 1e-4);  // ε = 1e-5 in the denominator
  }
}

TEST(Ops, GeluGradientsAndValues) {
  const index_t n = 11;
  Vec x(n), y(n), Rw(n), dx(n);
  test::fill_normal(x, 1, 2.0);
  test::fill_normal(Rw, 2);
  auto loss = [&] {
    gelu_forward<double>(CView<double>(x.data(), {n}), View<double>(y.data(), {n}));
    return test::dot(y.data(), Rw.data(), n);
  };
  loss();
  gelu_backward<double>(CView<double>(Rw.data(), {n}), CView<double>(x.data(), {n}),
                        View<double>(dx.data(), {n}));
  EXPECT_LT(test::gradcheck(x.data(), dx.data(), n, loss), kTol);
  // Known values of the tanh approximation (PyTorch gelu(approximate='tanh')).
  Vec v = {-3.0, -1.0, 0.0, 0.5, 2.0}, out(5);
  gelu_forward<double>(CView<double>(v.data(), {5}), View<double>(out.data(), {5}));
  EXPECT_NEAR(out[0], -0.0036373921, 1e-9);
  EXPECT_NEAR(out[1], -0.1588080094, 1e-9);
  EXPECT_EQ(out[2], 0.0);
  EXPECT_NEAR(out[3], 0.3457140098, 1e-9);
  EXPECT_NEAR(out[4], 1.9545976941, 1e-9);
}

TEST(Ops, EmbeddingGradients) {
  const index_t V = 5, C = 3, R = 6;
  const std::int32_t tokens[R] = {0, 3, 3, 1, 4, 3};
  Vec E(V * C), y(R * C), Rw(R * C), dE(V * C, 0.0);
  test::fill_normal(E, 1);
  test::fill_normal(Rw, 2);
  auto loss = [&] {
    embedding_forward<double>(tokens, R, CView<double>(E.data(), {V, C}),
                              View<double>(y.data(), {R, C}));
    return test::dot(y.data(), Rw.data(), R * C);
  };
  loss();
  embedding_backward<double>(tokens, R, CView<double>(Rw.data(), {R, C}),
                             View<double>(dE.data(), {V, C}));
  EXPECT_LT(test::gradcheck(E.data(), dE.data(), V * C, loss), kTol);
  for (index_t c = 0; c < C; ++c) EXPECT_EQ(dE[2 * C + c], 0.0) << "token 2 never appears";
}

TEST(Ops, CrossEntropyGradientsIgnoreUnlabelled) {
  const index_t R = 5, V = 4;
  const std::int32_t targets[R] = {2, kIgnoreTarget, 0, 3, kIgnoreTarget};
  Vec logits(R * V), probs(R * V), dlogits(R * V);
  test::fill_normal(logits, 1, 2.0);
  CrossEntropyStats st;
  auto loss = [&] {
    st = cross_entropy_forward<double>(CView<double>(logits.data(), {R, V}), targets,
                                       View<double>(probs.data(), {R, V}));
    return st.mean_loss();
  };
  loss();
  EXPECT_EQ(st.labelled, 3);
  cross_entropy_backward<double>(CView<double>(probs.data(), {R, V}), targets, st.labelled,
                                 View<double>(dlogits.data(), {R, V}));
  EXPECT_LT(test::gradcheck(logits.data(), dlogits.data(), R * V, loss), kTol);
  for (index_t v = 0; v < V; ++v) EXPECT_EQ(dlogits[1 * V + v], 0.0);
  // Loss by hand for row 0.
  double mx = logits[0], z = 0;
  for (index_t v = 1; v < V; ++v) mx = std::max(mx, logits[v]);
  for (index_t v = 0; v < V; ++v) z += std::exp(logits[v] - mx);
  const double row0 = -(logits[2] - mx - std::log(z));
  std::int32_t t0[R] = {2, kIgnoreTarget, kIgnoreTarget, kIgnoreTarget, kIgnoreTarget};
  EXPECT_NEAR(cross_entropy_forward<double>(CView<double>(logits.data(), {R, V}), t0,
                                            View<double>(probs.data(), {R, V}))
                  .mean_loss(),
              row0, 1e-12);
}

// The float fast paths against double-precision libm over the range that matters.
TEST(Ops, FastFloatExpSigmoidTanhAreAccurate) {
  double exp_rel = 0, sig_abs = 0, tanh_abs = 0;
  for (int i = -200000; i <= 200000; ++i) {
    const float x = float(i) * 4e-4f;  // [-80, 80]
    const double xd = x;
    exp_rel = std::max(exp_rel, std::abs(exp_fast(x) - std::exp(xd)) / std::exp(xd));
    sig_abs = std::max(sig_abs, std::abs(sigmoid(x) - 1 / (1 + std::exp(-xd))));
    tanh_abs = std::max(tanh_abs, std::abs(tanh_fast(x) - std::tanh(xd)));
  }
  EXPECT_LT(exp_rel, 3e-7);
  EXPECT_LT(sig_abs, 2e-7);
  EXPECT_LT(tanh_abs, 3e-7);
  // Saturation without overflow or NaN far outside the range.
  EXPECT_EQ(tanh_fast(1e30f), 1.0f);
  EXPECT_EQ(tanh_fast(-1e30f), -1.0f);
  EXPECT_EQ(sigmoid(1e30f), 1.0f);
  EXPECT_GE(sigmoid(-1e30f), 0.0f);
  EXPECT_LT(sigmoid(-1e30f), 1e-37f);
  EXPECT_TRUE(std::isfinite(exp_fast(1e30f)));
  EXPECT_EQ(exp_fast(-1e38f), 0.0f) << "stable scans start from exp(-1e38)";
  EXPECT_EQ(exp_fast(-88.0f), 0.0f);
  EXPECT_GT(exp_fast(-87.0f), 0.0f);
  // A NaN comes out as NaN (training then stops naming the step), through well-defined
  // code: UBSan once caught its float-to-int conversion here.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(exp_fast(nan)));
  EXPECT_TRUE(std::isnan(sigmoid(nan)));
  EXPECT_TRUE(std::isnan(tanh_fast(nan)));
}

TEST(Ops, SoftmaxRowGradients) {
  const index_t N = 5;
  Vec x(N), p(N), Rw(N), dx(N);
  test::fill_normal(x, 1, 3.0);
  test::fill_normal(Rw, 2);
  auto loss = [&] {
    softmax_row(x.data(), p.data(), N);
    return test::dot(p.data(), Rw.data(), N);
  };
  loss();
  softmax_row_backward(p.data(), Rw.data(), dx.data(), N);
  EXPECT_LT(test::gradcheck(x.data(), dx.data(), N, loss), kTol);
  double sum = 0;
  for (double v : p) sum += v;
  EXPECT_NEAR(sum, 1.0, 1e-15);
}

// oneDNN's f32 matmul against the Eigen reference, every transpose/accumulate/bias
// combination and a few shapes (including ones the cache has seen before).
TEST(Gemm, OneDnnMatchesEigenReference) {
  const index_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {64, 96, 33}, {3, 128, 257}, {7, 5, 3}};
  for (const auto& s : shapes)
    for (int mode = 0; mode < 16; ++mode) {
      const index_t M = s[0], N = s[1], Kd = s[2];
      const bool ta = mode & 1, tb = mode & 2, acc = mode & 4, bias = mode & 8;
      std::vector<float> A(M * Kd), B(Kd * N), bv(N), C0(M * N);
      test::fill_normal(A, 1 + mode);
      test::fill_normal(B, 2 + mode);
      test::fill_normal(bv, 3 + mode);
      test::fill_normal(C0, 4 + mode);
      std::vector<float> c_dnnl = C0, c_ref = C0;
      matmul(A.data(), ta, B.data(), tb, c_dnnl.data(), M, N, Kd, acc, bias ? bv.data() : nullptr);
      matmul_reference(A.data(), ta, B.data(), tb, c_ref.data(), M, N, Kd, acc,
                       bias ? bv.data() : nullptr);
      double err = 0, scale = 1e-30;
      for (index_t i = 0; i < M * N; ++i) {
        err = std::max(err, double(std::abs(c_dnnl[i] - c_ref[i])));
        scale = std::max(scale, double(std::abs(c_ref[i])));
      }
      EXPECT_LT(err / scale, 1e-5) << M << "x" << N << "x" << Kd << " mode " << mode;
    }
}

TEST(Gemm, PrimitivesAreCreatedOncePerShape) {
  std::vector<float> A(6 * 4, 1.f), B(4 * 5, 1.f), C(6 * 5);
  matmul(A.data(), false, B.data(), false, C.data(), 6, 5, 4);
  const index_t created = matmul_primitives_created();
  for (int i = 0; i < 10; ++i) matmul(A.data(), false, B.data(), false, C.data(), 6, 5, 4);
  EXPECT_EQ(matmul_primitives_created(), created);
  EXPECT_EQ(C[0], 4.f);
  matmul(A.data(), false, B.data(), false, C.data(), 6, 5, 4, true);
  EXPECT_EQ(matmul_primitives_created(), created + 1) << "accumulate is a different primitive";
  EXPECT_EQ(C[0], 8.f);
}

// The packed-weights product against the Eigen reference: both transposes of B, with
// and without bias and accumulation, several products per packing, and a re-pack after
// B changes in place (as W_hh does after every optimiser step).
TEST(Gemm, PackedMatmulMatchesEigenReference) {
  constexpr index_t M = 12, N = 40, Kd = 24;
  for (int mode = 0; mode < 8; ++mode) {
    const bool tb = mode & 1, acc = mode & 2, bias = mode & 4;
    std::vector<float> B(Kd * N), bv(N);
    test::fill_normal(B, 20 + mode);
    test::fill_normal(bv, 30 + mode);
    PackedMatmul<float> packed;
    for (int pass = 0; pass < 2; ++pass) {
      if (pass == 1)
        for (float& b : B) b *= -0.5f;  // changed in place: pack again
      packed.pack(B.data(), tb, bias ? bv.data() : nullptr, M, N, Kd, acc);
      for (int product = 0; product < 3; ++product) {
        std::vector<float> A(M * Kd), C0(M * N);
        test::fill_normal(A, 40 + 10 * pass + product);
        test::fill_normal(C0, 50 + 10 * pass + product);
        std::vector<float> c_packed = C0, c_ref = C0;
        packed.run(A.data(), c_packed.data());
        matmul_reference(A.data(), false, B.data(), tb, c_ref.data(), M, N, Kd, acc,
                         bias ? bv.data() : nullptr);
        for (index_t i = 0; i < M * N; ++i)
          ASSERT_NEAR(c_packed[i], c_ref[i], 1e-4) << "mode " << mode << " pass " << pass;
      }
    }
  }
}

TEST(Gemm, EmptyReductionGivesZeroOrBias) {
  std::vector<float> C(6, 5.f), bias = {1.f, 2.f, 3.f};
  matmul(static_cast<const float*>(nullptr), false, nullptr, false, C.data(), 2, 3, 0, false,
         bias.data());
  EXPECT_EQ(C[0], 1.f);
  EXPECT_EQ(C[5], 3.f);
}

TEST(Optim, WarmupCosineSchedule) {
  EXPECT_DOUBLE_EQ(warmup_cosine_lr(0, 100, 10, 1.0), 0.1);
  EXPECT_DOUBLE_EQ(warmup_cosine_lr(9, 100, 10, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(warmup_cosine_lr(10, 100, 10, 1.0), 1.0);
  EXPECT_NEAR(warmup_cosine_lr(55, 100, 10, 1.0), 0.55, 1e-12);  // halfway: (1 + 0.1) / 2
  EXPECT_NEAR(warmup_cosine_lr(100, 100, 10, 1.0), 0.1, 1e-12);
}

TEST(Optim, AdamWMatchesHandComputedStep) {
  ParamStore<double> store;
  Param<double> w = store.add("w", {2}, ParamRole::base, true);
  Param<double> b = store.add("b", {1});
  store.finalize();
  store.bind(w, b);
  w.value[0] = 1.0;
  w.value[1] = -2.0;
  b.value[0] = 0.5;
  w.grad[0] = 0.1;
  w.grad[1] = -0.3;
  b.grad[0] = 2.0;
  AdamW<double> opt(store, {.beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1});
  opt.step(store, 0.01, {});
  // First step: m̂ = g, v̂ = g², update = lr·g/(|g| + ε) = lr·sign(g); decay on w only.
  EXPECT_NEAR(w.value[0], 1.0 * (1 - 0.01 * 0.1) - 0.01, 1e-9);
  EXPECT_NEAR(w.value[1], -2.0 * (1 - 0.01 * 0.1) + 0.01, 1e-9);
  EXPECT_NEAR(b.value[0], 0.5 - 0.01, 1e-9);
  // A frozen parameter does not move.
  opt.step(store, 0.01, {true, false});
  EXPECT_NEAR(b.value[0], 0.5 - 0.01, 1e-9);
}

TEST(Optim, GlobalNormClipping) {
  ParamStore<float> store;
  Param<float> w = store.add("w", {2});
  store.finalize();
  store.bind(w);
  w.grad[0] = 3;
  w.grad[1] = 4;
  const double norm = grad_global_norm(store);
  EXPECT_DOUBLE_EQ(norm, 5.0);
  EXPECT_DOUBLE_EQ(clip_grad_global_norm(store, norm, 10.0), 1.0);
  EXPECT_NEAR(clip_grad_global_norm(store, norm, 1.0), 0.2, 1e-12);
  EXPECT_NEAR(grad_global_norm(store), 1.0, 1e-6);
}

}  // namespace
}  // namespace mtp
