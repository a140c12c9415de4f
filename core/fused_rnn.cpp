#include "mtp/core/fused_rnn.hpp"

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cstring>
#include <map>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mtp/core/error.hpp"

namespace mtp {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using md = dnnl::memory::desc;

}  // namespace

// (Named, not anonymous: FusedRnn::Impl holds Plans, and a class with external linkage
// must not hold a type of an anonymous namespace when units are compiled together.)
namespace fused_rnn_detail {

// One shape's primitives and every buffer they touch. Memory objects wrap either owned
// storage or caller pointers swapped in per call, so a step allocates nothing.
struct Plan {
  dnnl::primitive fwd, bwd;
  dnnl::rnn_primitive_desc_base fwd_pd, bwd_pd;
  // Caller-layout views (ldgoi weights, tnc data) and primitive-layout storage.
  dnnl::memory user_w_ih, user_w_hh, user_dw_ih, user_dw_hh;
  dnnl::memory fwd_w_ih, fwd_w_hh, bwd_w_ih, bwd_w_hh, dw_ih, dw_hh;
  dnnl::memory x, y, dy, dx, bias, dbias, workspace;
  dnnl::memory h0, c0, hT, cT, dh0, dc0, dhT, dcT;  // (B,H) states and their (zero) diffs
  std::vector<float> dx_scratch;                    // (T,B,I): dx is accumulated, not written
  std::vector<float> dw_ih_plain, dw_hh_plain;      // (G·H,I), (G·H,H) in ldgoi
  // Weight layout changes: the caller's into the forward's and backward's, the gradients
  // back into the caller's.
  dnnl::reorder to_fwd_ih, to_fwd_hh, to_bwd_ih, to_bwd_hh, from_dw_ih, from_dw_hh;
  std::unordered_map<int, dnnl::memory> fwd_args, bwd_args;
};

}  // namespace fused_rnn_detail

struct FusedRnn::Impl {
  using Plan = fused_rnn_detail::Plan;
  FusedRnnKind kind;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  using Key = std::tuple<index_t, index_t, index_t, index_t>;  // T, B, I, H
  static constexpr size_t kMaxPlans = 16;  // evaluation brings new T's; training one
  std::map<Key, Plan> plans;
  Plan* last = nullptr;  // the plan of the last forward, for backward
  index_t created = 0;
  std::vector<float> permuted_ih, permuted_hh;  // GRU weights in oneDNN's gate order

  int gates() const { return kind == FusedRnnKind::lstm ? 4 : 3; }

  Plan& plan(index_t T, index_t B, index_t I, index_t H) {
    const Key key{T, B, I, H};
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    if (plans.size() >= kMaxPlans) plans.clear();
    ++created;
    return plans.emplace(key, make_plan(T, B, I, H)).first->second;
  }

  Plan make_plan(index_t T, index_t B, index_t I, index_t H) {
    const index_t G = gates();
    const md x_md({T, B, I}, dt::f32, tag::tnc), y_md({T, B, H}, dt::f32, tag::tnc);
    const md state_md({1, 1, B, H}, dt::f32, tag::ldnc);
    const md w_ih_any({1, 1, I, G, H}, dt::f32, tag::any);
    const md w_hh_any({1, 1, H, G, H}, dt::f32, tag::any);
    const md bias_md({1, 1, 4, H}, dt::f32, tag::ldgo);
    const auto dir = dnnl::rnn_direction::unidirectional_left2right;
    const auto train = dnnl::prop_kind::forward_training;
    Plan p;
    if (kind == FusedRnnKind::lstm) {
      const dnnl::lstm_forward::desc fd(train, dir, x_md, state_md, state_md, w_ih_any, w_hh_any,
                                        bias_md, y_md, state_md, state_md);
      const dnnl::lstm_forward::primitive_desc fpd(fd, engine);
      const dnnl::lstm_backward::desc bd(dnnl::prop_kind::backward, dir, x_md, state_md, state_md,
                                         w_ih_any, w_hh_any, bias_md, y_md, state_md, state_md,
                                         x_md, state_md, state_md, w_ih_any, w_hh_any, bias_md,
                                         y_md, state_md, state_md);
      const dnnl::lstm_backward::primitive_desc bpd(bd, engine, fpd);
      p.fwd = dnnl::lstm_forward(fpd);
      p.bwd = dnnl::lstm_backward(bpd);
      p.fwd_pd = fpd;
      p.bwd_pd = bpd;
    } else {
      const dnnl::lbr_gru_forward::desc fd(train, dir, x_md, state_md, w_ih_any, w_hh_any, bias_md,
                                           y_md, state_md);
      const dnnl::lbr_gru_forward::primitive_desc fpd(fd, engine);
      const dnnl::lbr_gru_backward::desc bd(dnnl::prop_kind::backward, dir, x_md, state_md,
                                            w_ih_any, w_hh_any, bias_md, y_md, state_md, x_md,
                                            state_md, w_ih_any, w_hh_any, bias_md, y_md, state_md);
      const dnnl::lbr_gru_backward::primitive_desc bpd(bd, engine, fpd);
      p.fwd = dnnl::lbr_gru_forward(fpd);
      p.bwd = dnnl::lbr_gru_backward(bpd);
      p.fwd_pd = fpd;
      p.bwd_pd = bpd;
    }
    const md user_ih({1, 1, I, G, H}, dt::f32, tag::ldgoi);
    const md user_hh({1, 1, H, G, H}, dt::f32, tag::ldgoi);
    p.user_w_ih = dnnl::memory(user_ih, engine, DNNL_MEMORY_NONE);
    p.user_w_hh = dnnl::memory(user_hh, engine, DNNL_MEMORY_NONE);
    p.dw_ih_plain.resize(G * H * I);
    p.dw_hh_plain.resize(G * H * H);
    p.user_dw_ih = dnnl::memory(user_ih, engine, p.dw_ih_plain.data());
    p.user_dw_hh = dnnl::memory(user_hh, engine, p.dw_hh_plain.data());
    p.fwd_w_ih = dnnl::memory(p.fwd_pd.weights_layer_desc(), engine);
    p.fwd_w_hh = dnnl::memory(p.fwd_pd.weights_iter_desc(), engine);
    p.bwd_w_ih = dnnl::memory(p.bwd_pd.weights_layer_desc(), engine);
    p.bwd_w_hh = dnnl::memory(p.bwd_pd.weights_iter_desc(), engine);
    p.dw_ih = dnnl::memory(p.bwd_pd.diff_weights_layer_desc(), engine);
    p.dw_hh = dnnl::memory(p.bwd_pd.diff_weights_iter_desc(), engine);
    p.x = dnnl::memory(x_md, engine, DNNL_MEMORY_NONE);
    p.y = dnnl::memory(y_md, engine, DNNL_MEMORY_NONE);
    p.dy = dnnl::memory(y_md, engine, DNNL_MEMORY_NONE);
    p.dx_scratch.resize(T * B * I);
    p.dx = dnnl::memory(x_md, engine, p.dx_scratch.data());
    p.bias = dnnl::memory(bias_md, engine, DNNL_MEMORY_NONE);
    p.dbias = dnnl::memory(bias_md, engine, DNNL_MEMORY_NONE);
    p.workspace = dnnl::memory(p.fwd_pd.workspace_desc(), engine);
    for (dnnl::memory* m : {&p.h0, &p.c0, &p.hT, &p.cT, &p.dh0, &p.dc0, &p.dhT, &p.dcT})
      *m = dnnl::memory(state_md, engine);
    p.to_fwd_ih = dnnl::reorder(p.user_w_ih, p.fwd_w_ih);
    p.to_fwd_hh = dnnl::reorder(p.user_w_hh, p.fwd_w_hh);
    p.to_bwd_ih = dnnl::reorder(p.user_w_ih, p.bwd_w_ih);
    p.to_bwd_hh = dnnl::reorder(p.user_w_hh, p.bwd_w_hh);
    p.from_dw_ih = dnnl::reorder(p.dw_ih, p.user_dw_ih);
    p.from_dw_hh = dnnl::reorder(p.dw_hh, p.user_dw_hh);
    p.fwd_args = {{DNNL_ARG_SRC_LAYER, p.x},
                  {DNNL_ARG_SRC_ITER, p.h0},
                  {DNNL_ARG_WEIGHTS_LAYER, p.fwd_w_ih},
                  {DNNL_ARG_WEIGHTS_ITER, p.fwd_w_hh},
                  {DNNL_ARG_BIAS, p.bias},
                  {DNNL_ARG_DST_LAYER, p.y},
                  {DNNL_ARG_DST_ITER, p.hT},
                  {DNNL_ARG_WORKSPACE, p.workspace}};
    if (kind == FusedRnnKind::lstm) {
      p.fwd_args.emplace(DNNL_ARG_SRC_ITER_C, p.c0);
      p.fwd_args.emplace(DNNL_ARG_DST_ITER_C, p.cT);
    }
    // Backward reads what forward did (in the backward's weight layout) and its diffs.
    p.bwd_args = p.fwd_args;
    p.bwd_args[DNNL_ARG_WEIGHTS_LAYER] = p.bwd_w_ih;
    p.bwd_args[DNNL_ARG_WEIGHTS_ITER] = p.bwd_w_hh;
    p.bwd_args.insert({{DNNL_ARG_DIFF_SRC_LAYER, p.dx},
                       {DNNL_ARG_DIFF_SRC_ITER, p.dh0},
                       {DNNL_ARG_DIFF_WEIGHTS_LAYER, p.dw_ih},
                       {DNNL_ARG_DIFF_WEIGHTS_ITER, p.dw_hh},
                       {DNNL_ARG_DIFF_BIAS, p.dbias},
                       {DNNL_ARG_DIFF_DST_LAYER, p.dy},
                       {DNNL_ARG_DIFF_DST_ITER, p.dhT}});
    if (kind == FusedRnnKind::lstm) {
      p.bwd_args.emplace(DNNL_ARG_DIFF_SRC_ITER_C, p.dc0);
      p.bwd_args.emplace(DNNL_ARG_DIFF_DST_ITER_C, p.dcT);
    }
    return p;
  }

  static void zero(dnnl::memory& m) {
    std::memset(m.get_data_handle(), 0, m.get_desc().get_size());
  }
  static float* data(dnnl::memory& m) { return static_cast<float*>(m.get_data_handle()); }

  void reorder(const dnnl::reorder& r, const dnnl::memory& from, const dnnl::memory& to) {
    r.execute(stream, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
  }

  // PyTorch's GRU blocks (r, z, n) → oneDNN's (u = z, r, o = n); LSTM orders agree.
  const float* in_onednn_order(const float* w, index_t H, index_t cols,
                               std::vector<float>& scratch) const {
    if (kind == FusedRnnKind::lstm) return w;
    scratch.resize(3 * H * cols);
    const index_t block = H * cols;
    std::copy_n(w + block, block, scratch.data());                  // z → u
    std::copy_n(w, block, scratch.data() + block);                  // r → r
    std::copy_n(w + 2 * block, block, scratch.data() + 2 * block);  // n → o
    return scratch.data();
  }
  // dw (oneDNN gate order, ldgoi) added to grad (PyTorch order).
  void accumulate_in_torch_order(const float* dw, index_t H, index_t cols, float* grad) const {
    const index_t block = H * cols;
    const int G = gates();
    for (int g = 0; g < G; ++g) {
      // oneDNN gate g holds PyTorch block src: LSTM g, GRU (u, r, o) = (1, 0, 2).
      const int src = kind == FusedRnnKind::lstm ? g : (g == 0 ? 1 : g == 1 ? 0 : 2);
      const float* from = dw + g * block;
      float* to = grad + src * block;
      for (index_t i = 0; i < block; ++i) to[i] += from[i];
    }
  }

  // Saved by forward for backward.
  index_t T = 0, B = 0, I = 0, H = 0;
};

FusedRnn::FusedRnn(FusedRnnKind kind) : impl_(std::make_unique<Impl>()) {
  impl_->kind = kind;
}
FusedRnn::~FusedRnn() = default;
FusedRnn::FusedRnn(FusedRnn&&) noexcept = default;
FusedRnn& FusedRnn::operator=(FusedRnn&&) noexcept = default;

int FusedRnn::weight_gates() const {
  return impl_->gates();
}
index_t FusedRnn::plans_created() const {
  return impl_->created;
}

void FusedRnn::forward(const float* x, const float* w_ih, const float* w_hh, const float* bias,
                       const float* h0, const float* c0, float* y, float* hT, float* cT, index_t T,
                       index_t B, index_t I, index_t H) {
  Impl& m = *impl_;
  MTP_CHECK(T > 0 && B > 0 && I > 0 && H > 0, "fused RNN needs positive shapes");
  Impl::Plan& p = m.plan(T, B, I, H);
  m.last = &p;
  m.T = T, m.B = B, m.I = I, m.H = H;

  p.user_w_ih.set_data_handle(const_cast<float*>(m.in_onednn_order(w_ih, H, I, m.permuted_ih)));
  p.user_w_hh.set_data_handle(const_cast<float*>(m.in_onednn_order(w_hh, H, H, m.permuted_hh)));
  m.reorder(p.to_fwd_ih, p.user_w_ih, p.fwd_w_ih);
  m.reorder(p.to_fwd_hh, p.user_w_hh, p.fwd_w_hh);
  const index_t BH = B * H;
  if (h0)
    std::copy_n(h0, BH, Impl::data(p.h0));
  else
    Impl::zero(p.h0);
  if (c0)
    std::copy_n(c0, BH, Impl::data(p.c0));
  else
    Impl::zero(p.c0);
  p.x.set_data_handle(const_cast<float*>(x));
  p.y.set_data_handle(y);
  p.bias.set_data_handle(const_cast<float*>(bias));

  p.fwd.execute(m.stream, p.fwd_args);
  m.stream.wait();
  if (hT) std::copy_n(Impl::data(p.hT), BH, hT);
  if (cT) std::copy_n(Impl::data(p.cT), BH, cT);
}

void FusedRnn::backward(const float* dy, const float* dhT, const float* dcT, float* dx,
                        float* dw_ih, float* dw_hh, float* dbias, float* dh0, float* dc0) {
  Impl& m = *impl_;
  MTP_CHECK(m.last != nullptr, "fused RNN backward before any forward");
  Impl::Plan& p = *m.last;
  // The caller's weights as forward put them in oneDNN's gate order (unchanged since).
  m.reorder(p.to_bwd_ih, p.user_w_ih, p.bwd_w_ih);
  m.reorder(p.to_bwd_hh, p.user_w_hh, p.bwd_w_hh);
  // The primitive accumulates weight and bias gradients; it starts from zero here and
  // the sum is added to the caller's gradients after the layout change.
  Impl::zero(p.dw_ih);
  Impl::zero(p.dw_hh);
  std::fill_n(dbias, 4 * m.H, 0.f);
  p.dy.set_data_handle(const_cast<float*>(dy));
  p.dbias.set_data_handle(dbias);
  const index_t BH = m.B * m.H;
  for (auto [from, to] : {std::pair{dhT, &p.dhT}, std::pair{dcT, &p.dcT}}) {
    if (from)
      std::copy_n(from, BH, Impl::data(*to));
    else
      Impl::zero(*to);
  }

  p.bwd.execute(m.stream, p.bwd_args);
  m.reorder(p.from_dw_ih, p.dw_ih, p.user_dw_ih);
  m.reorder(p.from_dw_hh, p.dw_hh, p.user_dw_hh);
  m.stream.wait();
  m.accumulate_in_torch_order(p.dw_ih_plain.data(), m.H, m.I, dw_ih);
  m.accumulate_in_torch_order(p.dw_hh_plain.data(), m.H, m.H, dw_hh);
  const index_t n = m.T * m.B * m.I;
  const float* d = p.dx_scratch.data();
#pragma omp parallel for simd if (n > 65536)
  for (index_t i = 0; i < n; ++i) dx[i] += d[i];
  if (dh0) std::copy_n(Impl::data(p.dh0), BH, dh0);
  if (dc0) std::copy_n(Impl::data(p.dc0), BH, dc0);
}

}  // namespace mtp
