#include "mtp/experiments/memory_estimate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>
#include <vector>

namespace mtp::exp {

std::string MemoryEstimate::parts() const {
  std::vector<std::pair<double, const char*>> parts = {{activations, "activations"},
                                                       {parameters, "parameters and gradients"},
                                                       {optimizer, "optimizer state"},
                                                       {checkpoint, "copies written to files"},
                                                       {data, "data"},
                                                       {runtime, "the program itself"}};
  std::stable_sort(parts.begin(), parts.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string s;
  bool first = true;
  for (const auto& [bytes, name] : parts) {
    if (bytes <= 0) continue;
    s += fmt::format("{}{} {}", first ? "" : ", ", name, format_bytes(bytes));
    first = false;
  }
  return s;
}

void check_memory(const MemoryEstimate& m, const std::string& what) {
  const std::uint64_t available = available_memory_bytes();
  if (m.total() <= double(available)) return;
  // What to make smaller, by the part that dominates.
  const double params = m.parameters + m.optimizer + m.checkpoint;
  const char* advice = m.activations >= params && m.activations >= m.data
                           ? "a smaller --batch or --seq-len (or --width, --vocab)"
                       : params >= m.data ? "a smaller --width, --layers or --vocab"
                                          : "fewer --val-batches or a smaller corpus";
  fail("{} needs about {} of memory ({}), more than the {} available: try {}", what,
       format_bytes(m.total()), m.parts(), format_bytes(double(available)), advice);
}

}  // namespace mtp::exp
