// Fixed aggregator: Agg = Σ_k w_k y^k for a given weight vector. The default anchors
// the first perspective: w_1 = λ = 0.5, the others share 1 − λ equally (w = 1 at K = 1).
#pragma once

#include <cmath>
#include <string_view>
#include <vector>

#include "mtp/aggregators/weighted_sum.hpp"

namespace mtp {

inline std::vector<double> default_fixed_weights(int K, double lambda = 0.5) {
  if (K == 1) return {1.0};
  std::vector<double> w(K, (1.0 - lambda) / (K - 1));
  w[0] = lambda;
  return w;
}

// Checks a given weight vector: K finite entries that sum to 1; an mtp::Error otherwise
// (a command line maps it onto its flag).
inline void check_fixed_weights(const std::vector<double>& w, int K) {
  if (static_cast<int>(w.size()) != K)
    fail("fixed aggregator weights: {} values, expected K = {}", w.size(), K);
  double sum = 0;
  for (double v : w) {
    if (!std::isfinite(v)) fail("fixed aggregator weights: a non-finite value");
    sum += v;
  }
  if (std::abs(sum - 1.0) > 1e-6) fail("fixed aggregator weights sum to {}, expected 1", sum);
}

template <class S>
class FixedAggregator : public ConstantWeightAggregator<S> {
 public:
  struct Options {
    MTP_DESIGNATED_ONLY;
    std::vector<double> weights;  // empty: default_fixed_weights(K)
  };
  static constexpr std::string_view kName = "fixed";
  static constexpr std::string_view kDescription = "fixed weights (λ = 0.5 on the first view)";
  // The variants the layer checks run (experiments/layer_checks.hpp).
  static std::vector<Options> check_options(int K) {
    if (K == 3) return {{}, {.weights = {0.2, 0.5, 0.3}}};
    return {{}};
  }

  FixedAggregator(int K, index_t /*input_width*/, const Options& opt)
      : ConstantWeightAggregator<S>(checked_weights(K, opt.weights)) {}

 private:
  static std::vector<S> checked_weights(int K, const std::vector<double>& given) {
    const std::vector<double> w = given.empty() ? default_fixed_weights(K) : given;
    check_fixed_weights(w, K);
    return {w.begin(), w.end()};
  }
};

}  // namespace mtp
