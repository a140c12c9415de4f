#include "mtp/experiments/trainer.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "mtp/core/file_io.hpp"
#include "mtp/core/safetensors.hpp"
#include "mtp/experiments/checkpoint.hpp"
#include "mtp/experiments/json_file.hpp"
#include "mtp/experiments/memory_estimate.hpp"
#include "mtp/experiments/progress.hpp"
#include "mtp/experiments/registry.hpp"
#include "mtp/experiments/run_folder.hpp"

namespace mtp::exp {
namespace {

// Names the first parameter whose gradient is not finite.
template <class S>
std::string first_nonfinite_grad(const ParamStore<S>& p) {
  for (const ParamInfo& info : p.infos())
    for (index_t i = 0; i < info.shape.numel(); ++i)
      if (!std::isfinite(double(p.grads()[info.offset + i]))) return info.name;
  return "?";
}

// Frozen parameters keep their gradient at zero, so that the norm and clipping see only
// what trains.
void zero_frozen_grads(ParamStore<float>& p, const std::vector<bool>& trainable) {
  for (size_t i = 0; i < p.infos().size(); ++i)
    if (!trainable[i]) {
      const ParamInfo& info = p.infos()[i];
      std::fill_n(p.grads() + info.offset, info.shape.numel(), 0.0f);
    }
}

// "a, b, c and 5 more": the first names of a list.
std::string name_list(const std::vector<std::string>& names) {
  constexpr size_t kShown = 3;
  std::string out;
  for (size_t i = 0; i < std::min(names.size(), kShown); ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > kShown) out += fmt::format(" and {} more", names.size() - kShown);
  return out;
}

// --init-from: every base tensor must come from the file; perspective decays grow from
// its decays (or RWKV's time_decay) and token-shift rows from its mixes, other
// perspective tensors of a new shape start fresh. The summary names what grew, what is new
// and what the file had that the model does not use.
std::string init_from_state_dict(const TrainConfig& cfg, ParamStore<float>& params) {
  StateDictReport r;
  try {
    const SafeTensors file = SafeTensors::load(cfg.init_from);
    r = load_state_dict(file, cfg.init_from, params, cfg.decay_spread,
                        /*fresh_perspectives=*/true);
  } catch (const Error& e) {
    fail("--init-from {}", e.what());
  }
  for (const std::string& name : r.missing) {
    const ParamInfo& info = params.info(params.find(name));
    MTP_CHECK(info.role == ParamRole::perspective,
              "--init-from {}: no tensor '{}' (is it a model of the same cell, width and layers?)",
              cfg.init_from, name);
  }
  std::vector<std::string> fresh = r.missing;
  fresh.insert(fresh.end(), r.fresh.begin(), r.fresh.end());
  std::string summary = fmt::format("{}: {} tensors loaded", cfg.init_from, r.loaded.size());
  if (!r.expanded.empty())
    summary += fmt::format(", {} grown to this K ({})", r.expanded.size(), name_list(r.expanded));
  if (!fresh.empty()) summary += fmt::format(", {} new ({})", fresh.size(), name_list(fresh));
  if (!r.unused.empty())
    summary += fmt::format(", {} unused ({})", r.unused.size(), name_list(r.unused));
  return summary;
}

std::string default_out_dir(const TrainConfig& c) {
  return fmt::format("runs/{}-{}-k{}-{}-s{}", c.task, c.cell, c.perspectives, c.aggregator, c.seed);
}

std::string describe_task(const TrainConfig& c) {
  return tasks().at(c.task).describe(c);
}

void print_header(const TrainConfig& c, const MixerEntry& mixer, const ParamCounts& counts,
                  const MemoryEstimate& memory) {
  std::string layer =
      fmt::format("{}, K={} perspectives, {} aggregator", c.cell, c.perspectives, c.aggregator);
  const std::vector<std::string>& takes = registry().aggregator(c.aggregator).option_flags;
  const auto takes_flag = [&](const char* flag) {
    return std::find(takes.begin(), takes.end(), flag) != takes.end();
  };
  if (takes_flag("noise")) {  // a selector: its noise, and top-k where it has one
    layer += c.noise_mode == "learned" ? " (learned noise" : fmt::format(" (noise {:g}", c.noise);
    layer += c.top_k > 0 && takes_flag("top-k") ? fmt::format(", top-{})", c.top_k) : ")";
  }
  if (c.perspectives > 1 && c.per_perspective != "shift")  // shift: one decay, nothing spread
    layer += fmt::format(", decay spread {:g}", c.decay_spread);
  if (c.combine == "head") layer += ", combined at the head";
  if (c.per_perspective != "decay") layer += fmt::format(", per-perspective {}", c.per_perspective);
  fmt::print("mtp-exp      {}\n", layer);
  fmt::print("model        {} blocks, width {}{}; {} parameters\n", c.layers, c.width,
             c.ffn ? ", " + mixer.ffn : std::string(", no FFN"), counts.total);
  fmt::print("task         {}\n", describe_task(c));
  const int threads = omp_get_max_threads();
  fmt::print("training     {} steps of {} sequences, AdamW lr {:g}, {} thread{}, ~{} of memory\n",
             c.steps, c.batch, c.lr, threads, threads == 1 ? "" : "s",
             format_bytes(memory.total()));
  std::fflush(stdout);
}

// How a run starts: fresh (replacing a run in its folder only with --overwrite), or
// resumed from its training state, with the folder's lock already held by the caller.
struct RunStart {
  bool resume = false;
  bool overwrite = false;
};

nlohmann::json train(const TrainConfig& cfg, const RunStart& start) {
  const MixerEntry& mixer = registry().mixer(cfg.cell, cfg.aggregator);
  using clock = std::chrono::steady_clock;
  const std::filesystem::path out = cfg.out.empty() ? default_out_dir(cfg) : cfg.out;
  const std::string folder = (start.resume ? "--resume " : "--out ") + out.string();
  // What can be refused is refused before the folder is touched: memory, data, the
  // model to start from, the folder's lock and contents.
  const MemoryEstimate memory = mixer.memory(cfg, task_vocab(cfg), corpus_bytes(cfg), true);
  check_memory(memory, "this run");
  const std::unique_ptr<Task> task = make_task(cfg);
  const std::unique_ptr<AnyModel<float>> built = mixer.model(cfg, task->vocab());
  AnyModel<float>& model = *built;
  model.init(cfg.seed);
  ParamStore<float>& params = model.params();
  // A resumed run's parameters all come from its training state.
  std::string init_summary;
  if (!cfg.init_from.empty() && !start.resume) init_summary = init_from_state_dict(cfg, params);
  const std::vector<bool> trainable = trainable_mask(params, cfg.freeze);
  ParamCounts counts = count_params(params, trainable);
  // Base: the K = 1 model's size; perspective: what the perspectives add to it (the
  // roles say what --freeze base trains, reported as trained).
  if (const index_t one = model.stream_size(); one > 0) {
    counts.base = one;
    counts.perspective = counts.total - one;
  }
  AdamW<float> opt(params, AdamWConfig{.weight_decay = cfg.weight_decay});
  const auto warmup = static_cast<long long>(cfg.warmup * double(cfg.steps));

  nlohmann::json config = to_json(cfg);
  config["out"] = out.string();
  nlohmann::json run_info = {{"config", config},
                             {"task", task->describe()},
                             {"parameters",
                              {{"total", counts.total},
                               {"base", counts.base},
                               {"perspective", counts.perspective},
                               {"perspective_percent", counts.perspective_percent()},
                               {"trained", counts.trained},
                               {"trained_percent", counts.trained_percent()}}},
                             {"memory_estimate_bytes", memory.total()}};

  // Truncated BPTT: the state flows from each step's chunk into the next. A resumed run
  // restores it with the rest before printing anything, so a bad state fails alone.
  auto state = model.initial_state(cfg.batch);
  TrainTally tally;
  std::optional<FolderLock> lock;
  if (start.resume) {
    tally = load_training_state(out / kTrainingStateFile, params, opt, state, config,
                                task->data_files());
  } else {
    lock = FolderLock::take(out, folder);
    prepare_new_run(out, folder, start.overwrite);
    write_file_atomic((out / kConfigFile).string(), run_info.dump(2) + "\n");
  }
  // From here on the folder holds this attempt: if it stops with an error, the folder
  // says so (failed.json), and a later attempt starts by forgetting it.
  try {
    clear_run_failure(out);
    print_header(cfg, mixer, counts, memory);
    if (!init_summary.empty()) fmt::print("init from    {}\n", init_summary);
    if (!cfg.freeze.empty())
      fmt::print("frozen       {}: training {} of {} parameters ({:.3f}%)\n", cfg.freeze,
                 counts.trained, counts.total, counts.trained_percent());
    if (start.resume)
      fmt::print("resumed      from step {} of {} ({})\n", tally.step, cfg.steps,
                 (out / kTrainingStateFile).string());
    std::fflush(stdout);
    std::vector<MetricsRow>& rows = tally.rows;
    Progress progress(cfg.steps, cfg.log_every);
    const long long log_every = cfg.log_every > 0 ? cfg.log_every : std::max(1LL, cfg.steps / 20);
    const double tokens_per_step = double(cfg.batch) * double(cfg.seq_len);
    const auto t0 = clock::now() - std::chrono::duration_cast<clock::duration>(
                                       std::chrono::duration<double>(tally.elapsed_seconds));
    const long long tail_from = cfg.steps - std::max(1LL, cfg.steps / 10);
    auto checkpoint = [&] {
      tally.elapsed_seconds = std::chrono::duration<double>(clock::now() - t0).count();
      save_training_state(out / kTrainingStateFile, params, opt, state, config, tally,
                          task->data_files());
    };

    auto eval_row = [&](long long step, SelectionTally* selection = nullptr) {
      const EvalResult r = evaluate(model, *task, selection);
      const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
      rows.push_back({step, "val", r.loss, r.accuracy,
                      task->reports_bits_per_byte() ? r.bits_per_byte() : NAN, NAN, NAN, NAN,
                      elapsed});
      progress.message(task->reports_bits_per_byte()
                           ? fmt::format("step {}: validation loss {:.4f}, {:.4f} bits/byte", step,
                                         r.loss, r.bits_per_byte())
                           : fmt::format("step {}: validation loss {:.4f}, accuracy {:.4f}", step,
                                         r.loss, r.accuracy));
      return r;
    };

    for (long long step = tally.step; step < cfg.steps; ++step) {
      const auto ts = clock::now();
      const Batch batch = task->train_batch(static_cast<std::uint64_t>(step), cfg.batch);
      if (task->carries_state() && task->starts_streams(std::uint64_t(step))) state.reset();
      const double lr = warmup_cosine_lr(step, cfg.steps, warmup, cfg.lr);
      const StepResult r =
          train_step(model, opt, batch,
                     {.training = true, .seed = cfg.seed, .step = static_cast<std::uint64_t>(step)},
                     task->carries_state() ? &state : nullptr, trainable, cfg.clip, lr);
      const double dt = std::chrono::duration<double>(clock::now() - ts).count();
      tally.train_seconds += dt;
      tally.add_step(step, r.loss, r.accuracy, r.grad_norm, tokens_per_step / std::max(dt, 1e-9),
                     tail_from);
      progress.update(step, r.loss, tally.smoothed_tps);
      if ((step + 1) % log_every == 0 || step + 1 == cfg.steps)
        rows.push_back(tally.close_interval(
            step + 1, task->reports_bits_per_byte() ? task->bytes_per_label(false) : 0, lr,
            std::chrono::duration<double>(clock::now() - t0).count()));
      if (cfg.eval_every > 0 && (step + 1) % cfg.eval_every == 0 && step + 1 < cfg.steps)
        eval_row(step + 1);
      tally.step = step + 1;
      if (cfg.checkpoint_every > 0 && (step + 1) % cfg.checkpoint_every == 0) checkpoint();
    }
    if (cfg.checkpoint_every > 0 && tally.step % cfg.checkpoint_every != 0)
      checkpoint();  // the end of training, whatever the interval
    progress.finish();
    SelectionTally selection;
    const EvalResult val = eval_row(cfg.steps, &selection);
    progress.finish();
    const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
    const double train_tps = tokens_per_step * double(cfg.steps) / tally.train_seconds;

    const bool bpb = task->reports_bits_per_byte();
    nlohmann::json result = run_info;
    const double train_loss_tail = tally.train_loss_tail, train_acc_tail = tally.train_acc_tail;
    const long long tail_n = tally.tail_n;
    result["train"] = {{"loss", train_loss_tail / double(tail_n)},
                       {"accuracy", train_acc_tail / double(tail_n)},
                       {"steps_averaged", tail_n}};
    result["validation"] = {
        {"loss", val.loss}, {"accuracy", val.accuracy}, {"labelled", val.labelled}};
    if (!val.groups.empty()) result["validation"]["groups"] = groups_json(val.groups);
    const double train_bits = train_loss_tail / double(tail_n) / std::log(2.0);
    if (bpb) {
      result["train"]["bits_per_byte"] = train_bits / task->bytes_per_label(false);
      result["validation"]["bits_per_byte"] = val.bits_per_byte();
    }
    if (!cfg.tokenizer.empty()) {
      result["train"]["bits_per_token"] = train_bits;
      result["validation"]["bits_per_token"] = val.bits_per_token();
    }
    index_t state_floats = 0;
    {
      const auto one = model.initial_state(1);
      for (const auto& t : one.mixer) state_floats += t.numel();
      for (const auto& t : one.ffn) state_floats += t.numel();
    }
    result["views"] = views_json(model.layer_views(), selection, state_floats);
    const nlohmann::json throughput = {{"train_tokens_per_s", train_tps},
                                       {"train_seconds", tally.train_seconds},
                                       {"elapsed_seconds", elapsed},
                                       {"threads", omp_get_max_threads()}};
    // The outputs land together, result.json last: a folder with a result has the
    // model and metrics that go with it, and a failure part way changes none of them.
    StagedFiles outputs;
    const std::vector<std::uint8_t> model_bytes =
        checkpoint_bytes(params, config, cfg.steps, task->data_files());
    outputs.stage((out / kModelFile).string(), model_bytes.data(), model_bytes.size());
    outputs.stage((out / kMetricsFile).string(), metrics_csv(rows));
    outputs.stage((out / kThroughputFile).string(), throughput.dump(2) + "\n");
    outputs.stage((out / kResultFile).string(), result.dump(2) + "\n");
    outputs.commit();

    fmt::print(
        "parameters   {} total; perspectives add {} ({:.3f}% of the {} base); trained {} "
        "({:.3f}%)\n",
        counts.total, counts.perspective, counts.perspective_percent(), counts.base, counts.trained,
        counts.trained_percent());
    const std::string unit = bpb ? "bits/byte" : "accuracy";
    const double train_metric =
        bpb ? train_bits / task->bytes_per_label(false) : train_acc_tail / double(tail_n);
    fmt::print("train        loss {:.4f}  {} {:.4f}  (mean of the last {} steps)\n",
               train_loss_tail / double(tail_n), unit, train_metric, tail_n);
    fmt::print("validation   loss {:.4f}  {} {:.4f}  ({} {})\n", val.loss, unit,
               bpb ? val.bits_per_byte() : val.accuracy, val.labelled,
               !bpb                    ? "queries"
               : cfg.tokenizer.empty() ? "bytes"
                                       : "tokens");
    for (const GroupAccuracy& g : val.groups)
      fmt::print("  {:<10} accuracy {:.4f}  ({} queries)\n", g.name, g.accuracy(), g.labelled);
    fmt::print("throughput   {:.0f} tokens/s training ({} steps in {}, {} total)\n", train_tps,
               cfg.steps, format_duration(tally.train_seconds), format_duration(elapsed));
    fmt::print(
        "wrote        {}/{{config.json, metrics.csv, model.safetensors, result.json, "
        "throughput.json}}\n",
        out.string());
    return result;
  } catch (const std::exception& e) {
    mark_run_failed(out, error_message(e), tally.step);
    throw;
  }
}

}  // namespace

StepResult train_step(AnyModel<float>& model, AdamW<float>& opt, const Batch& batch,
                      const StepContext& ctx, ModelState<float>* state,
                      const std::vector<bool>& trainable, double clip, double lr) {
  ParamStore<float>& params = model.params();
  params.zero_grad();
  const CrossEntropyStats st =
      model.forward(batch.tokens.data(), batch.targets.data(), batch.T, batch.B, ctx, state);
  const double loss = st.mean_loss();
  MTP_CHECK(std::isfinite(loss), "step {}: the loss is {}; stopping", ctx.step + 1, loss);
  model.backward();
  zero_frozen_grads(params, trainable);
  const double norm = grad_global_norm(params);
  MTP_CHECK(std::isfinite(norm), "step {}: the gradient of '{}' is not finite; stopping",
            ctx.step + 1, first_nonfinite_grad(params));
  clip_grad_global_norm(params, norm, clip);
  opt.step(params, lr, trainable);
  return {loss, st.accuracy(), norm};
}

nlohmann::json groups_json(const std::vector<GroupAccuracy>& groups) {
  nlohmann::json j = nlohmann::json::array();
  for (const GroupAccuracy& g : groups)
    j.push_back({{"name", g.name}, {"accuracy", g.accuracy()}, {"labelled", g.labelled}});
  return j;
}

namespace {
// The q-quantile of sorted values, linearly interpolated between order statistics.
double quantile_of_sorted(const std::vector<double>& v, double q) {
  const double at = q * double(v.size() - 1);
  const size_t lo = size_t(at);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (at - double(lo)) * (v[hi] - v[lo]);
}
// JSON has no infinity: a channel that keeps everything has no finite time scale.
nlohmann::json finite_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nullptr;
}
}  // namespace

nlohmann::json views_json(const std::vector<LayerViews>& layers, const SelectionTally& selection,
                          index_t state_floats) {
  nlohmann::json out_layers = nlohmann::json::array();
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerViews& v = layers[l];
    nlohmann::json layer = {{"decay_mean", nlohmann::json::array()}};
    if (v.retention) layer["time_scale_quartiles"] = nlohmann::json::array();
    for (int k = 0; k < v.perspectives; ++k) {
      const auto row = v.decay.begin() + std::ptrdiff_t(k) * v.width;
      double sum = 0;
      std::vector<double> scales;
      for (index_t c = 0; c < v.width; ++c) {
        sum += row[c];
        if (v.retention) scales.push_back(1.0 / (1.0 - v.retention(row[c])));
      }
      layer["decay_mean"].push_back(sum / double(v.width));
      if (!v.retention) continue;
      std::sort(scales.begin(), scales.end());
      layer["time_scale_quartiles"].push_back({finite_or_null(quantile_of_sorted(scales, 0.25)),
                                               finite_or_null(quantile_of_sorted(scales, 0.5)),
                                               finite_or_null(quantile_of_sorted(scales, 0.75))});
    }
    if (selection.rows > 0 && l < selection.sums.size()) {
      nlohmann::json mean = nlohmann::json::array();
      for (double s : selection.sums[l]) mean.push_back(s / double(selection.rows));
      layer["selection_mean"] = mean;
    }
    out_layers.push_back(std::move(layer));
  }
  return {{"state_floats", state_floats}, {"layers", out_layers}};
}

double corpus_bytes(const TrainConfig& c) {
  std::error_code ec;
  if (c.data.empty() || !std::filesystem::is_regular_file(c.data, ec)) return 0;
  const auto size = std::filesystem::file_size(c.data, ec);
  return ec ? 0 : double(size);
}

void set_threads(int threads) {
  omp_set_num_threads(threads > 0 ? threads : omp_get_num_procs());
}

nlohmann::json run_training(const TrainConfig& cfg, bool overwrite) {
  validate(cfg);
  set_threads(cfg.threads);
  return train(cfg, RunStart{.resume = false, .overwrite = overwrite});
}

void validate_stored(const TrainConfig& c, const std::string& where) {
  // A converted checkpoint (scripts/convert_rwkv4.py) is a text model that records no
  // corpus: eval --data or --benchmark gives it text.
  TrainConfig check = c;
  if (check.task == "text" && check.data.empty()) check.data = "(none)";
  try {
    validate(check);
  } catch (const UsageError& e) {
    fail("{}: its stored configuration is invalid: {}", where, e.what());
  }
}

nlohmann::json resume_training(const std::string& dir, int threads) {
  if (dir.empty()) usage_fail("--resume is empty; it needs a run's folder");
  const std::filesystem::path folder(dir);
  std::error_code ec;
  MTP_CHECK(std::filesystem::is_directory(folder, ec), "--resume {}: not a folder", dir);
  // The lock comes first: what the folder holds is read only once no one else writes it.
  FolderLock lock = FolderLock::take(folder, "--resume " + dir);
  const std::string config_path = (folder / kConfigFile).string();
  const nlohmann::json j = read_json_file(config_path);
  TrainConfig cfg = train_config_from_json(json_member(j, "config", config_path), config_path);
  // Every setting is the run's own; threads change speed, and the summation order, so
  // the same count as before reproduces the uninterrupted run bit for bit.
  if (threads > 0) cfg.threads = threads;
  cfg.out = dir;
  MTP_CHECK(std::filesystem::exists(folder / kTrainingStateFile, ec),
            "--resume {}: no {} to resume from (was the run started with --checkpoint-every?)", dir,
            kTrainingStateFile);
  validate_stored(cfg, config_path);
  remove_stale_temporaries(dir, run_file_names(), /*all_writers_gone=*/true);
  set_threads(cfg.threads);
  return train(cfg, RunStart{.resume = true});
}

std::unique_ptr<AnyModel<float>> load_checkpoint_model(const Checkpoint& ck) {
  const MixerEntry& mixer = registry().mixer(ck.config.cell, ck.config.aggregator);
  // The vocabulary comes from the task (bytes, or the tokenizer): name a mismatch as one.
  const index_t vocab = task_vocab(ck.config);
  if (ck.config.task == "text" && ck.file.has("emb.weight") &&
      !ck.file.at("emb.weight").shape.empty() && ck.file.at("emb.weight").shape[0] != vocab) {
    const index_t stored = ck.file.at("emb.weight").shape[0];
    if (ck.config.tokenizer.empty())
      fail(
          "{}: its embedding has {} rows but no tokenizer is recorded, so its vocabulary "
          "would be the 256 bytes: pass --tokenizer FILE (the one it was trained or converted "
          "with)",
          ck.path, stored);
    const bool trained_on_bytes =
        stored == 256 && !ck.trained_on.empty() &&
        std::none_of(ck.trained_on.begin(), ck.trained_on.end(),
                     [](const DataFile& f) { return f.flag == "--tokenizer"; });
    if (trained_on_bytes)
      fail(
          "{}: it was trained on bytes (256 rows); the tokenizer {} has {} tokens: leave out "
          "--tokenizer",
          ck.path, ck.config.tokenizer, vocab);
    fail(
        "{}: its embedding has {} rows, the tokenizer {} has {} tokens: pass --tokenizer FILE "
        "with the model's own",
        ck.path, stored, ck.config.tokenizer, vocab);
  }
  check_memory(mixer.memory(ck.config, vocab, corpus_bytes(ck.config), false),
               "rebuilding the model of " + ck.path);
  std::unique_ptr<AnyModel<float>> model = mixer.model(ck.config, vocab);
  load_parameters(ck.file, ck.path, model->params());
  return model;
}

namespace {

// The model's logits on the task's first validation batch from a zero state: tokens
// (T,B) I32 and logits (T,B,V) F32, for comparing the model with another implementation
// of it (the PyTorch bridge's loader).
void write_first_batch_logits(AnyModel<float>& model, const Task& task, const std::string& path) {
  MTP_CHECK(!task.validation().empty(), "--logits: the task has no validation batch");
  const Batch& b = task.validation().front();
  model.forward(b.tokens.data(), b.targets.data(), b.T, b.B, StepContext{});
  const CView<float> logits = model.logits();
  SafeTensors out;
  out.put_i32("tokens", {b.T, b.B}, b.tokens.data());
  out.put("logits", logits.shape.dims(), logits.data);
  out.save(path, WriteOptions::user_named());
}

}  // namespace

Checkpoint read_checkpoint(const std::string& path) {
  Checkpoint ck{path, SafeTensors::load(path), {}, {}};
  ck.config = train_config_from_json(checkpoint_config(ck.file, path), path);
  validate_stored(ck.config, path);
  ck.trained_on = checkpoint_data_files(ck.file, path);
  return ck;
}

namespace {

// A path the checkpoint names must be there from here.
void check_recorded_path(const Checkpoint& ck, const char* flag, const std::string& path) {
  std::error_code ec;
  if (path.empty() || std::filesystem::exists(path, ec)) return;
  const bool relative = std::filesystem::path(path).is_relative();
  usage_fail("{} records {} {}, which is not there from here{}; pass {} FILE", ck.path, flag, path,
             relative ? " (a path relative to the folder training ran in?)" : "", flag);
}

}  // namespace

void override_tokenizer(Checkpoint& ck, const std::string& tokenizer) {
  if (tokenizer.empty()) return check_recorded_path(ck, "--tokenizer", ck.config.tokenizer);
  if (ck.config.task != "text")
    usage_fail("--tokenizer applies to text checkpoints; this one was trained on {}",
               ck.config.task);
  ck.config.tokenizer = tokenizer;
}

void check_trained_on(const Checkpoint& ck, const std::vector<DataFile>& now,
                      const std::vector<std::string>& given) {
  for (const DataFile& f : now) {
    if (std::find(given.begin(), given.end(), f.flag) != given.end()) continue;
    for (const DataFile& then : ck.trained_on)
      if (then.flag == f.flag && then.path == f.path && then.sha256 != f.sha256)
        fail(
            "{} was trained with {} {} of {} bytes, sha256 {}...; that file is now {} bytes, "
            "sha256 {}...: it changed since training, so the model would not be read with its "
            "own {} (pass {} FILE to use this or another file deliberately)",
            ck.path, f.flag, f.path, then.bytes, then.sha256.substr(0, 12), f.bytes,
            f.sha256.substr(0, 12), f.flag == "--tokenizer" ? "tokens" : "data", f.flag);
  }
}

std::unique_ptr<Tokenizer> checkpoint_tokenizer(Checkpoint& ck, const std::string& tokenizer) {
  override_tokenizer(ck, tokenizer);
  std::unique_ptr<Tokenizer> tok = load_tokenizer(ck.config.tokenizer);
  if (!ck.config.tokenizer.empty() && tokenizer.empty()) {
    const nlohmann::json d = tok->describe();
    check_trained_on(ck,
                     {{"--tokenizer", ck.config.tokenizer, d.at("bytes").get<std::uint64_t>(),
                       d.at("sha256").get<std::string>()}},
                     {});
  }
  return tok;
}

nlohmann::json run_evaluation(const std::string& checkpoint, const std::string& data,
                              const std::string& tokenizer, int threads,
                              const std::string& logits_path) {
  set_threads(threads);
  Checkpoint ck = read_checkpoint(checkpoint);
  override_tokenizer(ck, tokenizer);
  if (!data.empty()) {
    if (ck.config.task != "text")
      usage_fail("--data applies to text checkpoints; this one was trained on {}", ck.config.task);
    ck.config.data = data;
  }
  if (ck.config.task == "text" && ck.config.data.empty())
    usage_fail("{} records no corpus (a converted model): give --data FILE, or --benchmark",
               checkpoint);
  if (data.empty()) check_recorded_path(ck, "--data", ck.config.data);
  const std::unique_ptr<Task> task = make_task(ck.config);
  std::vector<std::string> given;
  if (!data.empty()) given.push_back("--data");
  if (!tokenizer.empty()) given.push_back("--tokenizer");
  check_trained_on(ck, task->data_files(), given);
  const EvalResult r = with_checkpoint_model(ck, [&](auto& model) {
    EvalResult result = evaluate(model, *task);
    if (!logits_path.empty()) write_first_batch_logits(model, *task, logits_path);
    return result;
  });
  nlohmann::json j = {{"checkpoint", checkpoint},
                      {"task", task->describe()},
                      {"loss", r.loss},
                      {"accuracy", r.accuracy},
                      {"labelled", r.labelled}};
  if (!r.groups.empty()) j["groups"] = groups_json(r.groups);
  if (task->reports_bits_per_byte()) j["bits_per_byte"] = r.bits_per_byte();
  if (!ck.config.tokenizer.empty()) j["bits_per_token"] = r.bits_per_token();
  return j;
}

}  // namespace mtp::exp
