#include "mtp/experiments/trainer.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <omp.h>

#include <chrono>
#include <filesystem>

#include "mtp/core/safetensors.hpp"
#include "mtp/experiments/checkpoint.hpp"
#include "mtp/experiments/progress.hpp"

namespace mtp::exp {
namespace {

struct MetricsRow {
  long long step;
  std::string split;
  double loss, accuracy, bpb, lr, grad_norm, tokens_per_s, elapsed_s;
};

std::string metrics_csv(const std::vector<MetricsRow>& rows) {
  std::string s = "step,split,loss,accuracy,bpb,lr,grad_norm,tokens_per_s,elapsed_s\n";
  auto num = [](double v) { return std::isnan(v) ? std::string() : fmt::format("{:.6g}", v); };
  for (const MetricsRow& r : rows)
    s +=
        fmt::format("{},{},{},{},{},{},{},{},{}\n", r.step, r.split, num(r.loss), num(r.accuracy),
                    num(r.bpb), num(r.lr), num(r.grad_norm), num(r.tokens_per_s), num(r.elapsed_s));
  return s;
}

void write_text(const std::filesystem::path& p, const std::string& s) {
  write_file_atomic(p.string(), s.data(), s.size());
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
  SafeTensors file;
  try {
    file = SafeTensors::load(cfg.init_from);
  } catch (const Error& e) {
    fail("--init-from {}", e.what());
  }
  const StateDictReport r =
      load_state_dict(file, cfg.init_from, params, cfg.decay_spread, /*fresh_perspectives=*/true);
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

void print_header(const TrainConfig& c, const ParamCounts& counts) {
  std::string layer =
      fmt::format("{}, K={} perspectives, {} aggregator", c.cell, c.perspectives, c.aggregator);
  if (c.aggregator == "learned") {
    layer += c.noise_mode == "learned" ? " (learned noise" : fmt::format(" (noise {:g}", c.noise);
    layer += c.top_k > 0 ? fmt::format(", top-{})", c.top_k) : ")";
  }
  if (c.perspectives > 1) layer += fmt::format(", decay spread {:g}", c.decay_spread);
  fmt::print("mtp-exp      {}\n", layer);
  fmt::print("model        {} blocks, width {}{}; {} parameters\n", c.layers, c.width,
             !c.ffn             ? ", no FFN"
             : c.cell == "rwkv" ? ", channel mix"
                                : ", MLP",
             counts.total);
  fmt::print("task         {}\n", describe_task(c));
  fmt::print("training     {} steps of {} sequences, AdamW lr {:g}, {} threads\n", c.steps, c.batch,
             c.lr, omp_get_max_threads());
  std::fflush(stdout);
}

template <class Mixer>
nlohmann::json train(const TrainConfig& cfg) {
  using clock = std::chrono::steady_clock;
  const std::unique_ptr<Task> task = make_task(cfg);
  const std::filesystem::path out = cfg.out.empty() ? default_out_dir(cfg) : cfg.out;
  ModelFor<Mixer> model = build_model<Mixer>(cfg, task->vocab());
  model.init(cfg.seed);
  ParamStore<float>& params = model.params();
  std::string init_summary;
  if (!cfg.init_from.empty()) init_summary = init_from_state_dict(cfg, params);
  const std::vector<bool> trainable = trainable_mask(params, cfg.freeze);
  const ParamCounts counts = count_params(params, trainable);
  AdamW<float> opt(params, AdamWConfig{.weight_decay = cfg.weight_decay});
  const auto warmup = static_cast<long long>(cfg.warmup * double(cfg.steps));

  // The output folder appears only once the run is known to start.
  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  MTP_CHECK(!ec, "--out {}: cannot create the folder ({})", out.string(), ec.message());
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
                               {"trained_percent", counts.trained_percent()}}}};
  write_text(out / "config.json", run_info.dump(2) + "\n");

  print_header(cfg, counts);
  if (!init_summary.empty()) fmt::print("init from    {}\n", init_summary);
  if (!cfg.freeze.empty())
    fmt::print("frozen       {}: training {} of {} parameters ({:.3f}%)\n", cfg.freeze,
               counts.trained, counts.total, counts.trained_percent());
  std::fflush(stdout);

  std::vector<MetricsRow> rows;
  Progress progress(cfg.steps, cfg.log_every);
  const long long log_every = cfg.log_every > 0 ? cfg.log_every : std::max(1LL, cfg.steps / 20);
  const double tokens_per_step = double(cfg.batch) * double(cfg.seq_len);
  const auto t0 = clock::now();
  double smoothed_tps = 0, interval_loss = 0, interval_acc = 0, last_norm = 0;
  long long interval_n = 0;
  double train_loss_tail = 0, train_acc_tail = 0;
  long long tail_n = 0;
  const long long tail_from = cfg.steps - std::max(1LL, cfg.steps / 10);
  double train_seconds = 0;

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

  // Truncated BPTT: the state flows from each step's chunk into the next.
  auto state = model.initial_state(cfg.batch);
  for (long long step = 0; step < cfg.steps; ++step) {
    const auto ts = clock::now();
    const Batch batch = task->train_batch(static_cast<std::uint64_t>(step), cfg.batch);
    params.zero_grad();
    const StepContext ctx{true, cfg.seed, static_cast<std::uint64_t>(step)};
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
    train_seconds += dt;

    const double tps = tokens_per_step / std::max(dt, 1e-9);
    smoothed_tps = step == 0 ? tps : 0.9 * smoothed_tps + 0.1 * tps;
    interval_loss += loss;
    interval_acc += st.accuracy();
    ++interval_n;
    last_norm = norm;
    if (step >= tail_from) {
      train_loss_tail += loss;
      train_acc_tail += st.accuracy();
      ++tail_n;
    }
    progress.update(step, loss, smoothed_tps);
    if ((step + 1) % log_every == 0 || step + 1 == cfg.steps) {
      const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
      const double mean_loss = interval_loss / double(interval_n);
      rows.push_back({step + 1, "train", mean_loss, interval_acc / double(interval_n),
                      task->reports_bits_per_byte() ? mean_loss / std::log(2.0) : NAN, lr,
                      last_norm, smoothed_tps, elapsed});
      interval_loss = interval_acc = 0;
      interval_n = 0;
    }
    if (cfg.eval_every > 0 && (step + 1) % cfg.eval_every == 0 && step + 1 < cfg.steps)
      eval_row(step + 1);
  }
  progress.finish();
  const EvalResult val = eval_row(cfg.steps);
  progress.finish();
  const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
  const double train_tps = tokens_per_step * double(cfg.steps) / train_seconds;

  save_checkpoint((out / "model.safetensors").string(), params, config, cfg.steps);
  write_text(out / "metrics.csv", metrics_csv(rows));

  const bool bpb = task->reports_bits_per_byte();
  nlohmann::json result = run_info;
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
                          {"train_seconds", train_seconds},
                          {"elapsed_seconds", elapsed},
                          {"threads", omp_get_max_threads()}};
  write_text(out / "result.json", result.dump(2) + "\n");

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
             cfg.steps, format_duration(train_seconds), format_duration(elapsed));
  fmt::print("wrote        {}/{{config.json, metrics.csv, model.safetensors, result.json}}\n",
             out.string());
  return result;
}

}  // namespace

nlohmann::json groups_json(const std::vector<GroupAccuracy>& groups) {
  nlohmann::json j = nlohmann::json::array();
  for (const GroupAccuracy& g : groups)
    j.push_back({{"name", g.name}, {"accuracy", g.accuracy()}, {"labelled", g.labelled}});
  return j;
}

void set_threads(int threads) {
  omp_set_num_threads(threads > 0 ? threads : omp_get_num_procs());
}

nlohmann::json run_training(const TrainConfig& cfg) {
  validate(cfg);
  set_threads(cfg.threads);
  return with_mixer<float>(cfg.cell, cfg.aggregator,
                           [&]<class Mixer>() { return train<Mixer>(cfg); });
}

Checkpoint read_checkpoint(const std::string& path) {
  Checkpoint ck{path, SafeTensors::load(path), {}};
  ck.config = train_config_from_json(checkpoint_config(ck.file, path));
  validate(ck.config);
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
