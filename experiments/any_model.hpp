// AnyModel<S>: a model of any registered cell and aggregator behind one interface, so the
// commands (train, eval, generate, benchmarks) are compiled once and serve every cell,
// a user's own included. The virtual calls are per chunk (a whole forward over (T,B)
// tokens), never inside the per-step loops, which stay in the concrete Model<Mixer>.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "mtp/core/model.hpp"

namespace mtp::exp {

// One layer's views as trained: its decay rows and what a decay means to the cell, for
// the report's "which time scales did the views settle on".
struct LayerViews {
  int perspectives = 0;                   // K
  index_t width = 0;                      // D, channels per decay row
  std::vector<double> decay;              // (K,D)
  double (*retention)(double) = nullptr;  // the cell's state kept per step at a decay; may be null
};

template <class Scalar>
class AnyModel {
 public:
  using S = Scalar;
  virtual ~AnyModel() = default;

  virtual void init(std::uint64_t seed) = 0;
  virtual ParamStore<S>& params() = 0;
  virtual const ModelConfig& config() const = 0;
  // A zero ("no history") state for B streams.
  virtual ModelState<S> initial_state(index_t B) const = 0;
  // tokens, targets (T,B) → logits (T,B,V); see Model::forward.
  virtual CrossEntropyStats forward(const std::int32_t* tokens, const std::int32_t* targets,
                                    index_t T, index_t B, const StepContext& ctx,
                                    ModelState<S>* state = nullptr) = 0;
  virtual void backward() = 0;
  virtual CView<S> logits() const = 0;
  // The size of the K = 1 model (one stream of a model combined at the head; the model with
  // one decay row and the mean for the others), of which the rest is what the perspectives
  // add; 0 for a model that cannot say (then its perspective tensors count as added).
  virtual index_t stream_size() const { return 0; }
  // Every layer's decay rows, for layers that own them (Perspectives); empty otherwise.
  virtual std::vector<LayerViews> layer_views() const { return {}; }
  // Adds each layer's selection weights α (T,B,K) of the last forward, summed over its
  // (t, b) rows, into sums[l][k] (sized here), and returns the rows per layer; 0 when the
  // layers have no learned selector.
  virtual index_t add_selection(std::vector<std::vector<double>>& sums) const {
    (void)sums;
    return 0;
  }
};

template <class M>
class ModelHolder final : public AnyModel<typename M::S> {
 public:
  using S = typename M::S;
  // The model is built in place by make() (a Model holds views into its own store and
  // cannot move).
  template <class Make>
  explicit ModelHolder(Make&& make) : model_(make()) {}

  void init(std::uint64_t seed) override { model_.init(seed); }
  ParamStore<S>& params() override { return model_.params(); }
  const ModelConfig& config() const override { return model_.config(); }
  ModelState<S> initial_state(index_t B) const override { return model_.initial_state(B); }
  CrossEntropyStats forward(const std::int32_t* tokens, const std::int32_t* targets, index_t T,
                            index_t B, const StepContext& ctx, ModelState<S>* state) override {
    return model_.forward(tokens, targets, T, B, ctx, state);
  }
  void backward() override { model_.backward(); }
  CView<S> logits() const override { return model_.logits(); }
  index_t stream_size() const override {
    if constexpr (requires { model_.stream_size(); })
      return model_.stream_size();
    else
      return 0;
  }

  std::vector<LayerViews> layer_views() const override {
    std::vector<LayerViews> out;
    if constexpr (requires(const M& m) { m.mixer(0).decay(); }) {
      using Cell = typename M::MixerType::CellType;
      for (int l = 0; l < model_.layers(); ++l) {
        const auto& mixer = model_.mixer(l);
        const auto decay = mixer.decay();
        LayerViews v{.perspectives = mixer.perspectives(),
                     .width = decay.numel() / mixer.perspectives(),
                     .decay = std::vector<double>(decay.begin(), decay.end())};
        if constexpr (requires { Cell::retention(0.0); }) v.retention = &Cell::retention;
        out.push_back(std::move(v));
      }
    }
    return out;
  }
  index_t add_selection(std::vector<std::vector<double>>& sums) const override {
    if constexpr (requires(const M& m) { m.mixer(0).aggregator().selection(); }) {
      sums.resize(size_t(model_.layers()));
      index_t rows = 0;
      for (int l = 0; l < model_.layers(); ++l) {
        const auto alpha = model_.mixer(l).aggregator().selection();  // (T,B,K)
        const index_t K = model_.mixer(l).perspectives();
        sums[size_t(l)].resize(size_t(K), 0.0);
        rows = alpha.numel() / K;
        for (index_t r = 0; r < rows; ++r)
          for (index_t k = 0; k < K; ++k) sums[size_t(l)][size_t(k)] += double(alpha[r * K + k]);
      }
      return rows;
    } else {
      (void)sums;
      return 0;
    }
  }

  M& model() { return model_; }

 private:
  M model_;
};

// make() returns the model by value (a prvalue, so it is built in its final place).
template <class Make>
auto hold_model(Make&& make) {
  using M = decltype(make());
  return std::unique_ptr<AnyModel<typename M::S>>(
      std::make_unique<ModelHolder<M>>(std::forward<Make>(make)));
}

}  // namespace mtp::exp
