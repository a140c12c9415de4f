// The registry of cells and aggregators that the commands know by name. It holds one
// entry per (cell, aggregator) pair compiled into the program: the built-in pairs
// (experiments/dispatch.hpp's type lists, compiled into the library) and whatever the
// program registers before run_main (register_types, experiments/register.hpp). Names
// for --cell and --aggregator, their --help lines, validation and the run header come
// from here; no other list of names exists.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mtp/core/safetensors.hpp"
#include "mtp/experiments/any_layer.hpp"
#include "mtp/experiments/any_model.hpp"
#include "mtp/experiments/check_result.hpp"
#include "mtp/experiments/config.hpp"
#include "mtp/experiments/layer_command.hpp"
#include "mtp/experiments/memory_estimate.hpp"

namespace mtp::exp {

// A registered cell or aggregator as the command line shows it.
struct ComponentSpec {
  std::string name;
  std::string description;  // one line, for --help
  // Aggregators: the selector flags its Options take (aggregator_option_flags).
  std::vector<std::string> option_flags{};
};

// One (cell, aggregator) pair compiled in: what every command needs of it.
struct MixerEntry {
  std::string cell, aggregator;
  std::string ffn;  // the FFN of its model, as the run header names it ("MLP", "channel mix")
  // The model of a run, allocated (zero parameters, unset: init or load them).
  std::unique_ptr<AnyModel<float>> (*model)(const TrainConfig&, index_t vocab) = nullptr;
  // The memory a run would take, counted without allocating the model.
  MemoryEstimate (*memory)(const TrainConfig&, index_t vocab, double corpus_bytes,
                           bool training) = nullptr;
  // `mtp-exp layer` on this pair: params and input read, output written.
  void (*layer)(const LayerArgs&, const SafeTensors& params, const SafeTensors& input) = nullptr;
  bool cuda_layer = false;   // whether `layer --backend cuda` has a device program for it
  bool token_shift = false;  // the cell has token-shift mixes (--per-perspective shift)
  bool head_model = false;   // the aggregator weights the views (--combine head)
  // The pair's layer on its own, its parameters in the caller's memory (the PyTorch
  // bridge; make_layer checks the spec first).
  std::unique_ptr<AnyLayer<float>> (*make_layer_f32)(const LayerSpec&) = nullptr;
  std::unique_ptr<AnyLayer<double>> (*make_layer_f64)(const LayerSpec&) = nullptr;
  // The generated layer checks (experiments/layer_checks.hpp), for `mtp-exp check` and
  // the test suite.
  std::vector<CheckResult> (*checks)() = nullptr;
};

class Registry {
 public:
  // Adds a pair; the cell and aggregator specs are added on their first pair. A pair or a
  // name registered twice (with another type) is an error.
  void add(MixerEntry entry, const ComponentSpec& cell, const ComponentSpec& aggregator);

  const std::vector<ComponentSpec>& cells() const { return cells_; }
  const std::vector<ComponentSpec>& aggregators() const { return aggregators_; }
  bool has_cell(std::string_view name) const;
  bool has_aggregator(std::string_view name) const;
  // "gru, lstm, rwkv, ssm"; with " | " for --help.
  std::string cell_names(std::string_view separator = ", ") const;
  std::string aggregator_names(std::string_view separator = ", ") const;
  // An aggregator's spec, or a usage error naming --aggregator.
  const ComponentSpec& aggregator(std::string_view name) const;
  // A usage error when `flag` (a selector flag, without "--") was given with an
  // aggregator whose options do not take it, naming those that do.
  void check_takes(std::string_view aggregator, std::string_view flag) const;
  // The pair, or a usage error naming --cell or --aggregator.
  const MixerEntry& mixer(std::string_view cell, std::string_view aggregator) const;
  const std::vector<MixerEntry>& mixers() const { return entries_; }

 private:
  std::vector<ComponentSpec> cells_, aggregators_;
  std::vector<MixerEntry> entries_;
};

// The program's registry: the built-in pairs, then what the program added.
Registry& registry();

}  // namespace mtp::exp
