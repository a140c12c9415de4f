// All trainable parameters of a model live in one flat buffer, and their gradients
// in a second one of the same layout. Layers declare named tensors, the store
// allocates once, and layers bind views into the buffers they do not own. Flat
// buffers make the optimiser, gradient norm, checkpoints and (later) device copies
// one loop or one memcpy each.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mtp/core/tensor.hpp"

namespace mtp {

// Parameters that exist only because of the perspectives (the K decay rows, the
// selector) are `perspective`; everything the plain cell or model has is `base`.
// The split drives "parameters added" reports and --freeze base.
enum class ParamRole { base, perspective };

struct ParamInfo {
  std::string name;
  Shape shape;
  index_t offset = 0;
  ParamRole role = ParamRole::base;
  bool weight_decay = false;  // AdamW decoupled weight decay applies to it
};

struct ParamRef {
  int index = -1;
};

// A layer's handle on one parameter: the declaration, then (after bind) views. `store`
// is the id of the store that declared it (a copy of a store keeps its id); binding it
// to another store is an error.
template <class S>
struct Param {
  ParamRef ref;
  View<S> value;
  View<S> grad;
  std::uint64_t store = 0;
};

// Values start at zero and count as *unset* until an initialiser or a loader writes them
// (mark_set / mark_all_set): a layer refuses to run on unset parameters instead of
// training silently from zeros.
template <class S>
class ParamStore {
 public:
  Param<S> add(std::string name, Shape shape, ParamRole role = ParamRole::base,
               bool weight_decay = false) {
    MTP_CHECK(!finalized_, "parameter '{}' declared after the store was finalized", name);
    MTP_CHECK(find(name).index < 0, "parameter '{}' declared twice", name);
    infos_.push_back({std::move(name), shape, total_, role, weight_decay});
    total_ += shape.numel();
    return Param<S>{ParamRef{static_cast<int>(infos_.size()) - 1}, {}, {}, id_};
  }

  // Allocates values (zero, unset) and gradients (zero). No parameter may be added after.
  void finalize() {
    values_.assign(total_, S(0));
    grads_.assign(total_, S(0));
    set_.assign(infos_.size(), false);
    finalized_ = true;
  }
  bool finalized() const { return finalized_; }

  // In place of finalize() for a store whose parameters live in another store (one of
  // the K streams of a model combined at the head, which share most weights and each
  // hold a row of the rest): `places` gives, in infos()' order, the value and gradient
  // memory of every parameter (numel() elements each). The store then owns no memory:
  // bind() and value()/grad() point there, and the flat buffer (values(), grads(),
  // zero_grad) belongs to the other store.
  void finalize_placed(std::vector<std::pair<S*, S*>> places) {
    MTP_CHECK(!finalized_, "finalize_placed on a finalized store");
    MTP_CHECK(places.size() == infos_.size(), "{} places for {} parameters", places.size(),
              infos_.size());
    for (size_t i = 0; i < places.size(); ++i)
      MTP_CHECK(places[i].first != nullptr && places[i].second != nullptr,
                "parameter '{}' has no place", infos_[i].name);
    places_ = std::move(places);
    set_.assign(infos_.size(), true);
    finalized_ = true;
  }
  bool placed() const { return !places_.empty(); }

  // Uses `values` and `grads` (size() elements each, in infos()' layout, owned by the
  // caller) instead of buffers of its own: parameters that live in another framework's
  // tensors (the PyTorch bridge) are used where they are, without a copy. Call it again
  // to move to other memory, then bind the layers again; a copy of the store shares the
  // same memory. Values written there count as set.
  void use_external(S* values, S* grads) {
    MTP_CHECK(values != nullptr && grads != nullptr, "external parameter memory is null");
    if (!finalized_) {
      set_.assign(infos_.size(), true);
      finalized_ = true;
    }
    external_values_ = values;
    external_grads_ = grads;
  }

  template <class... Ps>
  void bind(Param<S>& p, Ps&... rest) {
    MTP_CHECK(finalized_, "bind before finalize");
    MTP_CHECK(p.store == id_ && p.ref.index >= 0,
              "a parameter is bound to a store it was not declared in (declare and bind "
              "each layer with the same ParamStore)");
    p.value = value(p.ref);
    p.grad = grad(p.ref);
    if constexpr (sizeof...(rest) > 0) bind(rest...);
  }

  ParamRef find(std::string_view name) const {
    for (size_t i = 0; i < infos_.size(); ++i)
      if (infos_[i].name == name) return ParamRef{static_cast<int>(i)};
    return ParamRef{};
  }
  const ParamInfo& info(ParamRef r) const { return infos_.at(r.index); }
  const std::vector<ParamInfo>& infos() const { return infos_; }
  View<S> value(ParamRef r) {
    return {placed() ? places_.at(r.index).first : values() + info(r).offset, info(r).shape};
  }
  CView<S> value(ParamRef r) const {
    return {placed() ? places_.at(r.index).first : values() + info(r).offset, info(r).shape};
  }
  View<S> grad(ParamRef r) {
    return {placed() ? places_.at(r.index).second : grads() + info(r).offset, info(r).shape};
  }

  S* values() { return external_values_ ? external_values_ : flat(values_); }
  const S* values() const { return external_values_ ? external_values_ : flat(values_); }
  S* grads() { return external_grads_ ? external_grads_ : flat(grads_); }
  const S* grads() const { return external_grads_ ? external_grads_ : flat(grads_); }
  index_t size() const { return total_; }
  index_t count(ParamRole role) const {
    index_t n = 0;
    for (const ParamInfo& p : infos_)
      if (p.role == role) n += p.shape.numel();
    return n;
  }
  void zero_grad() { std::fill(grads(), grads() + total_, S(0)); }

  // Whether a parameter's values were written by an initialiser or a loader. Code that
  // writes values() directly says so with mark_set / mark_all_set.
  bool is_set(ParamRef r) const { return finalized_ && set_.at(r.index); }
  void mark_set(ParamRef r) { set_.at(r.index) = true; }
  void mark_all_set() { std::fill(set_.begin(), set_.end(), true); }
  template <class... Ps>
  void mark_set(const Param<S>& p, const Ps&... rest) {
    mark_set(p.ref);
    if constexpr (sizeof...(rest) > 0) mark_set(rest...);
  }

 private:
  // The flat buffer; a placed store has none (its parameters are another store's).
  template <class V>
  auto flat(V& buffer) const {
    MTP_CHECK(!placed(), "a placed parameter store has no flat buffer (its owner has)");
    return buffer.data();
  }
  static std::uint64_t next_id() {
    static std::atomic<std::uint64_t> counter{0};
    return ++counter;
  }

  std::vector<ParamInfo> infos_;
  std::vector<S> values_, grads_;
  S* external_values_ = nullptr;  // use_external: the caller's memory in place of values_
  S* external_grads_ = nullptr;
  std::vector<std::pair<S*, S*>> places_;  // finalize_placed: each parameter's memory
  std::vector<bool> set_;
  index_t total_ = 0;
  bool finalized_ = false;
  std::uint64_t id_ = next_id();
};

// For a layer used on its own (tests, benchmarks, `mtp-exp layer`): declares its
// parameters into an empty store, allocates them, and binds the layer's views.
template <class Layer, class S>
void attach_params(Layer& layer, ParamStore<S>& store, const std::string& prefix = "") {
  layer.declare(store, prefix);
  store.finalize();
  layer.bind(store);
}

}  // namespace mtp
