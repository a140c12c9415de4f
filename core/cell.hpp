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
// Every part takes its arguments as a named struct (below), so a part reads the names it
// needs and ignores the rest, and an added argument breaks no cell.
//
// Backward protocol (called by Perspectives in this order, after a forward that saved
// what each part needs): post_backward overwrites dA; then recur_backward and
// pre_backward accumulate into dP, dx and ds0, which the wrapper has zeroed, and every
// part accumulates its parameter gradients. A gradient of the final state (dsT) enters
// recur_backward; the initial state's (ds0) leaves recur_backward and pre_backward.
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

// The parts' arguments, by name. Shapes per call: T steps, B sequences, K perspectives;
// Sw = state_width(), Dp = pre_width(), Dy = recur_width(), D = decay_width(). An empty
// view means "none": no initial state (zeros), no final state wanted, no gradient
// entering or wanted. "+=" marks accumulators the wrapper has zeroed or that already hold
// other parts' shares; backward parts never read the forward's s0 from their arguments
// (the caller's state buffer holds sT by then): they keep what they need.
template <class S>
struct PreIn {
  CView<S> x;   // (T,B,I)
  CView<S> s0;  // (B,K,Sw) or empty
};
template <class S>
struct PreGrad {
  CView<S> dP;  // (T,B,Dp) in
  View<S> dx;   // (T,B,I) +=
  View<S> ds0;  // (B,K,Sw) +=, or empty: not wanted
};
template <class S>
struct RecurIn {
  CView<S> x;      // (T,B,I)
  CView<S> P;      // (T,B,Dp)
  CView<S> decay;  // (K,D)
  CView<S> s0;     // (B,K,Sw) or empty
};
template <class S>
struct RecurOut {
  View<S> Yk;  // (T,B,K,Dy)
  View<S> sT;  // (B,K,Sw) or empty; may alias s0
};
template <class S>
struct RecurGrad {
  CView<S> dYk;    // (T,B,K,Dy) in
  CView<S> dsT;    // (B,K,Sw) in, or empty: no gradient enters through the final state
  View<S> dP;      // (T,B,Dp) +=
  View<S> ddecay;  // (K,D) +=
  View<S> ds0;     // (B,K,Sw) +=, or empty: not wanted (then it costs nothing)
  View<S> dx;      // (T,B,I) +=, for a state that holds input history (RWKV's last x)
};
// The mixed scan (MixingCell): the aggregation inside the recurrence.
template <class S>
struct MixedOut {
  View<S> A;   // (T,B,Dy) = Σ_k α_k Yk
  View<S> sT;  // (B,K,Sw) or empty; may alias s0
};
template <class S>
struct MixedGrad {
  CView<S> dA;     // (T,B,Dy) in
  CView<S> dsT;    // (B,K,Sw) in, or empty
  View<S> dP;      // (T,B,Dp) +=
  View<S> ddecay;  // (K,D) +=
  View<S> dalpha;  // (T,B,K) overwritten: ⟨dA_t, Yk_t^k⟩
  View<S> ds0;     // (B,K,Sw) +=, or empty
  View<S> dx;      // (T,B,I) +=
};
template <class S>
struct PostIn {
  CView<S> A;  // (T,B,Dy)
  CView<S> P;  // (T,B,Dp)
  CView<S> x;  // (T,B,I)
};
template <class S>
struct PostGrad {
  CView<S> dy;  // (T,B,O) in
  View<S> dA;   // (T,B,Dy) overwritten
  View<S> dP;   // (T,B,Dp) +=; empty after a fused forward (FusedCell), which has no P
  View<S> dx;   // (T,B,I) +=
};
template <class S>
struct AggIn {
  CView<S> Yk;  // (T,B,K,Dy)
  CView<S> x;   // (T,B,I), for selectors that look at the input
};
template <class S>
struct AggGrad {
  CView<S> dA;  // (T,B,Dy) in
  View<S> dYk;  // (T,B,K,Dy) overwritten
  View<S> dx;   // (T,B,I) +=
};
template <class S>
struct WeightsGrad {
  CView<S> dalpha;  // (T,B,K) in
  View<S> dx;       // (T,B,I) +=
};

template <class C>
concept Cell = requires(
    C c, const C cc, ParamStore<typename C::Scalar>& store, const std::string& prefix,
    RngSequence& rng, LayerPosition pos, View<typename C::Scalar> out, CView<typename C::Scalar> in,
    const PreIn<typename C::Scalar>& pre_in, const PreGrad<typename C::Scalar>& pre_grad,
    const RecurIn<typename C::Scalar>& recur_in, const RecurOut<typename C::Scalar>& recur_out,
    const RecurGrad<typename C::Scalar>& recur_grad, const PostIn<typename C::Scalar>& post_in,
    const PostGrad<typename C::Scalar>& post_grad) {
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
  c.init(rng, out, pos);                       // the cell's tensors; writes the base decay (D)
  c.pre_forward(pre_in, out);                  // x, s0 → P
  c.recur_forward(recur_in, recur_out);        // x, P, decay, s0 → Yk, sT
  c.post_forward(post_in, out);                // A, P, x → y
  c.post_backward(post_in, post_grad);         // dy → dA, dP+, dx+
  c.recur_backward(recur_in, in, recur_grad);  // Yk; dYk, dsT → dP+, ddecay+, ds0+, dx+
  c.pre_backward(pre_in, pre_grad);            // dP → dx+, ds0+
};

template <class A>
concept Aggregator = requires(A a, ParamStore<typename A::Scalar>& store, const std::string& prefix,
                              RngSequence& rng, View<typename A::Scalar> out,
                              const AggIn<typename A::Scalar>& agg_in,
                              const AggGrad<typename A::Scalar>& agg_grad, const StepContext& ctx,
                              std::uint64_t noise_stream) {
  typename A::Scalar;
  typename A::Options;
  { A::kName } -> std::convertible_to<std::string_view>;
  a.declare(store, prefix);
  a.bind(store);
  a.init(rng);
  a.forward(agg_in, out, ctx, noise_stream);  // Yk, x → A (T,B,D)
  a.backward(agg_in, agg_grad);               // dA → dYk (overwritten), dx+
};

// An aggregator whose output is a per-(t, b) weighting of the perspectives,
// A_t = Σ_k α_{t,k} Yk_t, can hand the weights α to the cell instead of reading Yk:
// weights_forward computes and saves α; weights_backward takes dα_{t,k} = ⟨dA_t, Yk_t⟩.
template <class A>
concept WeightingAggregator = Aggregator<A> &&
    requires(A a, CView<typename A::Scalar> x, const WeightsGrad<typename A::Scalar>& grad,
             const StepContext& ctx, std::uint64_t noise_stream) {
  // x (T,B,I) → α (T,B,K), owned by the aggregator
  { a.weights_forward(x, ctx, noise_stream) } -> std::same_as<CView<typename A::Scalar>>;
  a.weights_backward(x, grad);  // dα → dx+
};

// A cell that can apply such weights inside its recurrence, so that the per-perspective
// outputs (T,B,K,Dy) and their gradient are never written to memory: the diagonal cells,
// whose scans are memory-bound. The mixed and unmixed paths compute the same function.
template <class C>
concept MixingCell = Cell<C> &&
    requires(C c, CView<typename C::Scalar> alpha, const RecurIn<typename C::Scalar>& in,
             const MixedOut<typename C::Scalar>& out, const MixedGrad<typename C::Scalar>& grad) {
  c.recur_mixed_forward(in, alpha, out);    // x, P, decay, s0, α → A, sT
  c.recur_mixed_backward(in, alpha, grad);  // dA, dsT → dP+, ddecay+, dα, ds0+, dx+
};

}  // namespace mtp
