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
                                                       {checkpoint, "checkpoint copies"},
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
  if (m.total() > double(available))
    fail("{} needs about {} of memory ({}), more than the {} available", what,
         format_bytes(m.total()), m.parts(), format_bytes(double(available)));
}

}  // namespace mtp::exp
