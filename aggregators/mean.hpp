// Mean aggregator: Agg = (1/K) Σ_k y^k. No parameters.
#pragma once

#include <string>
#include <string_view>

#include "mtp/aggregators/weighted_sum.hpp"
#include "mtp/core/cell.hpp"

namespace mtp {

template <class S>
class MeanAggregator {
 public:
  using Scalar = S;
  struct Options {};
  static constexpr std::string_view kName = "mean";

  MeanAggregator(int K, index_t /*input_width*/, const Options&) : w_(K, S(1) / S(K)) {}

  void declare(ParamStore<S>&, const std::string&) {}
  void bind(ParamStore<S>&) {}
  void init(RngSequence&) {}

  void forward(CView<S> Yk, CView<S>, View<S> A, const StepContext&, std::uint64_t) {
    weighted_sum_forward(Yk, w_, A);
  }
  void backward(CView<S> dA, CView<S>, CView<S>, View<S> dYk, View<S>) {
    weighted_sum_backward(dA, w_, dYk);
  }

 private:
  std::vector<S> w_;
};

}  // namespace mtp
