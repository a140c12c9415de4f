#include "mtp/experiments/config.hpp"

#include <cmath>

#include "mtp/aggregators/fixed.hpp"
#include "mtp/core/error.hpp"
#include "mtp/experiments/dispatch.hpp"
#include "mtp/experiments/json_file.hpp"
#include "mtp/experiments/registry.hpp"
#include "mtp/experiments/tasks.hpp"

#include <fmt/ranges.h>
#include <algorithm>
#include <charconv>
#include <set>

namespace mtp::exp {

// Every field of TrainConfig, once: to_json and train_config_from_json expand it.
// clang-format off
#define MTP_CONFIG_FIELDS(X)                                                                \
  X(cell) X(perspectives) X(aggregator) X(noise) X(noise_mode) X(top_k) X(fixed_weights)  \
  X(decay_spread) X(combine) X(per_perspective)                                             \
  X(layers) X(width) X(ffn) X(init_from) X(freeze)                                         \
  X(steps) X(batch) X(seq_len) X(lr) X(warmup) X(weight_decay) X(clip) X(seed)              \
  X(task) X(data) X(tokenizer) X(carry_state) X(vocab) X(pairs) X(lags) X(copy_tokens)      \
  X(val_batches) X(task_options)                                                            \
  X(out) X(token_cache) X(threads) X(eval_every) X(log_every) X(checkpoint_every)
// clang-format on

TaskDefaults task_defaults(const std::string& task) {
  return tasks().at(task).defaults;
}

const std::string& task_option(const TrainConfig& c, const std::string& name) {
  const auto it = c.task_options.find(name);
  if (it == c.task_options.end())
    usage_fail("--{} is not a flag of --task {} (its spec does not declare it)", name, c.task);
  return it->second;
}

long long task_option_int(const TrainConfig& c, const std::string& name) {
  const std::string& text = task_option(c, name);
  long long v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size())
    usage_fail("--{} must be an integer, got '{}'", name, text);
  return v;
}

double task_option_double(const TrainConfig& c, const std::string& name) {
  const std::string& text = task_option(c, name);
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v))
    usage_fail("--{} must be a finite number, got '{}'", name, text);
  return v;
}

nlohmann::json to_json(const TrainConfig& c) {
  nlohmann::json j;
#define X(f) j[#f] = c.f;
  MTP_CONFIG_FIELDS(X)
#undef X
  return j;
}

TrainConfig train_config_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) fail("{}: the run configuration is not an object", where);
  // A setting this build does not know (a newer mtp's, or an edit) cannot be honoured.
  static const std::set<std::string> known = {
#define X(f) #f,
      MTP_CONFIG_FIELDS(X)
#undef X
  };
  for (const auto& [key, value] : j.items())
    if (!known.count(key)) fail("{}: setting '{}' is not one this mtp-exp knows", where, key);
  TrainConfig c;
#define X(f) \
  if (j.contains(#f)) c.f = json_to<decltype(c.f)>(j[#f], where + ": setting '" #f "'");
  MTP_CONFIG_FIELDS(X)
#undef X
  return c;
}

const MixerEntry& check_layer_flags(const std::string& cell, const std::string& aggregator,
                                    int perspectives, double noise, const std::string& noise_mode,
                                    int top_k, const std::vector<double>& fixed_weights) {
  // Both known, and registered together.
  const MixerEntry& entry = registry().mixer(cell, aggregator);
  if (perspectives < 1 || perspectives > 64)
    usage_fail("--perspectives must be in [1, 64], got {}", perspectives);
  if (!std::isfinite(noise) || noise < 0)
    usage_fail("--noise must be a finite value >= 0, got {}", noise);
  parse_noise_mode(noise_mode);
  if (top_k < 0) usage_fail("--top-k must be >= 0 (0 keeps all), got {}", top_k);
  // No effect on an aggregator whose options lack them: refused, as any value that would
  // silently do nothing. (The learned selector at K = 1 keeps them, though one
  // perspective leaves nothing to select: a grid over K shares its settings.)
  if (noise != 0) registry().check_takes(aggregator, "noise");
  if (noise_mode != "fixed") registry().check_takes(aggregator, "noise-mode");
  if (top_k != 0) registry().check_takes(aggregator, "top-k");
  if (noise_mode == "learned" && noise != 0)
    usage_fail(
        "--noise sets a fixed σ; with --noise-mode learned σ = softplus(W_n x) is learned "
        "instead");
  if (top_k > perspectives)
    usage_fail("--top-k {} is more than the {} perspectives (0 keeps all)", top_k, perspectives);
  if (!fixed_weights.empty()) {
    registry().check_takes(aggregator, "fixed-weights");
    try {
      check_fixed_weights(fixed_weights, perspectives);
    } catch (const Error& e) {
      usage_fail("--fixed-weights: {}", e.what());
    }
  }
  return entry;
}

void validate(const TrainConfig& c) {
  auto need = [](bool ok, const char* flag, const std::string& why) {
    if (!ok) usage_fail("--{} {}", flag, why);
  };
  const MixerEntry& entry = check_layer_flags(c.cell, c.aggregator, c.perspectives, c.noise,
                                              c.noise_mode, c.top_k, c.fixed_weights);
  need(c.combine == "layer" || c.combine == "head", "combine",
       fmt::format("'{}' is not one of layer, head", c.combine));
  need(c.per_perspective == "decay" || c.per_perspective == "shift" || c.per_perspective == "both",
       "per-perspective", fmt::format("'{}' is not one of decay, shift, both", c.per_perspective));
  if (c.per_perspective != "decay") {
    std::string shifting;
    for (const MixerEntry& e : registry().mixers())
      if (e.token_shift && shifting.find(e.cell) == std::string::npos)
        shifting += (shifting.empty() ? "" : ", ") + e.cell;
    need(entry.token_shift, "per-perspective",
         fmt::format("{} needs a cell with a token shift; {} has none (cells that have one: {})",
                     c.per_perspective, c.cell, shifting.empty() ? "none" : shifting));
  }
  if (c.combine == "head")
    need(entry.head_model, "combine",
         fmt::format("head combines the streams' logits by weights; --aggregator {} does not "
                     "weight the perspectives (mean, fixed and learned do)",
                     c.aggregator));
  need(c.freeze.empty() || c.freeze == "base", "freeze",
       fmt::format("'{}' is not a parameter group (known: base)", c.freeze));
  need(c.freeze.empty() || !c.init_from.empty(), "freeze",
       "base keeps the base parameters as loaded: it needs --init-from (a random frozen base "
       "learns nothing)");
  need(std::isfinite(c.decay_spread), "decay-spread", "must be finite");
  need(c.layers >= 1 && c.layers <= 64, "layers",
       fmt::format("must be in [1, 64], got {}", c.layers));
  need(c.width >= 1 && c.width <= 8192, "width",
       fmt::format("must be in [1, 8192], got {}", c.width));
  need(c.steps >= 1, "steps", fmt::format("must be >= 1, got {}", c.steps));
  need(c.batch >= 1 && c.batch <= 65536, "batch",
       fmt::format("must be in [1, 65536], got {}", c.batch));
  need(c.seq_len >= 2 && c.seq_len <= 1'000'000, "seq-len",
       fmt::format("must be in [2, 1000000], got {}", c.seq_len));
  need(std::isfinite(c.lr) && c.lr > 0, "lr", fmt::format("must be > 0, got {}", c.lr));
  need(std::isfinite(c.warmup) && c.warmup >= 0 && c.warmup < 1, "warmup",
       fmt::format("is a fraction of the steps in [0, 1), got {}", c.warmup));
  need(std::isfinite(c.weight_decay) && c.weight_decay >= 0, "weight-decay", "must be >= 0");
  need(std::isfinite(c.clip) && c.clip >= 0, "clip", "must be >= 0 (0 disables clipping)");
  need(tasks().has(c.task), "task", fmt::format("'{}' is not one of {}", c.task, tasks().names()));
  const TaskSpec& task = tasks().at(c.task);
  const bool reads_data =
      std::find(task.own_flags.begin(), task.own_flags.end(), "data") != task.own_flags.end();
  if (reads_data) need(!c.data.empty(), "data", fmt::format("is required with --task {}", c.task));
  if (!reads_data) need(c.data.empty(), "data", fmt::format("does not apply to --task {}", c.task));
  if (c.carry_state)
    need(std::find(task.own_flags.begin(), task.own_flags.end(), "carry-state") !=
             task.own_flags.end(),
         "carry-state", fmt::format("does not apply to --task {}", c.task));
  for (const auto& option : c.task_options)
    if (std::none_of(task.flags.begin(), task.flags.end(),
                     [&](const TaskFlag& f) { return f.name == option.first; }))
      usage_fail("--{} is not a flag of --task {}", option.first, c.task);
  if (task.validate) task.validate(c);
  need(c.val_batches >= 1, "val-batches", "must be >= 1");
  need(c.threads >= 0 && c.threads <= 1024, "threads", "must be in [0, 1024]");
  need(c.eval_every >= 0, "eval-every", "must be >= 0");
  need(c.log_every >= 0, "log-every", "must be >= 0");
  need(c.checkpoint_every >= 0, "checkpoint-every", "must be >= 0");
}

}  // namespace mtp::exp
