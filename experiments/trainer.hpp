// Training and evaluation of Model<Mixer> on a Task: the loop behind `mtp-exp` and
// `mtp-exp eval`, generic over the mixer type chosen by dispatch.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mtp/core/head_model.hpp"
#include "mtp/core/layer_streams.hpp"
#include "mtp/core/model.hpp"
#include "mtp/core/optim.hpp"
#include "mtp/core/safetensors.hpp"
#include "mtp/experiments/any_model.hpp"
#include "mtp/experiments/checkpoint.hpp"
#include "mtp/experiments/config.hpp"
#include "mtp/experiments/dispatch.hpp"
#include "mtp/experiments/memory_estimate.hpp"
#include "mtp/experiments/tasks.hpp"

namespace mtp::exp {

struct GroupAccuracy {
  std::string name;
  index_t correct = 0, labelled = 0;
  double accuracy() const { return labelled ? double(correct) / double(labelled) : 0.0; }
};

struct EvalResult {
  double loss = 0;      // mean cross-entropy (nats) over labelled positions
  double accuracy = 0;  // argmax accuracy over labelled positions
  index_t labelled = 0;
  std::vector<GroupAccuracy> groups;  // per Task::group_names(), when the task has groups
  double bytes_per_label = 1;         // Task::bytes_per_label(true)
  double bits_per_byte() const { return loss / std::log(2.0) / bytes_per_label; }
  double bits_per_token() const { return loss / std::log(2.0); }
};

// Adds the argmax hits of the last forward's logits (T,B,V) to each position's group.
template <class S>
void count_group_hits(CView<S> logits, const Batch& b, std::vector<GroupAccuracy>& groups) {
  const index_t V = logits.dim(2);
  for (index_t i = 0; i < b.T * b.B; ++i) {
    const std::int32_t g = b.groups[i];
    if (g < 0) continue;
    const S* row = logits.data + i * V;
    const index_t arg = std::max_element(row, row + V) - row;
    groups[g].labelled += 1;
    groups[g].correct += arg == b.targets[i];
  }
}

// "decay" | "shift" | "both" → PerPerspective; anything else is a usage error.
inline PerPerspective parse_per_perspective(std::string_view s) {
  if (s == "decay") return PerPerspective::decay;
  if (s == "shift") return PerPerspective::shift;
  if (s == "both") return PerPerspective::both;
  usage_fail("--per-perspective '{}' is not one of decay, shift, both", s);
}

template <class Mixer>
typename Mixer::Config mixer_config(const TrainConfig& c) {
  typename Mixer::Config m;
  m.cell = Mixer::CellType::model_config(c.width);
  m.perspectives = c.perspectives;
  m.decay_spread = c.decay_spread;
  m.aggregator = aggregator_options<typename Mixer::AggregatorType>(
      {c.noise, c.fixed_weights, parse_noise_mode(c.noise_mode), c.top_k});
  if constexpr (requires { m.per_perspective; })  // LayerStreams
    m.per_perspective = parse_per_perspective(c.per_perspective);
  return m;
}

template <class Mixer>
ModelFor<Mixer> build_model(const TrainConfig& c, index_t vocab) {
  ModelConfig mc{.vocab = vocab, .width = c.width, .layers = c.layers, .ffn = c.ffn};
  ModelFamily<typename Mixer::CellType>::configure(mc);
  return ModelFor<Mixer>(mc, mixer_config<Mixer>(c));
}

// The model of --combine head (docs/contract.md §7.1).
template <class Cell, class Agg>
HeadModel<Cell, Agg, typename ModelFamily<Cell>::Ffn> build_head_model(const TrainConfig& c,
                                                                       index_t vocab) {
  using M = HeadModel<Cell, Agg, typename ModelFamily<Cell>::Ffn>;
  typename M::Config hc;
  hc.model = ModelConfig{.vocab = vocab, .width = c.width, .layers = c.layers, .ffn = c.ffn};
  ModelFamily<Cell>::configure(hc.model);
  TrainConfig one = c;  // a stream's layers: K = 1, nothing to select
  one.perspectives = 1;
  hc.mixer = mixer_config<typename M::StreamMixer>(one);
  hc.perspectives = c.perspectives;
  hc.per_perspective = parse_per_perspective(c.per_perspective);
  hc.decay_spread = c.decay_spread;
  hc.aggregator =
      aggregator_options<Agg>({c.noise, c.fixed_weights, parse_noise_mode(c.noise_mode), c.top_k});
  return M(hc);
}

// The learned selectors' weights over a validation set: per layer and perspective, the
// sum of α over every (t, b) row, and the rows per layer.
struct SelectionTally {
  std::vector<std::vector<double>> sums;  // [layer][k]
  index_t rows = 0;
};

// Noise-free evaluation over the task's validation set; with `selection`, also what the
// learned selectors chose.
template <class M>
EvalResult evaluate(M& model, const Task& task, SelectionTally* selection = nullptr) {
  CrossEntropyStats total;
  std::vector<GroupAccuracy> groups;
  for (const std::string& name : task.group_names()) groups.push_back({name});
  // With carried state the validation batches are consecutive chunks of the same streams.
  using State = decltype(model.initial_state(1));
  std::optional<State> state;
  if (task.carries_state() && !task.validation().empty())
    state = model.initial_state(task.validation()[0].B);
  for (const Batch& b : task.validation()) {
    const CrossEntropyStats s = model.forward(b.tokens.data(), b.targets.data(), b.T, b.B,
                                              StepContext{}, state ? &*state : nullptr);
    total.loss_sum += s.loss_sum;
    total.labelled += s.labelled;
    total.correct += s.correct;
    if (!b.groups.empty()) count_group_hits(model.logits(), b, groups);
    if (selection) selection->rows += model.add_selection(selection->sums);
  }
  return {total.mean_loss(), total.accuracy(), total.labelled, std::move(groups),
          task.bytes_per_label(true)};
}

// [{"name": "lag 2", "accuracy": .., "labelled": ..}, ...] for result.json, in task order.
nlohmann::json groups_json(const std::vector<GroupAccuracy>& groups);

// result.json's "views": the recurrent state a sequence carries (floats, every layer and
// perspective), and per layer what the views settled on: each decay row's mean, the
// quartiles over its channels of the time scale 1/(1 − retention) in steps (when the
// cell says what a decay retains), and the mean selection weight of each perspective over
// the validation set (learned selectors).
nlohmann::json views_json(const std::vector<LayerViews>& layers, const SelectionTally& selection,
                          index_t state_floats);

// Parameter counts: total, those that exist only because of the perspectives, and
// those being trained (all, or only the perspectives with --freeze base).
struct ParamCounts {
  index_t total = 0, base = 0, perspective = 0, trained = 0;
  double perspective_percent() const {
    return base ? 100.0 * double(perspective) / double(base) : 0;
  }
  double trained_percent() const { return total ? 100.0 * double(trained) / double(total) : 0; }
};
// Which parameters train: all, or with freeze == "base" only the perspective ones.
template <class S>
std::vector<bool> trainable_mask(const ParamStore<S>& p, const std::string& freeze) {
  std::vector<bool> mask;
  for (const ParamInfo& info : p.infos())
    mask.push_back(!(freeze == "base" && info.role == ParamRole::base));
  return mask;
}
template <class S>
ParamCounts count_params(const ParamStore<S>& p, const std::vector<bool>& trainable) {
  ParamCounts c{p.size(), p.count(ParamRole::base), p.count(ParamRole::perspective), 0};
  for (size_t i = 0; i < p.infos().size(); ++i)
    if (trainable[i]) c.trained += p.infos()[i].shape.numel();
  return c;
}

// A checkpoint written by training: its tensors and the configuration it was trained with.
struct Checkpoint {
  std::string path;
  SafeTensors file;
  TrainConfig config;
  // The data files it was trained on ({flag, path, bytes, sha256}); empty for a checkpoint
  // that records none (a converted one, or one written before they were recorded).
  std::vector<DataFile> trained_on;
};
Checkpoint read_checkpoint(const std::string& path);
// --tokenizer of eval and generate: a text checkpoint's tokenizer file, in place of the
// path it was trained with (moved, or for a converted checkpoint that names none); a
// usage error for a checkpoint of another task. With `tokenizer` empty the recorded path
// stays, and a usage error says so when nothing is there (a path relative to the folder
// training ran in).
void override_tokenizer(Checkpoint& ck, const std::string& tokenizer);
// A file the model now reads under the path it was trained with must be the file it was
// trained on (same SHA-256): an error otherwise, since the model would not be read with
// its own tokens or data. Files of the flags in `given` (passed on the command line:
// "--data", "--tokenizer") are the user's choice and are not compared.
void check_trained_on(const Checkpoint& ck, const std::vector<DataFile>& now,
                      const std::vector<std::string>& given);
// The tokenizer of a text checkpoint for eval's benchmarks and generate: --tokenizer's, or
// the one it was trained with (unchanged, check_trained_on).
std::unique_ptr<Tokenizer> checkpoint_tokenizer(Checkpoint& ck, const std::string& tokenizer);

// The size of a run's --data file (0 for none, or a pipe: unknown until read).
double corpus_bytes(const TrainConfig& c);

// Rebuilds the model a checkpoint was trained as, loads its parameters, and returns
// f(model); the model type is chosen from the stored configuration. A model that would
// not fit in memory is refused first.
std::unique_ptr<AnyModel<float>> load_checkpoint_model(const Checkpoint& ck);
template <class F>
decltype(auto) with_checkpoint_model(const Checkpoint& ck, F&& f) {
  const std::unique_ptr<AnyModel<float>> model = load_checkpoint_model(ck);
  return f(*model);
}

// One optimisation step, as llm.c has it: zero the gradients, forward on the batch
// (carrying `state` when given), backward, zero the frozen parameters' gradients, clip the
// global norm to `clip` (0: off), update with learning rate `lr`. A non-finite loss or
// gradient is an error naming the step (and the parameter). A backend replaces this
// function to run the step elsewhere.
struct StepResult {
  double loss = 0, accuracy = 0, grad_norm = 0;  // the batch's mean loss; the norm before clipping
};
StepResult train_step(AnyModel<float>& model, AdamW<float>& opt, const Batch& batch,
                      const StepContext& ctx, ModelState<float>* state,
                      const std::vector<bool>& trainable, double clip, double lr);

// `mtp-exp` (train): trains, evaluates, prints the summary and writes DIR/config.json,
// DIR/metrics.csv, DIR/model.safetensors and DIR/result.json. Returns the result JSON.
// The folder is locked for the whole run (run_folder.hpp); one that holds a run is
// refused unless `overwrite`.
nlohmann::json run_training(const TrainConfig& cfg, bool overwrite = false);
// Continues the run in `dir` (written with --checkpoint-every) from its last training
// state, with the settings in dir/config.json; threads > 0 overrides the thread count.
// The metrics equal an uninterrupted run's when the thread count is the same.
nlohmann::json resume_training(const std::string& dir, int threads);

// `mtp-exp eval`: re-evaluates a checkpoint on its task, or on `data` for text.
// logits_path: also write the first validation batch's tokens and logits there.
nlohmann::json run_evaluation(const std::string& checkpoint, const std::string& data,
                              const std::string& tokenizer, int threads,
                              const std::string& logits_path = "");

void set_threads(int threads);

}  // namespace mtp::exp
