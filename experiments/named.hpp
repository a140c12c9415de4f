// Lookups in a list of specs by their `name` member: the registries of cells,
// aggregators (registry.cpp) and tasks (tasks.cpp) share them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mtp::exp {

// The spec called `name`, or null.
template <class Spec>
const Spec* find_named(const std::vector<Spec>& specs, std::string_view name) {
  for (const Spec& s : specs)
    if (s.name == name) return &s;
  return nullptr;
}

// "a, b, c" (with `separator` between the names).
template <class Spec>
std::string join_names(const std::vector<Spec>& specs, std::string_view separator) {
  std::string s;
  for (const Spec& spec : specs) s += (s.empty() ? "" : std::string(separator)) + spec.name;
  return s;
}

}  // namespace mtp::exp
