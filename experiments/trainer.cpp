#include "mtp/experiments/trainer.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <omp.h>

#include <chrono>
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

struct MetricsRow {
  long long step;
  std::string split;
  double loss, accuracy, bpb, lr, grad_norm, tokens_per_s, elapsed_s;
};

// A double for JSON, which has no NaN: null stands for it.
nlohmann::json number_or_null(double v) {
  return std::isnan(v) ? nlohmann::json() : nlohmann::json(v);
}
double number_or_nan(const nlohmann::json& j) {
  return j.is_null() ? NAN : j.get<double>();
}

// Everything a run has counted so far besides the tensors: the metrics rows and the
// running sums behind the next ones. With the parameters, the optimiser moments and the
// carried state it is all a resumed run needs to continue as if never stopped: the
// batches and the selector noise are pure functions of (seed, step).
struct TrainTally {
  long long step = 0;  // steps done
  std::vector<MetricsRow> rows;
  double smoothed_tps = 0, interval_loss = 0, interval_acc = 0, last_norm = 0;
  long long interval_n = 0;
  double train_loss_tail = 0, train_acc_tail = 0;
  long long tail_n = 0;
  double train_seconds = 0, elapsed_seconds = 0;

  nlohmann::json to_json() const {
    nlohmann::json r = nlohmann::json::array();
    for (const MetricsRow& m : rows)
      r.push_back({m.step, m.split, number_or_null(m.loss), number_or_null(m.accuracy),
                   number_or_null(m.bpb), number_or_null(m.lr), number_or_null(m.grad_norm),
                   number_or_null(m.tokens_per_s), number_or_null(m.elapsed_s)});
    return {{"step", step},
            {"rows", r},
            {"smoothed_tps", smoothed_tps},
            {"interval_loss", interval_loss},
            {"interval_acc", interval_acc},
            {"last_norm", last_norm},
            {"interval_n", interval_n},
            {"train_loss_tail", train_loss_tail},
            {"train_acc_tail", train_acc_tail},
            {"tail_n", tail_n},
            {"train_seconds", train_seconds},
            {"elapsed_seconds", elapsed_seconds}};
  }
  static TrainTally from_json(const nlohmann::json& j) {
    TrainTally t;
    t.step = j.at("step").get<long long>();
    for (const nlohmann::json& m : j.at("rows"))
      t.rows.push_back({m.at(0).get<long long>(), m.at(1).get<std::string>(),
                        number_or_nan(m.at(2)), number_or_nan(m.at(3)), number_or_nan(m.at(4)),
                        number_or_nan(m.at(5)), number_or_nan(m.at(6)), number_or_nan(m.at(7)),
                        number_or_nan(m.at(8))});
    t.smoothed_tps = j.at("smoothed_tps").get<double>();
    t.interval_loss = j.at("interval_loss").get<double>();
    t.interval_acc = j.at("interval_acc").get<double>();
    t.last_norm = j.at("last_norm").get<double>();
    t.interval_n = j.at("interval_n").get<long long>();
    t.train_loss_tail = j.at("train_loss_tail").get<double>();
    t.train_acc_tail = j.at("train_acc_tail").get<double>();
    t.tail_n = j.at("tail_n").get<long long>();
    t.train_seconds = j.at("train_seconds").get<double>();
    t.elapsed_seconds = j.at("elapsed_seconds").get<double>();
    return t;
  }
};

inline constexpr const char* kTrainingStateFormat = "mtp-training-state-1";

nlohmann::json data_files_json(const std::vector<DataFile>& files) {
  nlohmann::json j = nlohmann::json::array();
  for (const DataFile& f : files)
    j.push_back({{"flag", f.flag}, {"path", f.path}, {"bytes", f.bytes}, {"sha256", f.sha256}});
  return j;
}

// A resumed run must see the data the run started on: same size, same hash, file by
// file (a corpus edited or replaced in between would silently change the run).
void check_same_data(const nlohmann::json& recorded, const std::vector<DataFile>& now,
                     const std::string& where) {
  const std::string field = where + ": data_files";
  const auto count = recorded.is_array() ? recorded.size() : 0;
  MTP_CHECK(recorded.is_array() && count == now.size(),
            "{}: records {} data files, the run reads {}", where, count, now.size());
  for (size_t i = 0; i < now.size(); ++i) {
    const std::string at = field + "[" + std::to_string(i) + "]";
    const auto bytes = json_field<std::uint64_t>(recorded[i], "bytes", at);
    const auto sha = json_field<std::string>(recorded[i], "sha256", at);
    if (bytes != now[i].bytes || sha != now[i].sha256)
      fail(
          "{} {} changed since the run started ({} bytes, sha256 {}... then; {} bytes, sha256 "
          "{}... now): resuming needs the same data",
          now[i].flag, now[i].path, bytes, sha.substr(0, 12), now[i].bytes,
          now[i].sha256.substr(0, 12));
  }
}

// The training state: parameters under their names, the AdamW moments under
// optimizer.m.<name> / optimizer.v.<name>, the carried stream state under
// stream.<group>.<i>, and the configuration and tally in the metadata. Written
// atomically (temporary file, fsync, rename): a kill leaves the previous one intact.
void save_training_state(const std::filesystem::path& path, const ParamStore<float>& params,
                         AdamW<float>& opt, const ModelState<float>& state,
                         const nlohmann::json& config, const TrainTally& tally,
                         const std::vector<DataFile>& data) {
  SafeTensors out;
  for (const ParamInfo& p : params.infos()) {
    out.put(p.name, p.shape.dims(), params.values() + p.offset);
    out.put("optimizer.m." + p.name, p.shape.dims(), opt.first_moment().data() + p.offset);
    out.put("optimizer.v." + p.name, p.shape.dims(), opt.second_moment().data() + p.offset);
  }
  for (const auto& [group, tensors] : {std::pair{"mixer", &state.mixer}, {"ffn", &state.ffn}})
    for (size_t i = 0; i < tensors->size(); ++i)
      if ((*tensors)[i].numel() > 0)
        out.put(fmt::format("stream.{}.{}", group, i), (*tensors)[i].shape().dims(),
                (*tensors)[i].data());
  out.metadata["format"] = kTrainingStateFormat;
  out.metadata["config"] = config.dump();
  out.metadata["optimizer_steps"] = std::to_string(opt.steps_taken());
  out.metadata["tally"] = tally.to_json().dump();
  out.metadata["data_files"] = data_files_json(data).dump();
  out.save(path.string());
}

// Restores what save_training_state wrote into a model built from the same
// configuration; anything missing or of another shape is an error naming the file.
TrainTally load_training_state(const std::filesystem::path& path, ParamStore<float>& params,
                               AdamW<float>& opt, ModelState<float>& state,
                               const nlohmann::json& config, const std::vector<DataFile>& data) {
  const std::string where = path.string();
  const SafeTensors file = SafeTensors::load(where);
  auto meta = [&](const char* key) {
    auto it = file.metadata.find(key);
    MTP_CHECK(it != file.metadata.end(), "{}: no '{}' in its metadata", where, key);
    return it->second;
  };
  MTP_CHECK(meta("format") == kTrainingStateFormat, "{}: not an mtp training state", where);
  // The settings must be the run's; the thread count and the folder may differ.
  const nlohmann::json stored = run_settings(nlohmann::json::parse(meta("config"), nullptr, false));
  const nlohmann::json wanted = run_settings(config);
  if (stored != wanted) {
    std::vector<std::string> differ;
    for (const auto& [key, value] : wanted.items())
      if (!stored.is_object() || !stored.contains(key) || stored[key] != value)
        differ.push_back(key);
    fail(
        "{}: written by a run with other settings than {} ({}); restore them, or start over "
        "with --overwrite",
        where, (path.parent_path() / kConfigFile).string(),
        differ.empty() ? "unreadable" : fmt::format("{}", fmt::join(differ, ", ")));
  }
  // Written before data files were recorded: nothing to compare.
  if (file.metadata.count("data_files"))
    check_same_data(parse_json(meta("data_files"), where + ": data_files"), data, where);
  auto restore = [&](const std::string& name, const Shape& shape, float* to) {
    MTP_CHECK(file.has(name), "{}: missing tensor '{}'", where, name);
    const StoredTensor& t = file.at(name);
    MTP_CHECK(t.shape == shape.dims(), "{}: tensor '{}' has shape {}, expected {}", where, name,
              shape_str(t.shape), shape.str());
    MTP_CHECK(t.dtype == DType::F32, "{}: tensor '{}' is {}, expected F32", where, name,
              dtype_name(t.dtype));
    const std::vector<float> v = t.to<float>(where + ": " + name);
    std::copy(v.begin(), v.end(), to);
  };
  for (const ParamInfo& p : params.infos()) {
    restore(p.name, p.shape, params.values() + p.offset);
    restore("optimizer.m." + p.name, p.shape, opt.first_moment().data() + p.offset);
    restore("optimizer.v." + p.name, p.shape, opt.second_moment().data() + p.offset);
  }
  params.mark_all_set();
  for (const auto& [group, tensors] : {std::pair{"mixer", &state.mixer}, {"ffn", &state.ffn}})
    for (size_t i = 0; i < tensors->size(); ++i)
      if ((*tensors)[i].numel() > 0)
        restore(fmt::format("stream.{}.{}", group, i), (*tensors)[i].shape(), (*tensors)[i].data());
  TrainTally tally;
  const auto optimizer_steps =
      json_to<long long>(parse_json(meta("optimizer_steps"), where + ": optimizer_steps"),
                         where + ": optimizer_steps");
  try {
    tally = TrainTally::from_json(parse_json(meta("tally"), where + ": tally"));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed training progress in its metadata ({})", where, json_error_text(e));
  }
  const auto steps = json_field<long long>(config, "steps", where + ": config");
  MTP_CHECK(tally.step >= 1 && tally.step <= steps && optimizer_steps == tally.step,
            "{}: inconsistent progress (step {}, {} optimizer steps, of {})", where, tally.step,
            optimizer_steps, steps);
  opt.set_steps_taken(optimizer_steps);
  return tally;
}

std::string metrics_csv(const std::vector<MetricsRow>& rows) {
  std::string s = "step,split,loss,accuracy,bpb,lr,grad_norm,tokens_per_s,elapsed_s\n";
  auto num = [](double v) { return std::isnan(v) ? std::string() : fmt::format("{:.6g}", v); };
  for (const MetricsRow& r : rows)
    s +=
        fmt::format("{},{},{},{},{},{},{},{},{}\n", r.step, r.split, num(r.loss), num(r.accuracy),
                    num(r.bpb), num(r.lr), num(r.grad_norm), num(r.tokens_per_s), num(r.elapsed_s));
  return s;
}

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

// --init-from: every base tensor must come from the file; perspective decays grow from
// its decays (or RWKV's time_decay), other perspective tensors of a new shape start fresh.
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
  return fmt::format("{}: {} tensors loaded, {} decays grown from it, {} new", cfg.init_from,
                     r.loaded.size(), r.expanded.size(), r.missing.size() + r.fresh.size()) +
         (r.unused.empty() ? "" : fmt::format(", {} unused", r.unused.size()));
}

std::string default_out_dir(const TrainConfig& c) {
  return fmt::format("runs/{}-{}-k{}-{}-s{}", c.task, c.cell, c.perspectives, c.aggregator, c.seed);
}

std::string describe_task(const TrainConfig& c) {
  if (c.task == "mqar")
    return fmt::format("mqar: vocab {}, {} key-value pairs, T={}", c.vocab, c.pairs, c.seq_len);
  if (c.task == "lag-recall")
    return fmt::format("lag-recall: {} data tokens, lags {}, T={}", c.vocab, fmt::join(c.lags, ","),
                       c.seq_len);
  if (c.task == "selective-copy")
    return fmt::format("selective-copy: {} data tokens, copy {}, T={}", c.vocab, c.copy_tokens,
                       c.seq_len);
  return fmt::format("text: {} (bytes), T={}{}", c.data, c.seq_len,
                     c.carry_state ? ", state carried across chunks" : "");
}

void print_header(const TrainConfig& c, const MixerEntry& mixer, const ParamCounts& counts,
                  const MemoryEstimate& memory) {
  std::string layer =
      fmt::format("{}, K={} perspectives, {} aggregator", c.cell, c.perspectives, c.aggregator);
  if (c.aggregator == "learned") {
    layer += c.noise_mode == "learned" ? " (learned noise" : fmt::format(" (noise {:g}", c.noise);
    layer += c.top_k > 0 ? fmt::format(", top-{})", c.top_k) : ")";
  }
  if (c.perspectives > 1) layer += fmt::format(", decay spread {:g}", c.decay_spread);
  fmt::print("mtp-exp      {}\n", layer);
  fmt::print("model        {} blocks, width {}{}; {} parameters\n", c.layers, c.width,
             c.ffn ? ", " + mixer.ffn : std::string(", no FFN"), counts.total);
  fmt::print("task         {}\n", describe_task(c));
  fmt::print("training     {} steps of {} sequences, AdamW lr {:g}, {} threads, ~{} of memory\n",
             c.steps, c.batch, c.lr, omp_get_max_threads(), format_bytes(memory.total()));
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
  const ParamCounts counts = count_params(params, trainable);
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

    auto eval_row = [&](long long step) {
      const EvalResult r = evaluate(model, *task);
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
      params.zero_grad();
      const StepContext ctx{
          .training = true, .seed = cfg.seed, .step = static_cast<std::uint64_t>(step)};
      if (task->carries_state() && task->starts_streams(std::uint64_t(step))) state.reset();
      const CrossEntropyStats st =
          model.forward(batch.tokens.data(), batch.targets.data(), batch.T, batch.B, ctx,
                        task->carries_state() ? &state : nullptr);
      const double loss = st.mean_loss();
      MTP_CHECK(std::isfinite(loss), "step {}: the loss is {}; stopping", step + 1, loss);
      model.backward();
      zero_frozen_grads(params, trainable);
      const double norm = grad_global_norm(params);
      MTP_CHECK(std::isfinite(norm), "step {}: the gradient of '{}' is not finite; stopping",
                step + 1, first_nonfinite_grad(params));
      clip_grad_global_norm(params, norm, cfg.clip);
      const double lr = warmup_cosine_lr(step, cfg.steps, warmup, cfg.lr);
      opt.step(params, lr, trainable);
      const double dt = std::chrono::duration<double>(clock::now() - ts).count();
      TrainTally& t = tally;
      t.train_seconds += dt;

      const double tps = tokens_per_step / std::max(dt, 1e-9);
      t.smoothed_tps = step == 0 ? tps : 0.9 * t.smoothed_tps + 0.1 * tps;
      t.interval_loss += loss;
      t.interval_acc += st.accuracy();
      ++t.interval_n;
      t.last_norm = norm;
      if (step >= tail_from) {
        t.train_loss_tail += loss;
        t.train_acc_tail += st.accuracy();
        ++t.tail_n;
      }
      progress.update(step, loss, t.smoothed_tps);
      if ((step + 1) % log_every == 0 || step + 1 == cfg.steps) {
        const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
        const double mean_loss = t.interval_loss / double(t.interval_n);
        rows.push_back({step + 1, "train", mean_loss, t.interval_acc / double(t.interval_n),
                        task->reports_bits_per_byte() ? mean_loss / std::log(2.0) : NAN, lr,
                        t.last_norm, t.smoothed_tps, elapsed});
        t.interval_loss = t.interval_acc = 0;
        t.interval_n = 0;
      }
      if (cfg.eval_every > 0 && (step + 1) % cfg.eval_every == 0 && step + 1 < cfg.steps)
        eval_row(step + 1);
      t.step = step + 1;
      if (cfg.checkpoint_every > 0 && (step + 1) % cfg.checkpoint_every == 0) checkpoint();
    }
    if (cfg.checkpoint_every > 0 && tally.step % cfg.checkpoint_every != 0)
      checkpoint();  // the end of training, whatever the interval
    progress.finish();
    const EvalResult val = eval_row(cfg.steps);
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
    if (bpb) {
      result["train"]["bits_per_byte"] = train_loss_tail / double(tail_n) / std::log(2.0);
      result["validation"]["bits_per_byte"] = val.bits_per_byte();
    }
    result["throughput"] = {{"train_tokens_per_s", train_tps},
                            {"train_seconds", tally.train_seconds},
                            {"elapsed_seconds", elapsed},
                            {"threads", omp_get_max_threads()}};
    // The outputs land together, result.json last: a folder with a result has the
    // model and metrics that go with it, and a failure part way changes none of them.
    StagedFiles outputs;
    const std::vector<std::uint8_t> model_bytes = checkpoint_bytes(params, config, cfg.steps);
    outputs.stage((out / kModelFile).string(), model_bytes.data(), model_bytes.size());
    outputs.stage((out / kMetricsFile).string(), metrics_csv(rows));
    outputs.stage((out / kResultFile).string(), result.dump(2) + "\n");
    outputs.commit();

    fmt::print(
        "parameters   {} total; perspectives add {} ({:.3f}% of the {} base); trained {} "
        "({:.3f}%)\n",
        counts.total, counts.perspective, counts.perspective_percent(), counts.base, counts.trained,
        counts.trained_percent());
    const std::string unit = bpb ? "bits/byte" : "accuracy";
    const double train_metric =
        bpb ? train_loss_tail / double(tail_n) / std::log(2.0) : train_acc_tail / double(tail_n);
    fmt::print("train        loss {:.4f}  {} {:.4f}  (mean of the last {} steps)\n",
               train_loss_tail / double(tail_n), unit, train_metric, tail_n);
    fmt::print("validation   loss {:.4f}  {} {:.4f}  ({} {})\n", val.loss, unit,
               bpb ? val.bits_per_byte() : val.accuracy, val.labelled, bpb ? "bytes" : "queries");
    for (const GroupAccuracy& g : val.groups)
      fmt::print("  {:<10} accuracy {:.4f}  ({} queries)\n", g.name, g.accuracy(), g.labelled);
    fmt::print("throughput   {:.0f} tokens/s training ({} steps in {}, {} total)\n", train_tps,
               cfg.steps, format_duration(tally.train_seconds), format_duration(elapsed));
    fmt::print("wrote        {}/{{config.json, metrics.csv, model.safetensors, result.json}}\n",
               out.string());
    return result;
  } catch (const std::exception& e) {
    mark_run_failed(out, error_message(e), tally.step);
    throw;
  }
}

}  // namespace

nlohmann::json groups_json(const std::vector<GroupAccuracy>& groups) {
  nlohmann::json j = nlohmann::json::array();
  for (const GroupAccuracy& g : groups)
    j.push_back({{"name", g.name}, {"accuracy", g.accuracy()}, {"labelled", g.labelled}});
  return j;
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
  try {
    validate(c);
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
  check_memory(mixer.memory(ck.config, task_vocab(ck.config), corpus_bytes(ck.config), false),
               "rebuilding the model of " + ck.path);
  std::unique_ptr<AnyModel<float>> model = mixer.model(ck.config, task_vocab(ck.config));
  load_parameters(ck.file, ck.path, model->params());
  return model;
}

Checkpoint read_checkpoint(const std::string& path) {
  Checkpoint ck{path, SafeTensors::load(path), {}};
  ck.config = train_config_from_json(checkpoint_config(ck.file, path), path);
  validate_stored(ck.config, path);
  return ck;
}

nlohmann::json run_evaluation(const std::string& checkpoint, const std::string& data, int threads) {
  set_threads(threads);
  Checkpoint ck = read_checkpoint(checkpoint);
  if (!data.empty()) {
    if (ck.config.task != "text")
      usage_fail("--data applies to text checkpoints; this one was trained on {}", ck.config.task);
    ck.config.data = data;
  }
  const std::unique_ptr<Task> task = make_task(ck.config);
  const EvalResult r =
      with_checkpoint_model(ck, [&](auto& model) { return evaluate(model, *task); });
  nlohmann::json j = {{"checkpoint", checkpoint},
                      {"task", task->describe()},
                      {"loss", r.loss},
                      {"accuracy", r.accuracy},
                      {"labelled", r.labelled}};
  if (!r.groups.empty()) j["groups"] = groups_json(r.groups);
  if (task->reports_bits_per_byte()) j["bits_per_byte"] = r.bits_per_byte();
  return j;
}

}  // namespace mtp::exp
