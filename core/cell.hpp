// What a recurrent cell must provide to be wrapped in K temporal perspectives, and
// what an aggregator must provide to combine them (docs/contract.md §2).
//
// A cell is split in three parts so that the wrapper can share everything that does
// not depend on the perspective:
//
//   P  (T,B,Dp)   = pre(x (T,B,I), s0)              shared, typically one GEMM over T·B rows
//   Yk (T,B,K,Dy) = recur(x, P, decay (K,D), s0)    per perspective k, own state s^k
//   A  (T,B,Dy)   = Agg_k(Yk, x)                    the aggregator
//   y  (T,B,O)    = post(A, P, x)                   shared, after aggregation
//
// recur runs all K perspectives of all B sequences together and owns its time loop,
// so a matrix cell can batch its recurrent GEMM over B·K rows and a diagonal cell can
// fuse its K scans into one pass. State is (B,K,Sw) per layer; pre sees the initial
// state and recur sees x because a cell's state may include shared input history
// (RWKV's token shift keeps the last x).
//
// Backward protocol (called by Perspectives in this order, after a forward that saved
// what each part needs): post_backward overwrites dA; then recur_backward and
// pre_backward accumulate into dP and dx, which the wrapper has zeroed, and every
// part accumulates its parameter gradients.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

#include "mtp/core/param_store.hpp"
#include "mtp/core/rng.hpp"
#include "mtp/core/tensor.hpp"

namespace mtp {

// The first member of a configuration struct: it makes positional initialisation a
// compile error, because `{64, 128}` reads differently for every cell ({input, hidden},
// {input, state}, {channels}). Name the fields: `{.input = 64, .hidden = 128}`.
struct DesignatedOnly {
  explicit DesignatedOnly() = default;
};
#define MTP_DESIGNATED_ONLY \
  [[no_unique_address]] ::mtp::DesignatedOnly designated_only_ {}

// Where a layer sits in its model; some initialisation recipes depend on depth.
struct LayerPosition {
  MTP_DESIGNATED_ONLY;
  int index = 0;
  int count = 1;
};

// Per-call facts that are not data: training or evaluation (selector noise is
// training-only), and the key of this step's random numbers.
struct StepContext {
  MTP_DESIGNATED_ONLY;
  bool training = false;
  std::uint64_t seed = 0;
  std::uint64_t step = 0;
};

template <class C>
concept Cell = requires(C c, const C cc, ParamStore<typename C::Scalar>& store,
                        const std::string& prefix, RngSequence& rng, LayerPosition pos,
                        CView<typename C::Scalar> in, View<typename C::Scalar> out) {
  typename C::Scalar;
  typename C::Config;
  { C::kName } -> std::convertible_to<std::string_view>;
  { cc.input_width() } -> std::same_as<index_t>;   // I
  { cc.pre_width() } -> std::same_as<index_t>;     // Dp
  { cc.recur_width() } -> std::same_as<index_t>;   // Dy, per perspective
  { cc.state_width() } -> std::same_as<index_t>;   // Sw, per (b, k)
  { cc.decay_width() } -> std::same_as<index_t>;   // D, one decay row per perspective
  { cc.output_width() } -> std::same_as<index_t>;  // O
  c.declare(store, prefix);                        // registers the cell's own tensors (not decay)
  c.bind(store);
  c.init(rng, out, pos);       // initialises the cell's tensors and writes the base decay (D)
  c.pre_forward(in, in, out);  // x, s0 → P
  c.recur_forward(in, in, in, in, out, out);       // x, P, decay, s0 → Yk, sT
  c.post_forward(in, in, in, out);                 // A, P, x → y
  c.post_backward(in, in, in, in, out, out, out);  // dy, A, P, x → dA, dP+, dx+
  c.recur_backward(in, in, in, in, out, out);      // dYk, P, decay, Yk → dP+, ddecay+
  c.pre_backward(in, in, out);                     // dP, x → dx+
};

template <class A>
concept Aggregator = requires(A a, ParamStore<typename A::Scalar>& store, const std::string& prefix,
                              RngSequence& rng, CView<typename A::Scalar> in,
                              View<typename A::Scalar> out, const StepContext& ctx,
                              std::uint64_t noise_stream) {
  typename A::Scalar;
  typename A::Options;
  { A::kName } -> std::convertible_to<std::string_view>;
  a.declare(store, prefix);
  a.bind(store);
  a.init(rng);
  a.forward(in, in, out, ctx, noise_stream);  // Yk (T,B,K,D), x (T,B,I) → A (T,B,D)
  a.backward(in, in, in, out, out);           // dA, Yk, x → dYk (overwrite), dx+
};

// An aggregator whose output is a per-(t, b) weighting of the perspectives,
// A_t = Σ_k α_{t,k} Yk_t, can hand the weights α to the cell instead of reading Yk:
// weights_forward computes and saves α; weights_backward takes dα_{t,k} = ⟨dA_t, Yk_t⟩.
template <class A>
concept WeightingAggregator = Aggregator<A> &&
    requires(A a, CView<typename A::Scalar> in, View<typename A::Scalar> out,
             const StepContext& ctx, std::uint64_t noise_stream) {
  // x (T,B,I) → α (T,B,K), owned by the aggregator
  { a.weights_forward(in, ctx, noise_stream) } -> std::same_as<CView<typename A::Scalar>>;
  a.weights_backward(in, in, out);  // dα (T,B,K), x → dx+
};

// A cell that can apply such weights inside its recurrence, so that the per-perspective
// outputs (T,B,K,Dy) and their gradient are never written to memory: the diagonal cells,
// whose scans are memory-bound. The mixed and unmixed paths compute the same function.
template <class C>
concept MixingCell = Cell<C> &&
    requires(C c, CView<typename C::Scalar> in, View<typename C::Scalar> out) {
  c.recur_mixed_forward(in, in, in, in, in, out, out);    // x, P, decay, s0, α → A, sT
  c.recur_mixed_backward(in, in, in, in, out, out, out);  // dA, P, decay, α → dP+, ddecay+, dα
};

}  // namespace mtp
