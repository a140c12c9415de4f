// Everything that defines a training run. It is written to DIR/config.json and into
// the checkpoint's metadata, so a run can be re-evaluated (or repeated) from either.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mtp::exp {

struct TrainConfig {
  // Layer
  std::string cell = "gru";
  int perspectives = 3;
  std::string aggregator = "learned";
  double noise = 0.0;
  std::string noise_mode = "fixed";   // fixed σ = --noise, or learned σ = softplus(W_n x)
  int top_k = 0;                      // sparse selector: keep the k largest logits (0: all)
  std::vector<double> fixed_weights;  // empty: the λ = 0.5 default
  double decay_spread = 1.0;
  // The authors' variant (docs/contract.md §7.1): where the K views combine, "layer" (in
  // every layer) or "head" (K streams through the model, combined after the head); which
  // parameters each perspective has its own of, "decay", "shift" (the token-shift mixes
  // of a cell that has them, one decay shared) or "both".
  std::string combine = "layer";
  std::string per_perspective = "decay";
  // Model
  int layers = 2;
  int width = 64;
  bool ffn = true;  // the FFN after each mixer (MLP; RWKV: channel mix)
  // The paper's protocol: start from a trained model (K may differ) and train only the
  // perspective parameters.
  std::string init_from;  // safetensors state dict (an mtp checkpoint, RWKV-4, ...)
  std::string freeze;     // "" or "base"
  // Optimisation
  long long steps = 4000;
  int batch = 32;
  int seq_len = 32;
  double lr = 3e-3;
  double warmup = 0.05;  // fraction of steps
  double weight_decay = 0.1;
  double clip = 1.0;
  std::uint64_t seed = 0;
  // Task
  std::string task = "mqar";
  std::string data;          // text: the corpus file
  std::string tokenizer;     // text: a tokenizer.json (byte-level BPE); empty: bytes
  bool carry_state = false;  // text: truncated BPTT over contiguous streams
  int vocab = 32;            // mqar: whole vocabulary; lag-recall, selective-copy: data tokens
  int pairs = 4;             // mqar
  std::vector<int> lags = {2, 8, 32, 128};  // lag-recall
  int copy_tokens = 8;                      // selective-copy
  int val_batches = 16;
  // The chosen task's own flags (TaskSpec::flags, for tasks a program registers): flag
  // name → value as given (or its default); the task parses it (task_option_*).
  std::map<std::string, std::string> task_options;
  // Run
  std::string out;
  std::string token_cache;         // text with a tokenizer: the cache folder ("": default)
  int threads = 0;                 // 0: all cores
  long long eval_every = 0;        // 0: only at the end
  long long log_every = 0;         // 0: about 20 lines per run
  long long checkpoint_every = 0;  // training state every N steps and at the end (0: none)
};

// What a task trains with unless told otherwise: sizes that learn something on 2 cores
// in about a minute.
struct TaskDefaults {
  long long steps;
  int batch, seq_len, vocab;
};
TaskDefaults task_defaults(const std::string& task);

// A task's own flag (TaskSpec::flags) from the configuration, as text or parsed; a usage
// error naming --<name> when it is missing or not a number of that kind.
const std::string& task_option(const TrainConfig& c, const std::string& name);
long long task_option_int(const TrainConfig& c, const std::string& name);
double task_option_double(const TrainConfig& c, const std::string& name);

nlohmann::json to_json(const TrainConfig& c);
// Strict: a setting of the wrong type or out of its type's range is an mtp::Error naming
// `where` (the file) and the setting. Settings it does not know are errors.
TrainConfig train_config_from_json(const nlohmann::json& j, const std::string& where);

// Range and consistency checks on a config; throws UsageError naming the flag.
void validate(const TrainConfig& c);

struct MixerEntry;

// The layer's flags, for train, layer and the PyTorch bridge alike: the pair registered,
// K in [1, 64], and the selector flags (--noise, --noise-mode, --top-k, --fixed-weights)
// in range and taken by the aggregator; throws UsageError naming the flag. Returns the
// pair's registry entry.
const MixerEntry& check_layer_flags(const std::string& cell, const std::string& aggregator,
                                    int perspectives, double noise, const std::string& noise_mode,
                                    int top_k, const std::vector<double>& fixed_weights);

}  // namespace mtp::exp
