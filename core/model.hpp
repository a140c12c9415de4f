// The language / synthetic-task model of docs/contract.md §7, generic over its mixer layer and
// its FFN:
//
//   x_0 = emb[tokens]   (then ln0 x_0 with ModelConfig::ln0, as RWKV-4)     (T,B,W)
//   per block l:  x += Mixer(LN1 x);  x += FFN(LN2 x)   (FFN optional)
//   logits = head(LN_out x)                                                  (T,B,V)
//   loss = mean over labelled positions of −log softmax(logits)[target]
//
// The mixer is any layer with forward(x, y, ctx[, state]) / backward(x, dy, dx),
// typically Perspectives<Cell, Aggregator>; the FFN any layer with forward(x, y) /
// backward(x, dy, dx) (Mlp, or RwkvChannelMix for RWKV). Tensor names follow RWKV-4 /
// PyTorch: emb.weight, blocks.0.ln0.*, blocks.N.ln1.*, blocks.N.<mixer_name>.*,
// blocks.N.ln2.*, blocks.N.ffn.*, ln_out.*, head.weight.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mtp/core/cell.hpp"
#include "mtp/core/init.hpp"
#include "mtp/core/mlp.hpp"
#include "mtp/core/model_config.hpp"
#include "mtp/core/ops/embedding.hpp"
#include "mtp/core/ops/layernorm.hpp"
#include "mtp/core/ops/linear.hpp"
#include "mtp/core/ops/softmax.hpp"
#include "mtp/core/param_store.hpp"

namespace mtp {

// The recurrent state of a whole model for B streams: per block the mixer's (B,K,Sw)
// and the FFN's (B,Fw) (RWKV's channel mix carries its last input; the MLP nothing).
// All zeros means "no history" for every cell.
template <class S>
struct ModelState {
  std::vector<Tensor<S>> mixer, ffn;
  void reset() {
    for (auto* group : {&mixer, &ffn})
      for (Tensor<S>& t : *group) t.zero();
  }
  // Forgets the history of stream b only.
  void reset_stream(index_t b) {
    for (auto* group : {&mixer, &ffn})
      for (Tensor<S>& t : *group) {
        if (t.numel() == 0) continue;
        const index_t row = t.numel() / t.shape()[0];
        std::fill_n(t.data() + b * row, row, S(0));
      }
  }
};

template <class Mixer, class Ffn = Mlp<typename Mixer::Scalar>>
class Model {
 public:
  using S = typename Mixer::Scalar;
  using MixerConfig = typename Mixer::Config;
  using MixerType = Mixer;

  // Where a parameter lives when the model's parameters are another store's (finalize_placed):
  // its value and gradient memory, given its declaration.
  using Placement = std::function<std::pair<S*, S*>(const ParamInfo&)>;

  // mixer_config is used for every block, with its layer position filled in. With a
  // placement the parameters live where it says (one stream of HeadModel), not in memory
  // of the model's own.
  Model(const ModelConfig& cfg, MixerConfig mixer_config, const Placement& placement = nullptr)
      : cfg_(cfg) {
    MTP_CHECK(cfg.vocab > 0 && cfg.width > 0 && cfg.layers > 0,
              "model needs vocab, width and layers > 0");
    const index_t V = cfg.vocab, W = cfg.width;
    emb_ = store_.add("emb.weight", {V, W});
    if (cfg.ln0) {
      ln0_w_ = store_.add("blocks.0.ln0.weight", {W});
      ln0_b_ = store_.add("blocks.0.ln0.bias", {W});
    }
    for (int l = 0; l < cfg.layers; ++l) {
      const LayerPosition pos{.index = l, .count = cfg.layers};
      mixer_config.position = pos;
      if constexpr (requires { mixer_config.noise_stream; })
        mixer_config.noise_stream = rng_stream::kSelectorNoise + std::uint64_t(l);
      auto& blk = *blocks_.emplace_back(std::make_unique<Block>(mixer_config, W, pos));
      MTP_CHECK(blk.mixer.input_width() == W && blk.mixer.output_width() == W,
                "mixer maps {} → {}, the model needs {} → {}", blk.mixer.input_width(),
                blk.mixer.output_width(), W, W);
      const std::string p = "blocks." + std::to_string(l) + ".";
      blk.ln1_w = store_.add(p + "ln1.weight", {W});
      blk.ln1_b = store_.add(p + "ln1.bias", {W});
      blk.mixer.declare(store_, p + cfg.mixer_name + ".");
      if (cfg.ffn) {
        blk.ln2_w = store_.add(p + "ln2.weight", {W});
        blk.ln2_b = store_.add(p + "ln2.bias", {W});
        blk.ffn.declare(store_, p + "ffn.");
      }
    }
    lnf_w_ = store_.add("ln_out.weight", {W});
    lnf_b_ = store_.add("ln_out.bias", {W});
    head_ = store_.add("head.weight", {V, W}, ParamRole::base, true);
    if (placement) {
      std::vector<std::pair<S*, S*>> places;
      for (const ParamInfo& info : store_.infos()) places.push_back(placement(info));
      store_.finalize_placed(std::move(places));
    } else {
      store_.finalize();
    }
    store_.bind(emb_, lnf_w_, lnf_b_, head_);
    if (cfg.ln0) store_.bind(ln0_w_, ln0_b_);
    for (auto& b : blocks_) {
      store_.bind(b->ln1_w, b->ln1_b);
      b->mixer.bind(store_);
      if (cfg.ffn) {
        store_.bind(b->ln2_w, b->ln2_b);
        b->ffn.bind(store_);
      }
    }
  }
  // Layers hold views into the parameter store and a pointer to it: a copy or a moved
  // model would leave them pointing into the original. Functions return models as
  // prvalues (built in place); AnyModel holds one behind a pointer.
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  Model(Model&&) = delete;

  // Norms at identity; each layer by its own recipe; embedding and head by cfg.init.
  // Draw order (embedding, blocks, head) is part of what a seed reproduces.
  void init(std::uint64_t seed) {
    RngSequence rng(seed, rng_stream::kInit);
    const index_t V = cfg_.vocab, W = cfg_.width;
    const bool rwkv = cfg_.init == ModelInit::rwkv4;
    if (rwkv)
      orthogonal_init(emb_.value, 1e-4 * std::sqrt(double(std::max(V, W))), rng);
    else
      for (S& w : emb_.value) w = S(rng.normal());
    if (cfg_.ln0) fill_norm(ln0_w_, ln0_b_);
    for (auto& b : blocks_) {
      fill_norm(b->ln1_w, b->ln1_b);
      b->mixer.init(rng);
      if (cfg_.ffn) {
        fill_norm(b->ln2_w, b->ln2_b);
        b->ffn.init(rng);
      }
    }
    fill_norm(lnf_w_, lnf_b_);
    if (rwkv) {
      orthogonal_init(head_.value, 0.5 * (V > W ? std::sqrt(double(V) / double(W)) : 1.0), rng);
    } else {
      const double a = 1.0 / std::sqrt(double(W));
      for (S& w : head_.value) w = S(rng.uniform(-a, a));
    }
    store_.mark_all_set();
  }

  // A zero ("no history") state for B streams.
  ModelState<S> initial_state(index_t B) const {
    ModelState<S> st;
    for (const auto& b : blocks_) {
      st.mixer.emplace_back(Shape{B, b->mixer.perspectives(), b->mixer.state_width()});
      st.ffn.emplace_back(Shape{B, cfg_.ffn ? b->ffn.state_width() : 0});
    }
    return st;
  }

  // tokens (T,B) → logits (T,B,V). With targets (T,B) (kIgnoreTarget where unlabelled)
  // also the cross-entropy statistics, and backward() may follow. `state`, when given
  // (from initial_state(B)), is read as the history before this chunk and receives the
  // history after it; gradients do not flow into it (truncated BPTT).
  CrossEntropyStats forward(const std::int32_t* tokens, const std::int32_t* targets, index_t T,
                            index_t B, const StepContext& ctx, ModelState<S>* state = nullptr) {
    const index_t V = cfg_.vocab, W = cfg_.width, TB = T * B;
    MTP_CHECK(store_.is_set(emb_.ref),
              "model used before its parameters were set: call init(seed) or load them "
              "(after writing params().values() directly, params().mark_all_set())");
    for (index_t i = 0; i < TB; ++i)
      MTP_CHECK(tokens[i] >= 0 && tokens[i] < V, "token {} outside the vocabulary [0,{})",
                tokens[i], V);
    if (targets)
      for (index_t i = 0; i < TB; ++i)
        MTP_CHECK(targets[i] == kIgnoreTarget || (targets[i] >= 0 && targets[i] < V),
                  "target {} outside the vocabulary [0,{})", targets[i], V);
    if (state) {
      bool fits = state->mixer.size() == blocks_.size() && state->ffn.size() == blocks_.size();
      for (size_t l = 0; fits && l < blocks_.size(); ++l)
        fits = state->mixer[l].shape()[0] == B && state->ffn[l].shape()[0] == B;
      MTP_CHECK(fits,
                "model state was made for another model or batch size (use initial_state(B))");
    }
    T_ = T;
    B_ = B;
    tokens_.assign(tokens, tokens + TB);
    targets_.assign(targets ? targets : tokens, targets ? targets + TB : tokens + TB);
    has_targets_ = targets != nullptr;

    const Shape act{T, B, W};
    emb_out_.resize(act);
    embedding_forward<S>(tokens, TB, emb_.value, emb_out_.view());
    const Tensor<S>* x = &emb_out_;
    if (cfg_.ln0) {
      x0_.resize(act);
      ln0_mean_.resize({T, B});
      ln0_rstd_.resize({T, B});
      layernorm_forward<S>(emb_out_, ln0_w_.value, ln0_b_.value, x0_, ln0_mean_, ln0_rstd_);
      x = &x0_;
    }
    for (size_t l = 0; l < blocks_.size(); ++l) {
      Block& b = *blocks_[l];
      b.resize(act, cfg_.ffn);
      layernorm_forward<S>(*x, b.ln1_w.value, b.ln1_b.value, b.ln1, b.ln1_mean, b.ln1_rstd);
      b.mixer.forward(b.ln1.view(), b.mix.view(), ctx, state ? state->mixer[l].view() : View<S>{});
      add(*x, b.mix, b.x_mid);
      if (cfg_.ffn) {
        layernorm_forward<S>(b.x_mid, b.ln2_w.value, b.ln2_b.value, b.ln2, b.ln2_mean, b.ln2_rstd);
        View<S> ffn_state = state && state->ffn[l].numel() > 0 ? state->ffn[l].view() : View<S>{};
        b.ffn.forward(b.ln2.view(), b.ff.view(), ffn_state);
        add(b.x_mid, b.ff, b.x_out);
      }
      x = &b.out(cfg_.ffn);
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
    cross_entropy_backward<S>(probs_, targets_.data(), stats_.labelled, probs_);  // dlogits
    backward_from(probs_.view(), {});
  }

  // The final normalised hidden state of the last forward, LN_out x (T,B,W): what a head
  // outside the model (HeadModel's selector) reads.
  CView<S> final_hidden() const { return lnf_.view(); }

  // Backward of the last forward from a gradient of its logits (T,B,V) and, unless
  // empty, of its final hidden state (T,B,W); parameter gradients accumulate.
  void backward_from(CView<S> dlogits, CView<S> dhidden) {
    const Shape act{T_, B_, cfg_.width};
    MTP_CHECK(dlogits.numel() == T_ * B_ * cfg_.vocab, "dlogits does not fit the last forward");
    MTP_CHECK(dhidden.empty() || dhidden.numel() == T_ * B_ * cfg_.width,
              "dhidden does not fit the last forward");
    dx_.resize(act);
    dtmp_.resize(act);
    dln_.resize(act);
    linear_backward<S>(dlogits, lnf_, head_.value, dln_, head_.grad, nullptr);
    if (!dhidden.empty())
      for (index_t i = 0; i < dln_.numel(); ++i) dln_[i] += dhidden.data[i];
    layernorm_backward<S>(dln_, *x_last_, lnf_w_.value, lnf_mean_, lnf_rstd_, dx_, lnf_w_.grad,
                          lnf_b_.grad);
    for (int l = cfg_.layers - 1; l >= 0; --l) {
      Block& b = *blocks_[l];
      const Tensor<S>& x_in = l > 0 ? blocks_[l - 1]->out(cfg_.ffn) : stream_start();
      if (cfg_.ffn) {  // x_out = x_mid + FFN(LN2 x_mid); dx_ holds ∂L/∂x_out
        b.ffn.backward(b.ln2.view(), dx_.view(), dln_.view());
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
    if (cfg_.ln0) {
      layernorm_backward<S>(dx_, emb_out_, ln0_w_.value, ln0_mean_, ln0_rstd_, dtmp_, ln0_w_.grad,
                            ln0_b_.grad);
      embedding_backward<S>(tokens_.data(), T_ * B_, dtmp_, emb_.grad);
    } else {
      embedding_backward<S>(tokens_.data(), T_ * B_, dx_, emb_.grad);
    }
  }

  // Floats per (t, b) the model keeps besides its mixers' and FFNs' own, for memory
  // estimates: the embeddings (and ln0), per block the residual stream, norms and their
  // statistics, the final norm, logits and their gradient (2V), three gradient rows.
  static index_t activation_floats_per_token(const ModelConfig& c) {
    const index_t W = c.width, block = c.ffn ? 6 * W + 4 : 3 * W + 2;
    return W * (c.ln0 ? 2 : 1) + c.layers * block + W + 2 + 2 * c.vocab + 3 * W;
  }

  // The size of the K = 1 model (one decay row, the mean: the plain cell), of which the
  // rest is what the perspectives add, from each mixer's added_params (Perspectives,
  // LayerStreams; HeadModel::stream_size is the same for a model combined at the head).
  index_t stream_size() const requires requires(const Mixer& m) { m.added_params(); }
  {
    index_t added = 0;
    for (const auto& b : blocks_) added += b->mixer.added_params();
    return store_.size() - added;
  }

  ParamStore<S>& params() { return store_; }
  const ParamStore<S>& params() const { return store_; }
  const ModelConfig& config() const { return cfg_; }
  CView<S> logits() const { return logits_.view(); }
  int layers() const { return cfg_.layers; }
  Mixer& mixer(int l) { return blocks_[l]->mixer; }
  const Mixer& mixer(int l) const { return blocks_[l]->mixer; }

 private:
  struct Block {
    Block(const MixerConfig& c, index_t width, LayerPosition pos) : mixer(c), ffn(width, pos) {}
    Mixer mixer;
    Ffn ffn;
    Param<S> ln1_w, ln1_b, ln2_w, ln2_b;
    // Saved activations, (T,B,W); mean, rstd (T,B).
    Tensor<S> ln1, ln1_mean, ln1_rstd, mix, x_mid;
    Tensor<S> ln2, ln2_mean, ln2_rstd, ff, x_out;

    void resize(const Shape& act_shape, bool with_ffn) {
      const Shape rows{act_shape[0], act_shape[1]};
      for (Tensor<S>* t : {&ln1, &mix, &x_mid}) t->resize(act_shape);
      ln1_mean.resize(rows);
      ln1_rstd.resize(rows);
      if (!with_ffn) return;
      for (Tensor<S>* t : {&ln2, &ff, &x_out}) t->resize(act_shape);
      ln2_mean.resize(rows);
      ln2_rstd.resize(rows);
    }
    const Tensor<S>& out(bool with_ffn) const { return with_ffn ? x_out : x_mid; }
  };

  // The residual stream entering block 0.
  const Tensor<S>& stream_start() const { return cfg_.ln0 ? x0_ : emb_out_; }
  static void add(const Tensor<S>& a, const Tensor<S>& b, Tensor<S>& out) {
    out.resize(a.shape());
    for (index_t i = 0; i < a.numel(); ++i) out[i] = a[i] + b[i];
  }
  static void accumulate(const Tensor<S>& src, Tensor<S>& dst) {
    for (index_t i = 0; i < src.numel(); ++i) dst[i] += src[i];
  }
  static void fill_norm(Param<S>& w, Param<S>& b) {
    for (S& v : w.value) v = 1;
    for (S& v : b.value) v = 0;
  }

  ModelConfig cfg_;
  ParamStore<S> store_;
  Param<S> emb_, ln0_w_, ln0_b_, lnf_w_, lnf_b_, head_;
  std::vector<std::unique_ptr<Block>> blocks_;
  index_t T_ = 0, B_ = 0;
  std::vector<std::int32_t> tokens_, targets_;
  bool has_targets_ = false;
  CrossEntropyStats stats_;
  Tensor<S> emb_out_, x0_, ln0_mean_, ln0_rstd_;  // embeddings, after ln0
  Tensor<S> lnf_, lnf_mean_, lnf_rstd_, logits_, probs_;
  const Tensor<S>* x_last_ = nullptr;
  Tensor<S> dx_, dtmp_, dln_;
};

}  // namespace mtp
