// AnyModel<S>: a model of any registered cell and aggregator behind one interface, so the
// commands (train, eval, generate, benchmarks) are compiled once and serve every cell,
// a user's own included. The virtual calls are per chunk (a whole forward over (T,B)
// tokens), never inside the per-step loops, which stay in the concrete Model<Mixer>.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include "mtp/core/model.hpp"

namespace mtp::exp {

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
