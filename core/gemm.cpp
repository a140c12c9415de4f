#include "mtp/core/gemm.hpp"

#include <Eigen/Core>
#include <oneapi/dnnl/dnnl.hpp>

#include <map>
#include <tuple>
#include <unordered_map>

#include "mtp/core/error.hpp"

namespace mtp {
namespace {

template <class S>
void matmul_eigen(const S* A, bool trans_a, const S* B, bool trans_b, S* C, index_t M, index_t N,
                  index_t Kd, bool accumulate, const S* bias) {
  using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Row = Eigen::Matrix<S, 1, Eigen::Dynamic>;
  Eigen::Map<Mat> c(C, M, N);
  if (!accumulate) c.setZero();
  if (bias) c.rowwise() += Eigen::Map<const Row>(bias, N);
  if (M == 0 || N == 0 || Kd == 0) return;
  Eigen::Map<const Mat> a(A, trans_a ? Kd : M, trans_a ? M : Kd);
  Eigen::Map<const Mat> b(B, trans_b ? N : Kd, trans_b ? Kd : N);
  if (!trans_a && !trans_b) c.noalias() += a * b;
  if (!trans_a && trans_b) c.noalias() += a * b.transpose();
  if (trans_a && !trans_b) c.noalias() += a.transpose() * b;
  if (trans_a && trans_b) c.noalias() += a.transpose() * b.transpose();
}

// The operands of C (M,N) = op(A) (M,Kd) · op(B) (Kd,N) [+ bias], row-major, in f32.
// Transposes are expressed as strides, so no operand is ever copied.
struct MatmulDescs {
  using md = dnnl::memory::desc;
  using dims = dnnl::memory::dims;
  md a, b, c, bias;
  MatmulDescs(index_t M, index_t N, index_t Kd, bool ta, bool tb)
      : a({M, Kd}, dnnl::memory::data_type::f32, ta ? dims{1, M} : dims{Kd, 1}),
        b({Kd, N}, dnnl::memory::data_type::f32, tb ? dims{1, Kd} : dims{N, 1}),
        c({M, N}, dnnl::memory::data_type::f32, dims{N, 1}),
        bias({1, N}, dnnl::memory::data_type::f32, dims{N, 1}) {}
  // With `accumulate` a sum post-op adds the product to C; b_layout is b or `any`.
  dnnl::matmul::primitive_desc primitive(const md& b_layout, bool accumulate, bool has_bias,
                                         const dnnl::engine& engine) const {
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops po;
      po.append_sum(1.f);
      attr.set_post_ops(po);
    }
    const auto desc =
        has_bias ? dnnl::matmul::desc(a, b_layout, bias, c) : dnnl::matmul::desc(a, b_layout, c);
    return {desc, attr, engine};
  }
};

// One created matmul primitive with memory objects whose data handles are swapped on
// every call: executing it allocates nothing.
struct MatmulPlan {
  dnnl::matmul prim;
  dnnl::memory a, b, c, bias;
  std::unordered_map<int, dnnl::memory> args;
};

struct Dnnl {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  using Key = std::tuple<index_t, index_t, index_t, bool, bool, bool, bool>;
  static constexpr size_t kMaxPlans = 512;
  std::map<Key, MatmulPlan> plans;
  index_t created = 0;

  MatmulPlan& plan(index_t M, index_t N, index_t Kd, bool ta, bool tb, bool acc, bool has_bias) {
    const Key key{M, N, Kd, ta, tb, acc, has_bias};
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    // Variable-length inputs (evaluation contexts, prompts) bring new shapes without end;
    // past this many the cache starts over rather than grow. Training uses a fixed set.
    if (plans.size() >= kMaxPlans) plans.clear();

    const MatmulDescs md(M, N, Kd, ta, tb);
    MatmulPlan p;
    p.prim = dnnl::matmul(md.primitive(md.b, acc, has_bias, engine));
    p.a = dnnl::memory(md.a, engine, DNNL_MEMORY_NONE);
    p.b = dnnl::memory(md.b, engine, DNNL_MEMORY_NONE);
    p.c = dnnl::memory(md.c, engine, DNNL_MEMORY_NONE);
    p.args = {{DNNL_ARG_SRC, p.a}, {DNNL_ARG_WEIGHTS, p.b}, {DNNL_ARG_DST, p.c}};
    if (has_bias) {
      p.bias = dnnl::memory(md.bias, engine, DNNL_MEMORY_NONE);
      p.args.emplace(DNNL_ARG_BIAS, p.bias);
    }
    ++created;
    return plans.emplace(key, std::move(p)).first->second;
  }
};

Dnnl& dnnl_state() {
  // Per thread: plans hold data handles between set and execute, so sharing one
  // across threads would race. Sweeps run jobs as processes, so this stays small.
  thread_local Dnnl state;
  return state;
}

}  // namespace

void matmul(const float* A, bool trans_a, const float* B, bool trans_b, float* C, index_t M,
            index_t N, index_t Kd, bool accumulate, const float* bias) {
  if (M == 0 || N == 0) return;
  if (Kd == 0) {  // oneDNN rejects empty reductions; the product is zero.
    matmul_eigen(A, trans_a, B, trans_b, C, M, N, Kd, accumulate, bias);
    return;
  }
  Dnnl& d = dnnl_state();
  MatmulPlan& p = d.plan(M, N, Kd, trans_a, trans_b, accumulate, bias != nullptr);
  p.a.set_data_handle(const_cast<float*>(A));
  p.b.set_data_handle(const_cast<float*>(B));
  p.c.set_data_handle(C);
  if (bias) p.bias.set_data_handle(const_cast<float*>(bias));
  p.prim.execute(d.stream, p.args);
  d.stream.wait();
}

void matmul(const double* A, bool trans_a, const double* B, bool trans_b, double* C, index_t M,
            index_t N, index_t Kd, bool accumulate, const double* bias) {
  matmul_eigen(A, trans_a, B, trans_b, C, M, N, Kd, accumulate, bias);
}

void matmul_reference(const float* A, bool trans_a, const float* B, bool trans_b, float* C,
                      index_t M, index_t N, index_t Kd, bool accumulate, const float* bias) {
  matmul_eigen(A, trans_a, B, trans_b, C, M, N, Kd, accumulate, bias);
}

index_t matmul_primitives_created() {
  return dnnl_state().created;
}

struct PackedMatmul<float>::Impl {
  using Key = std::tuple<index_t, index_t, index_t, bool, bool, bool>;
  Key key{-1, -1, -1, false, false, false};
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  mutable dnnl::stream stream{engine};
  dnnl::matmul prim;
  dnnl::memory user_b, packed_b, a, c, bias;
  dnnl::reorder pack_b;  // user_b → packed_b
  std::unordered_map<int, dnnl::memory> args;
  bool has_bias = false;
  index_t M = 0, N = 0, Kd = 0;
};

PackedMatmul<float>::PackedMatmul() : impl_(std::make_unique<Impl>()) {}
PackedMatmul<float>::~PackedMatmul() = default;
PackedMatmul<float>::PackedMatmul(PackedMatmul&&) noexcept = default;
PackedMatmul<float>& PackedMatmul<float>::operator=(PackedMatmul&&) noexcept = default;

void PackedMatmul<float>::pack(const float* B, bool trans_b, const float* bias, index_t M,
                               index_t N, index_t Kd, bool accumulate) {
  MTP_CHECK(M > 0 && N > 0 && Kd > 0, "packed matmul needs positive sizes, got {}x{}x{}", M, N, Kd);
  Impl& p = *impl_;
  p.M = M, p.N = N, p.Kd = Kd;
  const Impl::Key key{M, N, Kd, trans_b, accumulate, bias != nullptr};
  if (key != p.key) {
    const MatmulDescs md(M, N, Kd, false, trans_b);
    // B's layout is oneDNN's choice: the blocked one its kernel reads.
    const dnnl::memory::desc b_any({Kd, N}, dnnl::memory::data_type::f32,
                                   dnnl::memory::format_tag::any);
    const dnnl::matmul::primitive_desc pd = md.primitive(b_any, accumulate, bias, p.engine);
    p.prim = dnnl::matmul(pd);
    p.user_b = dnnl::memory(md.b, p.engine, DNNL_MEMORY_NONE);
    p.packed_b = dnnl::memory(pd.weights_desc(), p.engine);
    p.pack_b = dnnl::reorder(p.user_b, p.packed_b);
    p.a = dnnl::memory(md.a, p.engine, DNNL_MEMORY_NONE);
    p.c = dnnl::memory(md.c, p.engine, DNNL_MEMORY_NONE);
    p.args = {{DNNL_ARG_SRC, p.a}, {DNNL_ARG_WEIGHTS, p.packed_b}, {DNNL_ARG_DST, p.c}};
    p.has_bias = bias != nullptr;
    if (bias) {
      p.bias = dnnl::memory(md.bias, p.engine, DNNL_MEMORY_NONE);
      p.args.emplace(DNNL_ARG_BIAS, p.bias);
    }
    p.key = key;
  }
  p.user_b.set_data_handle(const_cast<float*>(B));
  p.pack_b.execute(p.stream, p.user_b, p.packed_b);
  p.stream.wait();
  if (bias) p.bias.set_data_handle(const_cast<float*>(bias));
}

void PackedMatmul<float>::run(const float* A, float* C) const {
  const Impl& p = *impl_;
  p.a.set_data_handle(const_cast<float*>(A));
  p.c.set_data_handle(C);
  p.prim.execute(p.stream, p.args);
  p.stream.wait();
}

}  // namespace mtp
