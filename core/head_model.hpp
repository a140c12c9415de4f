// HeadModel<Cell, Aggregator>: K perspectives combined after the output head, as the
// paper's authors released it for RWKV-4 (docs/contract.md §7.1), for any cell. Where
// Model<Perspectives<...>> aggregates the K views inside every layer, here the K views
// are K streams through the whole model:
//
//   stream k = the K = 1 model with perspective k's parameters            (T,B,V) logits_k
//   h_k      = LN_out of stream k's last block                            (T,B,W)
//   α        = Agg(mean_k h_k)                                            (T,B,K)
//   logits   = Σ_k α_k ⊙ logits_k                                         (T,B,V)
//
// Every parameter is shared by the streams except the per-perspective ones, which have
// a row per stream: the decay (PerPerspective::decay, as mtp's layers), the token-shift
// mixes of a cell that has them (PerPerspective::shift, RWKV-4's time_mix_k/v/r in the
// time mix and time_mix_k/r in the channel mix, with one shared decay, as the authors),
// or both. The streams' parameters are views into the one store of this model (their
// stores are placed, ParamStore::finalize_placed), so gradients of shared parameters add
// up over the streams and the optimiser sees one flat buffer. Names are the K = 1 model's:
// a per-perspective tensor of shape s becomes (K, s) (the decay (1,D) becomes (K,D)), so
// a K = 1 checkpoint (RWKV-4's) loads by name (contract §11.9); the aggregator's tensors
// are "head.<its names>" (the learned selector: head.selector.weight (K,W), ...).
//
// The aggregator must weight the perspectives (WeightingAggregator: mean, fixed,
// learned): the logits are combined from the streams' own buffers, never copied into a
// (T,B,K,V) tensor. Memory: K streams' activations and logits.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mtp/aggregators/mean.hpp"
#include "mtp/core/model.hpp"
#include "mtp/core/per_perspective.hpp"
#include "mtp/core/perspectives.hpp"

namespace mtp {

template <class Cell, class Agg, class Ffn>
class HeadModel {
 public:
  using S = typename Cell::Scalar;
  using StreamMixer = Perspectives<Cell, MeanAggregator<S>>;
  using Stream = Model<StreamMixer, Ffn>;
  static_assert(WeightingAggregator<Agg>,
                "HeadModel combines the streams' logits by weights (mean, fixed, learned)");

  struct Config {
    ModelConfig model{};                   // width, layers, vocabulary, FFN of a stream
    typename StreamMixer::Config mixer{};  // a stream's layer (its K is 1)
    int perspectives = 3;                  // K streams
    PerPerspective per_perspective = PerPerspective::decay;
    double decay_spread = 1.0;  // decay row k = base + s·(k − (K−1)/2)
    typename Agg::Options aggregator{};
  };

  explicit HeadModel(const Config& cfg)
      : cfg_(cfg),
        K_(cfg.perspectives),
        head_agg_(cfg.perspectives, cfg.model.width, cfg.aggregator) {
    MTP_CHECK(K_ >= 1, "perspectives must be >= 1, got {}", K_);
    typename StreamMixer::Config mixer = cfg.mixer;
    mixer.perspectives = 1;
    // The streams' declarations, from one model built with memory of its own.
    std::vector<ParamInfo> stream_params;
    {
      const Stream probe(cfg.model, mixer);
      stream_params = probe.params().infos();
      stream_size_ = probe.params().size();
    }
    bool any_shift = false;
    for (const ParamInfo& p : stream_params) {
      const bool per_stream = is_per_perspective(cfg.per_perspective, p);
      any_shift = any_shift || is_shift_param(p.name);
      // Rows per stream are the perspectives'; whatever the streams share is the base
      // (a decay shared by all streams is RWKV-4's own time_decay).
      const ParamRole role = per_stream ? ParamRole::perspective : ParamRole::base;
      params_.push_back(
          {store_
               .add(p.name, per_stream ? stacked_shape(p.shape, K_) : p.shape, role, p.weight_decay)
               .ref,
           per_stream});
    }
    MTP_CHECK(any_shift || cfg.per_perspective == PerPerspective::decay,
              "per-perspective token shift: this model has no token-shift mixes (RWKV has)");
    head_agg_.declare(store_, "head.");
    store_.finalize();
    head_agg_.bind(store_);
    for (int k = 0; k < K_; ++k) {
      size_t i = 0;
      typename Stream::Placement place = [&](const ParamInfo& info) -> std::pair<S*, S*> {
        const Entry& e = params_.at(i++);
        MTP_CHECK(store_.info(e.ref).name == info.name, "stream parameter {} out of order",
                  info.name);
        const index_t row = e.per_stream ? index_t(k) * info.shape.numel() : 0;
        return {store_.value(e.ref).data + row, store_.grad(e.ref).data + row};
      };
      streams_.push_back(std::make_unique<Stream>(cfg.model, mixer, place));
    }
  }
  HeadModel(const HeadModel&) = delete;
  HeadModel& operator=(const HeadModel&) = delete;

  // Stream 0 is initialised as a K = 1 model; the other streams' rows copy its rows
  // (the token-shift mixes start equal, as the authors'), and the decay rows are spread.
  void init(std::uint64_t seed) {
    streams_[0]->init(seed);
    for (const Entry& e : params_)
      if (e.per_stream)
        spread_rows(store_.value(e.ref), K_, !is_shift_param(store_.info(e.ref).name),
                    cfg_.decay_spread);
    RngSequence rng(seed, rng_stream::kHeadInit);
    head_agg_.init(rng);
    store_.mark_all_set();
  }

  ModelState<S> initial_state(index_t B) const {
    ModelState<S> st;
    for (const auto& s : streams_) {
      ModelState<S> one = s->initial_state(B);
      for (auto& t : one.mixer) st.mixer.push_back(std::move(t));
      for (auto& t : one.ffn) st.ffn.push_back(std::move(t));
    }
    return st;
  }

  // See Model::forward. The state holds the K streams' states, stream after stream.
  CrossEntropyStats forward(const std::int32_t* tokens, const std::int32_t* targets, index_t T,
                            index_t B, const StepContext& ctx, ModelState<S>* state = nullptr) {
    const index_t V = cfg_.model.vocab, W = cfg_.model.width, L = cfg_.model.layers;
    if (state)
      MTP_CHECK(state->mixer.size() == size_t(K_ * L) && state->ffn.size() == size_t(K_ * L),
                "model state was made for another model (use initial_state(B))");
    for (int k = 0; k < K_; ++k)
      with_stream_state(k, state, [&](ModelState<S>* st) {
        streams_[k]->forward(tokens, nullptr, T, B, ctx, st);
      });
    // α = Agg(mean_k h_k); logits = Σ_k α_k logits_k.
    mean_h_.resize({T, B, W});
    mean_h_.zero();
    for (const auto& s : streams_) {
      const CView<S> h = s->final_hidden();
      for (index_t i = 0; i < mean_h_.numel(); ++i) mean_h_[i] += h.data[i] / S(K_);
    }
    alpha_ = head_agg_.weights_forward(mean_h_.view(), ctx, rng_stream::kHeadSelectorNoise);
    logits_.resize({T, B, V});
    logits_.zero();
    for (int k = 0; k < K_; ++k) {
      const S* lk = streams_[k]->logits().data;
      for (index_t r = 0; r < T * B; ++r) {
        const S a = alpha_.data[r * K_ + k];
        S* out = logits_.data() + r * V;
        for (index_t v = 0; v < V; ++v) out[v] += a * lk[r * V + v];
      }
    }
    T_ = T, B_ = B;
    has_targets_ = targets != nullptr;
    if (!targets) return {};
    targets_.assign(targets, targets + T * B);
    probs_.resize({T, B, V});
    stats_ = cross_entropy_forward<S>(logits_, targets, probs_);
    return stats_;
  }

  void backward() {
    MTP_CHECK(has_targets_, "backward needs a forward with targets");
    const index_t V = cfg_.model.vocab, W = cfg_.model.width, R = T_ * B_;
    cross_entropy_backward<S>(probs_, targets_.data(), stats_.labelled, probs_);  // dL
    // dα_k = ⟨dL, logits_k⟩ per (t, b); through the aggregator into the mean hidden state.
    dalpha_.resize({T_, B_, index_t(K_)});
    for (int k = 0; k < K_; ++k) {
      const S* lk = streams_[k]->logits().data;
      for (index_t r = 0; r < R; ++r) {
        S d = 0;
        for (index_t v = 0; v < V; ++v) d += probs_[r * V + v] * lk[r * V + v];
        dalpha_[r * K_ + k] = d;
      }
    }
    dmean_h_.resize({T_, B_, W});
    dmean_h_.zero();
    head_agg_.weights_backward(mean_h_.view(), {dalpha_.view(), dmean_h_.view()});
    for (index_t i = 0; i < dmean_h_.numel(); ++i) dmean_h_[i] /= S(K_);
    // Stream k: dlogits_k = α_k dL, dh_k = dmean / K.
    dlogits_.resize({T_, B_, V});
    for (int k = K_ - 1; k >= 0; --k) {
      for (index_t r = 0; r < R; ++r) {
        const S a = alpha_.data[r * K_ + k];
        for (index_t v = 0; v < V; ++v) dlogits_[r * V + v] = a * probs_[r * V + v];
      }
      streams_[k]->backward_from(dlogits_.view(), dmean_h_.view());
    }
  }

  ParamStore<S>& params() { return store_; }
  const ParamStore<S>& params() const { return store_; }
  const ModelConfig& config() const { return cfg_.model; }
  CView<S> logits() const { return logits_.view(); }
  // The head's weights of the last forward, α (T,B,K).
  CView<S> head_weights() const { return alpha_; }
  int perspectives() const { return K_; }
  Stream& stream(int k) { return *streams_.at(size_t(k)); }
  // The parameters of one stream alone, the K = 1 model: params().size() minus this is
  // what the perspectives add.
  index_t stream_size() const { return stream_size_; }

 private:
  struct Entry {
    ParamRef ref;
    bool per_stream;
  };

  // Runs f on stream k's share of a combined state (its tensors moved out and back).
  template <class F>
  void with_stream_state(int k, ModelState<S>* state, F&& f) {
    if (!state) return f(nullptr);
    const size_t L = size_t(cfg_.model.layers), at = size_t(k) * L;
    ModelState<S> mine;
    for (size_t l = 0; l < L; ++l) {
      mine.mixer.push_back(std::move(state->mixer[at + l]));
      mine.ffn.push_back(std::move(state->ffn[at + l]));
    }
    f(&mine);
    for (size_t l = 0; l < L; ++l) {
      state->mixer[at + l] = std::move(mine.mixer[l]);
      state->ffn[at + l] = std::move(mine.ffn[l]);
    }
  }

  Config cfg_;
  int K_;
  ParamStore<S> store_;
  std::vector<Entry> params_;  // in a stream's declaration order
  index_t stream_size_ = 0;
  Agg head_agg_;
  std::vector<std::unique_ptr<Stream>> streams_;
  index_t T_ = 0, B_ = 0;
  bool has_targets_ = false;
  std::vector<std::int32_t> targets_;
  CrossEntropyStats stats_;
  Tensor<S> mean_h_, logits_, probs_, dalpha_, dmean_h_, dlogits_;
  CView<S> alpha_;
};

}  // namespace mtp
