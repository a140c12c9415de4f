// Mean aggregator: Agg = (1/K) Σ_k y^k. No parameters.
#pragma once

#include <string_view>

#include "mtp/aggregators/weighted_sum.hpp"

namespace mtp {

template <class S>
class MeanAggregator : public ConstantWeightAggregator<S> {
 public:
  struct Options {};
  static constexpr std::string_view kName = "mean";
  static constexpr std::string_view kDescription = "the mean of the K views";

  MeanAggregator(int K, index_t /*input_width*/, const Options&)
      : ConstantWeightAggregator<S>(std::vector<S>(K, S(1) / S(K))) {}
};

}  // namespace mtp
