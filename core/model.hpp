// The language / synthetic-task model of DESIGN §2, generic over its mixer layer:
//
//   x_0 = emb[tokens]                                   (T,B,W)
//   per block l:  x += Mixer(LN1 x);  x += MLP(LN2 x)   MLP: W → 4W → GELU → W (optional)
//   logits = head(LN_out x)                             (T,B,V)
//   loss = mean over labelled positions of −log softmax(logits)[target]
//
// The mixer is any layer with forward(x, y, ctx[, state]) / backward(x, dy, dx),
// typically Perspectives<Cell, Aggregator>. Tensor names follow RWKV / PyTorch
// conventions: emb.weight, blocks.N.ln1.*, blocks.N.mixer.*, blocks.N.ln2.*,
// blocks.N.ffn.{fc,proj}.*, ln_out.*, head.weight.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mtp/core/cell.hpp"
#include "mtp/core/ops/activations.hpp"
#include "mtp/core/ops/embedding.hpp"
#include "mtp/core/ops/layernorm.hpp"
#include "mtp/core/ops/linear.hpp"
#include "mtp/core/ops/softmax.hpp"
#include "mtp/core/param_store.hpp"

namespace mtp {

struct ModelConfig {
  index_t vocab = 0;  // V
  index_t width = 0;  // W
  int layers = 1;     // L
  bool mlp = true;    // a 4× MLP after each mixer
};

template <class Mixer>
class Model {
 public:
  using S = typename Mixer::Scalar;
  using MixerConfig = typename Mixer::Config;

  // mixer_config is used for every block, with its layer position filled in.
  Model(const ModelConfig& cfg, MixerConfig mixer_config) : cfg_(cfg) {
    MTP_CHECK(cfg.vocab > 0 && cfg.width > 0 && cfg.layers > 0,
              "model needs vocab, width and layers > 0");
    const index_t V = cfg.vocab, W = cfg.width;
    emb_ = store_.add("emb.weight", {V, W});
    for (int l = 0; l < cfg.layers; ++l) {
      mixer_config.position = {l, cfg.layers};
      auto& blk = *blocks_.emplace_back(std::make_unique<Block>(mixer_config));
      MTP_CHECK(blk.mixer.input_width() == W && blk.mixer.output_width() == W,
                "mixer maps {} → {}, the model needs {} → {}", blk.mixer.input_width(),
                blk.mixer.output_width(), W, W);
      const std::string p = "blocks." + std::to_string(l) + ".";
      blk.ln1_w = store_.add(p + "ln1.weight", {W});
      blk.ln1_b = store_.add(p + "ln1.bias", {W});
      blk.mixer.declare(store_, p + "mixer.");
      if (cfg.mlp) {
        blk.ln2_w = store_.add(p + "ln2.weight", {W});
        blk.ln2_b = store_.add(p + "ln2.bias", {W});
        blk.fc_w = store_.add(p + "ffn.fc.weight", {4 * W, W}, ParamRole::base, true);
        blk.fc_b = store_.add(p + "ffn.fc.bias", {4 * W});
        blk.proj_w = store_.add(p + "ffn.proj.weight", {W, 4 * W}, ParamRole::base, true);
        blk.proj_b = store_.add(p + "ffn.proj.bias", {W});
      }
    }
    lnf_w_ = store_.add("ln_out.weight", {W});
    lnf_b_ = store_.add("ln_out.bias", {W});
    head_ = store_.add("head.weight", {V, W}, ParamRole::base, true);
    store_.finalize();
    store_.bind(emb_, lnf_w_, lnf_b_, head_);
    for (auto& b : blocks_) {
      store_.bind(b->ln1_w, b->ln1_b);
      if (cfg.mlp) store_.bind(b->ln2_w, b->ln2_b, b->fc_w, b->fc_b, b->proj_w, b->proj_b);
      b->mixer.bind(store_);
    }
  }

  // Layers hold views into the parameter store: copying would leave them pointing
  // into the original. Moving keeps the store's buffer and so the views.
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  Model(Model&&) = default;

  // Embedding N(0,1) (PyTorch nn.Embedding); linear layers U(±1/√in) (nn.Linear), the
  // residual projections scaled by 1/√(2L) (GPT-2); norms at identity.
  void init(std::uint64_t seed) {
    RngSequence rng(seed, rng_stream::kInit);
    for (S& w : emb_.value) w = S(rng.normal());
    const double L2 = std::sqrt(2.0 * cfg_.layers);
    for (auto& b : blocks_) {
      fill_norm(b->ln1_w, b->ln1_b);
      b->mixer.init(rng);
      if (cfg_.mlp) {
        fill_norm(b->ln2_w, b->ln2_b);
        fill_uniform(rng, b->fc_w.value, 1.0 / std::sqrt(double(cfg_.width)));
        fill_uniform(rng, b->fc_b.value, 1.0 / std::sqrt(double(cfg_.width)));
        fill_uniform(rng, b->proj_w.value, 1.0 / std::sqrt(4.0 * cfg_.width) / L2);
        for (S& v : b->proj_b.value) v = 0;
      }
    }
    fill_norm(lnf_w_, lnf_b_);
    fill_uniform(rng, head_.value, 1.0 / std::sqrt(double(cfg_.width)));
  }

  // tokens (T,B) → logits (T,B,V). With targets (T,B) (kIgnoreTarget where unlabelled)
  // also the cross-entropy statistics, and backward() may follow. `state`, when given,
  // holds one (B,K,Sw) tensor per block: initial states in, final states out.
  CrossEntropyStats forward(const std::int32_t* tokens, const std::int32_t* targets, index_t T,
                            index_t B, const StepContext& ctx,
                            std::vector<View<S>>* state = nullptr) {
    const index_t V = cfg_.vocab, W = cfg_.width, TB = T * B;
    for (index_t i = 0; i < TB; ++i)
      MTP_CHECK(tokens[i] >= 0 && tokens[i] < V, "token {} outside the vocabulary [0,{})",
                tokens[i], V);
    if (targets)
      for (index_t i = 0; i < TB; ++i)
        MTP_CHECK(targets[i] == kIgnoreTarget || (targets[i] >= 0 && targets[i] < V),
                  "target {} outside the vocabulary [0,{})", targets[i], V);
    MTP_CHECK(!state || state->size() == blocks_.size(), "state needs one tensor per block");
    T_ = T;
    B_ = B;
    tokens_.assign(tokens, tokens + TB);
    targets_.assign(targets ? targets : tokens, targets ? targets + TB : tokens + TB);
    has_targets_ = targets != nullptr;

    const Shape act{T, B, W};
    x0_.resize(act);
    embedding_forward(tokens, TB, emb_.value, x0_.view());
    Tensor<S>* x = &x0_;
    for (size_t l = 0; l < blocks_.size(); ++l) {
      Block& b = *blocks_[l];
      b.resize(act, cfg_.mlp);
      layernorm_forward<S>(*x, b.ln1_w.value, b.ln1_b.value, b.ln1, b.ln1_mean, b.ln1_rstd);
      b.mixer.forward(b.ln1.view(), b.mix.view(), ctx, state ? (*state)[l] : View<S>{});
      add(*x, b.mix, b.x_mid);
      if (cfg_.mlp) {
        layernorm_forward<S>(b.x_mid, b.ln2_w.value, b.ln2_b.value, b.ln2, b.ln2_mean, b.ln2_rstd);
        linear_forward<S>(b.ln2.view().reshaped({TB, W}), b.fc_w.value, b.fc_b.value.data,
                          b.fc.view());
        gelu_forward<S>(b.fc, b.act);
        linear_forward<S>(b.act, b.proj_w.value, b.proj_b.value.data, b.proj.view());
        add(b.x_mid, b.proj, b.x_out);
        x = &b.x_out;
      } else {
        x = &b.x_mid;
      }
    }
    x_last_ = x;
    lnf_.resize(act);
    lnf_mean_.resize({T, B});
    lnf_rstd_.resize({T, B});
    layernorm_forward<S>(*x, lnf_w_.value, lnf_b_.value, lnf_, lnf_mean_, lnf_rstd_);
    logits_.resize({T, B, V});
    linear_forward<S>(lnf_, head_.value, nullptr, logits_);
    if (!targets) return {};
    probs_.resize({T, B, V});
    stats_ = cross_entropy_forward<S>(logits_, targets, probs_);
    return stats_;
  }

  // Gradient of the mean loss of the last forward (which had targets); parameter
  // gradients accumulate into the store.
  void backward() {
    MTP_CHECK(has_targets_, "backward needs a forward with targets");
    const index_t T = T_, B = B_, W = cfg_.width, TB = T * B;
    const Shape act{T, B, W};
    dx_.resize(act);
    dtmp_.resize(act);
    dln_.resize(act);
    cross_entropy_backward<S>(probs_, targets_.data(), stats_.labelled, probs_);  // dlogits
    linear_backward<S>(probs_, lnf_, head_.value, dln_, head_.grad, nullptr);
    layernorm_backward<S>(dln_, *x_last_, lnf_w_.value, lnf_mean_, lnf_rstd_, dx_, lnf_w_.grad,
                          lnf_b_.grad);
    for (int l = cfg_.layers - 1; l >= 0; --l) {
      Block& b = *blocks_[l];
      const Tensor<S>& x_in = l == 0 ? x0_ : blocks_[l - 1]->out(cfg_.mlp);
      if (cfg_.mlp) {  // x_out = x_mid + proj(gelu(fc(LN2 x_mid))); dx_ holds ∂L/∂x_out
        dff_.resize({T, B, 4 * W});
        dff2_.resize({T, B, 4 * W});
        linear_backward<S>(dx_, b.act, b.proj_w.value, dff_, b.proj_w.grad, b.proj_b.grad.data);
        gelu_backward<S>(dff_, b.fc, dff2_);
        linear_backward<S>(dff2_, b.ln2.view().reshaped({TB, W}), b.fc_w.value,
                           dln_.view().reshaped({TB, W}), b.fc_w.grad, b.fc_b.grad.data);
        layernorm_backward<S>(dln_, b.x_mid, b.ln2_w.value, b.ln2_mean, b.ln2_rstd, dtmp_,
                              b.ln2_w.grad, b.ln2_b.grad);
        accumulate(dtmp_, dx_);
      }
      // x_mid = x_in + Mixer(LN1 x_in); dx_ holds ∂L/∂x_mid
      b.mixer.backward(b.ln1.view(), dx_.view(), dln_.view());
      layernorm_backward<S>(dln_, x_in, b.ln1_w.value, b.ln1_mean, b.ln1_rstd, dtmp_, b.ln1_w.grad,
                            b.ln1_b.grad);
      accumulate(dtmp_, dx_);
    }
    embedding_backward<S>(tokens_.data(), TB, dx_, emb_.grad);
  }

  ParamStore<S>& params() { return store_; }
  const ParamStore<S>& params() const { return store_; }
  const ModelConfig& config() const { return cfg_; }
  CView<S> logits() const { return logits_.view(); }
  int layers() const { return cfg_.layers; }
  Mixer& mixer(int l) { return blocks_[l]->mixer; }

 private:
  struct Block {
    explicit Block(const MixerConfig& c) : mixer(c) {}
    Mixer mixer;
    Param<S> ln1_w, ln1_b, ln2_w, ln2_b, fc_w, fc_b, proj_w, proj_b;
    // Saved activations, (T,B,W) unless noted.
    Tensor<S> ln1, ln1_mean, ln1_rstd, mix, x_mid;            // mean, rstd: (T,B)
    Tensor<S> ln2, ln2_mean, ln2_rstd, fc, act, proj, x_out;  // fc, act: (T,B,4W)

    void resize(const Shape& act_shape, bool mlp) {
      const Shape rows{act_shape[0], act_shape[1]};
      const Shape wide{act_shape[0], act_shape[1], 4 * act_shape[2]};
      for (Tensor<S>* t : {&ln1, &mix, &x_mid}) t->resize(act_shape);
      ln1_mean.resize(rows);
      ln1_rstd.resize(rows);
      if (!mlp) return;
      for (Tensor<S>* t : {&ln2, &proj, &x_out}) t->resize(act_shape);
      ln2_mean.resize(rows);
      ln2_rstd.resize(rows);
      fc.resize(wide);
      act.resize(wide);
    }
    const Tensor<S>& out(bool mlp) const { return mlp ? x_out : x_mid; }
  };

  static void add(const Tensor<S>& a, const Tensor<S>& b, Tensor<S>& out) {
    out.resize(a.shape());
    for (index_t i = 0; i < a.numel(); ++i) out[i] = a[i] + b[i];
  }
  static void accumulate(const Tensor<S>& src, Tensor<S>& dst) {
    for (index_t i = 0; i < src.numel(); ++i) dst[i] += src[i];
  }
  static void fill_uniform(RngSequence& rng, View<S> v, double a) {
    for (S& w : v) w = S(rng.uniform(-a, a));
  }
  static void fill_norm(Param<S>& w, Param<S>& b) {
    for (S& v : w.value) v = 1;
    for (S& v : b.value) v = 0;
  }

  ModelConfig cfg_;
  ParamStore<S> store_;
  Param<S> emb_, lnf_w_, lnf_b_, head_;
  std::vector<std::unique_ptr<Block>> blocks_;
  index_t T_ = 0, B_ = 0;
  std::vector<std::int32_t> tokens_, targets_;
  bool has_targets_ = false;
  CrossEntropyStats stats_;
  Tensor<S> x0_, lnf_, lnf_mean_, lnf_rstd_, logits_, probs_;
  const Tensor<S>* x_last_ = nullptr;
  Tensor<S> dx_, dtmp_, dln_, dff_, dff2_;
};

}  // namespace mtp
