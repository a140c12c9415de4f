// One result of the generated layer checks (experiments/layer_checks.hpp), as the
// registry stores them and `mtp-exp check` prints them.
#pragma once

#include <cmath>
#include <string>

namespace mtp::exp {

struct CheckResult {
  std::string name;  // "gradients K=3 state: selector.weight"
  double error = 0;  // norm-wise relative error
  double tolerance = 0;
  bool passed() const { return std::isfinite(error) && error <= tolerance; }
};

}  // namespace mtp::exp
