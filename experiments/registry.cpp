#include "mtp/experiments/registry.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "mtp/core/error.hpp"
#include "mtp/experiments/named.hpp"
#include "mtp/experiments/register.hpp"
#if MTP_WITH_CUDA
#include "mtp/experiments/layer_cuda_impl.hpp"
#endif

namespace mtp::exp {

namespace {

#if MTP_WITH_CUDA
constexpr bool kBuiltWithCuda = true;
#else
constexpr bool kBuiltWithCuda = false;
#endif

void add_spec(std::vector<ComponentSpec>& specs, const ComponentSpec& spec) {
  if (!find_named(specs, spec.name)) specs.push_back(spec);
}

}  // namespace

void Registry::add(MixerEntry entry, const ComponentSpec& cell, const ComponentSpec& aggregator) {
  MTP_CHECK(!cell.name.empty() && !aggregator.name.empty(),
            "a cell or aggregator registered without a name (kName)");
  for (const MixerEntry& e : entries_)
    MTP_CHECK(e.cell != entry.cell || e.aggregator != entry.aggregator,
              "cell '{}' with aggregator '{}' is registered twice (two types with one kName?)",
              entry.cell, entry.aggregator);
  add_spec(cells_, cell);
  add_spec(aggregators_, aggregator);
  entries_.push_back(std::move(entry));
}

bool Registry::has_cell(std::string_view name) const {
  return find_named(cells_, name) != nullptr;
}

bool Registry::has_aggregator(std::string_view name) const {
  return find_named(aggregators_, name) != nullptr;
}

const ComponentSpec& Registry::aggregator(std::string_view name) const {
  if (const ComponentSpec* a = find_named(aggregators_, name)) return *a;
  usage_fail("--aggregator '{}' is not one of {}", name, aggregator_names());
}

void Registry::check_takes(std::string_view aggregator_name, std::string_view flag) const {
  const std::vector<std::string>& takes = aggregator(aggregator_name).option_flags;
  if (std::find(takes.begin(), takes.end(), flag) != takes.end()) return;
  std::string which;
  for (const ComponentSpec& a : aggregators_)
    if (std::find(a.option_flags.begin(), a.option_flags.end(), flag) != a.option_flags.end())
      which += (which.empty() ? "--aggregator " : " or --aggregator ") + a.name;
  usage_fail("--{} has no effect with --aggregator {}; it applies to {}", flag, aggregator_name,
             which.empty() ? "no registered aggregator" : which);
}

std::string Registry::cell_names(std::string_view separator) const {
  return join_names(cells_, separator);
}

std::string Registry::aggregator_names(std::string_view separator) const {
  return join_names(aggregators_, separator);
}

const MixerEntry& Registry::mixer(std::string_view cell, std::string_view aggregator) const {
  if (!has_cell(cell))
    usage_fail("--cell '{}' is not a known cell (known: {})", cell, cell_names());
  Registry::aggregator(aggregator);  // known, or the usage error naming --aggregator
  for (const MixerEntry& e : entries_)
    if (e.cell == cell && e.aggregator == aggregator) return e;
  usage_fail("--cell {} was not registered with --aggregator {} (register them together)", cell,
             aggregator);
}

Registry& registry() {
  static Registry r = [] {
    Registry built_in;
    register_pairs<BuiltinCells, BuiltinAggregators, kBuiltWithCuda>(built_in);
    return built_in;
  }();
  return r;
}

}  // namespace mtp::exp
