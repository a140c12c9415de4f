#include "mtp/experiments/report.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "mtp/core/error.hpp"
#include "mtp/core/file_io.hpp"
#include "mtp/experiments/hypotheses.hpp"
#include "mtp/experiments/json_file.hpp"
#include "mtp/experiments/process.hpp"
#include "mtp/experiments/report_plots.hpp"
#include "mtp/experiments/report_runs.hpp"
#include "mtp/experiments/run_folder.hpp"
#include "mtp/experiments/stats.hpp"
#include "mtp/experiments/sweep.hpp"

namespace mtp::exp {
namespace fs = std::filesystem;
using namespace reporting;
namespace {

// Settings that never define a configuration: bookkeeping, and the replicate axis.
const std::set<std::string> kNotSettings = {"out", "threads", "log_every", "eval_every", "seed"};
// Settings that only perspectives have: a K = 1 baseline may differ in them.
const std::set<std::string> kPerspectiveOnly = {"aggregator", "noise",          "noise_mode",
                                                "top_k",      "decay_spread",   "fixed_weights",
                                                "combine",    "per_perspective"};
// The order in which settings are shown; the rest follow alphabetically.
const std::vector<std::string> kSettingOrder = {
    "task",       "cell",  "perspectives", "combine", "per_perspective",
    "aggregator", "noise", "noise_mode",   "top_k",   "decay_spread"};

// Appends `sep` (unless `s` is empty and skip_first) and then `field`. (Plain appends:
// GCC 12 misreports `"," + std::string` as an overlapping memcpy, -Wrestrict.)
void append_field(std::string& s, const std::string& field, char sep = ',') {
  s += sep;
  s += field;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace

RunCurves read_run_curves(const std::string& path, bool text) {
  const std::vector<std::uint8_t> bytes =
      read_file_bytes(path, "", std::uint64_t(256) << 20, /*pipes=*/false);
  std::stringstream in(std::string(bytes.begin(), bytes.end()));
  RunCurves curves;
  std::string line;
  std::getline(in, line);
  MTP_CHECK(line.rfind("step,split,loss,accuracy,bpb", 0) == 0,
            "{}: line 1 is not the header of a run's metrics (step,split,loss,accuracy,bpb,...)",
            path);
  auto number = [&](const std::string& cell, const char* what, int n, auto& out) {
    const auto [end, err] = std::from_chars(cell.data(), cell.data() + cell.size(), out);
    MTP_CHECK(err == std::errc() && end == cell.data() + cell.size(),
              "{}: line {}: {} '{}' is not a number", path, n, what, cell);
  };
  for (int n = 2; std::getline(in, line); ++n) {
    std::stringstream ss(line);
    std::string step, split, loss, accuracy, bpb;
    for (std::string* field : {&step, &split, &loss, &accuracy, &bpb})
      std::getline(ss, *field, ',');
    const bool train = split == "train" && !loss.empty();
    // An empty cell is a value that was not finite (metrics_csv): no point of the curve.
    const bool validation = split == "val" && !(text ? bpb : accuracy).empty();
    if (!train && !validation) continue;
    long long s = 0;
    number(step, "step", n, s);
    MTP_CHECK(s >= 0, "{}: line {}: step '{}' is not a whole number", path, n, step);
    double v = 0;
    if (train) {
      number(loss, "loss", n, v);
      curves.train_loss.emplace_back(s, v);
    } else {
      number(text ? bpb : accuracy, text ? "bits per byte" : "accuracy", n, v);
      curves.validation.emplace_back(s, v);
    }
  }
  return curves;
}

namespace {

// A finished run from its folder's status (which holds its parsed result.json).
Run read_run(const fs::path& dir, const RunFolderStatus& status) {
  const std::string result = (dir / kResultFile).string();
  const nlohmann::json& j = status.result;
  Run r;
  r.id = dir.filename().string();
  r.config = json_member(j, "config", result);
  // A program's task flags are settings like any other: one column each.
  if (r.config.contains("task_options") && r.config["task_options"].is_object()) {
    const nlohmann::json own = r.config["task_options"];
    r.config.erase("task_options");
    for (const auto& [k, v] : own.items())
      if (!r.config.contains(k)) r.config[k] = v;
  }
  r.seed = json_field<std::uint64_t>(r.config, "seed", result + ": config");
  const nlohmann::json& v = json_member(j, "validation", result);
  const std::string val = result + ": validation";
  r.loss = json_field<double>(v, "loss", val);
  r.accuracy = json_field<double>(v, "accuracy", val);
  r.text = v.contains("bits_per_byte");
  if (r.text) r.bpb = json_field<double>(v, "bits_per_byte", val);
  if (v.contains("groups")) {
    const nlohmann::json& groups = v["groups"];
    if (!groups.is_array()) fail("{}: 'groups' must be a list", val);
    for (size_t i = 0; i < groups.size(); ++i) {
      const std::string at = val + ": groups[" + std::to_string(i) + "]";
      r.groups.emplace_back(json_field<std::string>(groups[i], "name", at),
                            json_field<double>(groups[i], "accuracy", at));
    }
  }
  const nlohmann::json& p = json_member(j, "parameters", result);
  const std::string par = result + ": parameters";
  r.params_total = json_field<long long>(p, "total", par);
  r.params_perspective = json_field<long long>(p, "perspective", par);
  r.params_trained =
      p.contains("trained") ? json_field<long long>(p, "trained", par) : r.params_total;
  // Speed lives in throughput.json (result.json holds only what a rerun reproduces); runs
  // from before 2026-11-30 have it in result.json.
  std::error_code ec;
  const fs::path speed_file = dir / kThroughputFile;
  if (fs::exists(speed_file, ec) || j.contains("throughput")) {
    const bool own = fs::exists(speed_file, ec);
    const std::string where = own ? speed_file.string() : result + ": throughput";
    const nlohmann::json t = own ? read_json_file(speed_file.string()) : j["throughput"];
    r.tokens_per_s = json_field<double>(t, "train_tokens_per_s", where);
    r.train_seconds = json_field<double>(t, "train_seconds", where);
  }
  if (j.contains("views")) {
    const nlohmann::json& v = json_member(j, "views", result);
    const std::string at = result + ": views";
    r.state_floats = json_field<double>(v, "state_floats", at);
    const nlohmann::json& layers = json_member(v, "layers", at);
    if (!layers.is_array()) fail("{}: 'layers' must be a list", at);
    for (size_t l = 0; l < layers.size(); ++l) {
      const std::string lat = fmt::format("{}: layers[{}]", at, l);
      RunLayerViews lv;
      if (layers[l].contains("time_scale_quartiles"))
        for (const nlohmann::json& q : json_member(layers[l], "time_scale_quartiles", lat)) {
          if (!q.is_array() || q.size() != 3)
            fail("{}: a time scale's quartiles are 3 numbers", lat);
          lv.time_scale_median.push_back(q[1].is_number() ? q[1].get<double>() : INFINITY);
        }
      if (layers[l].contains("selection_mean"))
        lv.selection_mean = json_field<std::vector<double>>(layers[l], "selection_mean", lat);
      r.views.push_back(std::move(lv));
    }
  }
  const fs::path metrics = dir / kMetricsFile;
  if (fs::exists(metrics, ec)) {
    RunCurves curves = read_run_curves(metrics.string(), r.text);
    r.train_curve = std::move(curves.train_loss);
    r.validation_curve = std::move(curves.validation);
  }
  return r;
}

// The settings whose values differ across runs, in display order.
std::vector<std::string> varying_settings(const std::vector<Run>& runs) {
  std::map<std::string, std::set<std::string>> values;
  for (const Run& r : runs)
    for (const auto& [k, v] : r.config.items())
      if (!kNotSettings.count(k)) values[k].insert(v.dump());
  std::vector<std::string> keys;
  for (const std::string& k : kSettingOrder)
    if (values.count(k) && values[k].size() > 1) keys.push_back(k);
  for (const auto& [k, vs] : values)
    if (vs.size() > 1 && std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
  return keys;
}

// Per configuration and layer, what its views settled on (result.json "views").
std::string views_markdown(const std::vector<Configuration>& configs) {
  std::string rows;
  // The mean over seeds of each view's value, as "a / b / c".
  auto per_view = [](const Configuration& c, size_t layer, auto member) {
    std::vector<std::vector<double>> by_k;
    for (const Run* r : c.runs) {
      if (layer >= r->views.size()) continue;
      const std::vector<double>& v = r->views[layer].*member;
      by_k.resize(std::max(by_k.size(), v.size()));
      for (size_t k = 0; k < v.size(); ++k) by_k[k].push_back(v[k]);
    }
    std::vector<std::string> out;
    for (const auto& v : by_k) {
      const double m = mean(v);
      out.push_back(std::isinf(m) ? "∞"
                    : m >= 100    ? fmt::format("{:.0f}", m)
                                  : fmt::format("{:.3g}", m));
    }
    return fmt::format("{}", fmt::join(out, " / "));
  };
  for (const Configuration& c : configs) {
    size_t layers = 0;
    for (const Run* r : c.runs) layers = std::max(layers, r->views.size());
    for (size_t l = 0; l < layers; ++l) {
      const std::string scales = per_view(c, l, &RunLayerViews::time_scale_median);
      const std::string weights = per_view(c, l, &RunLayerViews::selection_mean);
      if (scales.empty() && weights.empty()) continue;
      rows += fmt::format("| {} | {} | {} | {} |\n", markdown_cell(c.label), l, scales,
                          weights.empty() ? "–" : weights);
    }
  }
  if (rows.empty()) return "";
  return "## What the views settled on\n\n"
         "Per configuration and layer, after training: each view's time scale, the median over "
         "its channels of 1/(1 − retention) in steps (retention: the state a channel keeps per "
         "step at its decay with neutral gates; for GRU and LSTM the decay's own share, to which "
         "the gate's biases and inputs add), and each view's mean selection weight over "
         "the validation set (learned selectors); means over seeds, views in the order of the "
         "decay rows.\n\n| configuration | layer | time scale per view (steps) | selection "
         "weight per view |\n|---|---|---|---|\n" +
         rows + "\n";
}

std::string machine_description() {
  std::ifstream cpu("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(cpu, line))
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M", std::localtime(&now));
  return fmt::format("{}, {} cores; report written {}", model, ::sysconf(_SC_NPROCESSORS_ONLN),
                     date);
}

}  // namespace

ReportSummary write_report(const std::string& dir_name, const ReportOptions& options) {
  const fs::path dir(dir_name);
  std::error_code ec;
  MTP_CHECK(fs::is_directory(dir, ec), "{}: not a folder", dir_name);
  const fs::path runs_dir = fs::is_directory(dir / "runs", ec) ? dir / "runs" : dir;
  std::vector<Run> runs;
  std::vector<std::pair<std::string, RunFolderStatus>> unfinished;  // (run, why)
  // A sweep folder lists its runs in sweep.json (every grid run there with the same
  // shared flags); other folders under runs/ are not part of it. Without sweep.json,
  // every run folder counts.
  nlohmann::json sweep = nlohmann::json::object();
  const fs::path record = dir / "sweep.json";
  if (fs::exists(record, ec)) {
    sweep = read_json_file(record.string());
    if (!sweep.is_object())
      fail("{}: expected an object, found {}", record.string(), json_excerpt(sweep));
  }
  std::vector<fs::path> run_dirs;
  if (sweep.contains("runs")) {
    const auto ids = json_field<std::vector<std::string>>(sweep, "runs", record.string());
    std::set<std::string> seen;
    for (const std::string& id : ids) {
      MTP_CHECK(!id.empty() && id != "." && id != ".." && id.find('/') == std::string::npos,
                "{}: '{}' is not a run folder's name", record.string(), id);
      if (seen.insert(id).second) run_dirs.push_back(runs_dir / id);
    }
  } else {
    for (fs::directory_iterator it(runs_dir, ec), end; !ec && it != end; it.increment(ec))
      if (it->is_directory(ec) && it->path().filename() != "plots") run_dirs.push_back(it->path());
    MTP_CHECK(!ec, "{}: cannot list its runs ({})", runs_dir.string(), ec.message());
    std::sort(run_dirs.begin(), run_dirs.end());
  }
  // A run counts when its folder is done: its result belongs to its configuration.
  for (const fs::path& d : run_dirs) {
    RunFolderStatus status = inspect_run_folder(d);
    if (status.state == RunState::finished)
      runs.push_back(read_run(d, status));
    else
      unfinished.emplace_back(d.filename().string(), std::move(status));
  }
  if (runs.empty() && !inspect_run_folder(dir).run_files.empty())
    fail(
        "{}: is a run's folder; report summarises a sweep's folder (DIR/runs/<run>/) or a folder "
        "of run folders",
        dir_name);
  MTP_CHECK(!runs.empty(), "{}: no finished runs (no run folder with a result matching its config)",
            dir_name);
  // Everything the report writes lands at the end, together: a failure part way (a full
  // disk) leaves the previous report as it was.
  StagedFiles files;

  // A shared flag with placeholders ("--init-from base/runs/cell-{cell}_seed-{seed}/...")
  // is one setting whatever each run filled in: the runs show its template.
  if (sweep.contains("base_args"))
    for (const auto& [flag, templ] : templated_flags(
             json_field<std::vector<std::string>>(sweep, "base_args", record.string()))) {
      std::string key = flag;
      std::replace(key.begin(), key.end(), '-', '_');
      for (Run& r : runs)
        for (const std::string& k : {key, flag})  // a program's task flags keep hyphens
          if (r.config.contains(k)) r.config[k] = templ;
    }
  // Configurations: the varying settings without the seed.
  const std::vector<std::string> keys = varying_settings(runs);
  for (Run& r : runs) {
    for (const std::string& k : keys)
      if (r.config.contains(k)) r.settings[k] = value_text(r.config[k]);
    r.label = label_of(r.settings, keys);
  }
  std::vector<Configuration> configs;
  std::map<std::string, size_t> by_label;
  for (const Run& r : runs) {
    auto [it, fresh] = by_label.emplace(r.label, configs.size());
    if (fresh) configs.push_back({r.label, r.settings, {}});
    configs[it->second].runs.push_back(&r);
  }
  for (Configuration& c : configs) {
    std::sort(c.runs.begin(), c.runs.end(),
              [](const Run* a, const Run* b) { return a->seed < b->seed; });
    // Two folders of one configuration and seed (grids that name it two ways) would be
    // counted as two seeds.
    for (size_t i = 1; i < c.runs.size(); ++i)
      if (c.runs[i]->seed == c.runs[i - 1]->seed)
        fail(
            "{}: the runs {} and {} are the same configuration and seed; remove one (two grids "
            "that name the same settings differently?)",
            dir_name, c.runs[i - 1]->id, c.runs[i]->id);
  }
  std::vector<std::string> group_names;
  // Every run's query groups, by name in first-seen order (a sweep may vary the lags).
  for (const Run& r : runs)
    for (const auto& g : r.groups)
      if (std::find(group_names.begin(), group_names.end(), g.first) == group_names.end())
        group_names.push_back(g.first);

  // results.csv: one row per run.
  std::string csv = "run";
  for (const std::string& k : keys) append_field(csv, k);
  csv += ",seed,val_loss,val_accuracy,val_bpb";
  for (const std::string& g : group_names) append_field(csv, csv_field("acc " + g));
  csv += ",params_total,params_perspective,params_trained,train_tokens_per_s,train_seconds\n";
  for (const Run& r : runs) {
    csv += csv_field(r.id);
    for (const std::string& k : keys)
      append_field(csv, csv_field(r.settings.count(k) ? r.settings.at(k) : ""));
    csv += fmt::format(",{},{},{},{}", r.seed, num(r.loss, 6), num(r.accuracy, 6), num(r.bpb, 6));
    for (size_t g = 0; g < group_names.size(); ++g)
      append_field(csv, num(r.group(group_names[g]), 6));
    csv += fmt::format(",{},{},{},{},{}\n", r.params_total, r.params_perspective, r.params_trained,
                       num(r.tokens_per_s, 0), num(r.train_seconds, 2));
  }
  files.stage((dir / "results.csv").string(), csv);

  // summary.csv and the per-configuration table.
  const bool any_text = std::any_of(runs.begin(), runs.end(), [](const Run& r) { return r.text; });
  const std::string metric_name = any_text ? "bits per byte" : "accuracy";
  std::string summary = "configuration";
  for (const std::string& k : keys) append_field(summary, k);
  summary += ",n,metric,mean,ci95_lo,ci95_hi";
  for (const std::string& g : group_names) append_field(summary, csv_field("acc " + g));
  summary += "\n";
  std::vector<FinalChange> final_changes;
  for (const Configuration& c : configs) final_changes.push_back(final_change(c));
  const bool show_final_change =
      std::any_of(final_changes.begin(), final_changes.end(),
                  [](const FinalChange& f) { return !std::isnan(f.mean); });
  std::string table = fmt::format("| configuration | n | {} | 95% CI |", metric_name);
  for (const std::string& g : group_names) table += fmt::format(" {} |", g);
  if (show_final_change) table += " last Δ |";
  table += " added params | tokens/s |\n|---|---|---|---|";
  for (size_t g = 0; g < group_names.size() + show_final_change; ++g) table += "---|";
  table += "---|---|\n";
  for (size_t i = 0; i < configs.size(); ++i) {
    const Configuration& c = configs[i];
    const MeanCI ci = mean_ci(c.headline());
    summary += csv_field(c.label);
    for (const std::string& k : keys)
      append_field(summary, csv_field(c.settings.count(k) ? c.settings.at(k) : ""));
    summary += fmt::format(",{},{},{},{},{}", ci.n, c.text() ? "bits_per_byte" : "accuracy",
                           num(ci.mean, 6), num(ci.lo, 6), num(ci.hi, 6));
    std::vector<double> group_means;
    for (size_t g = 0; g < group_names.size(); ++g) {
      std::vector<double> v;
      for (const Run* r : c.runs)
        if (!std::isnan(r->group(group_names[g]))) v.push_back(r->group(group_names[g]));
      group_means.push_back(v.empty() ? kNaN : mean(v));
      append_field(summary, num(group_means.back(), 6));
    }
    summary += "\n";
    const Run& first = *c.runs.front();
    double tps = 0;
    for (const Run* r : c.runs) tps += r->tokens_per_s / double(c.runs.size());
    table += fmt::format("| {} | {} | {} | {} |", c.label, ci.n, num(ci.mean),
                         ci.n > 1 ? fmt::format("[{}, {}]", num(ci.lo), num(ci.hi)) : "–");
    for (double m : group_means) table += fmt::format(" {} |", num(m));
    if (show_final_change) {
      const FinalChange& f = final_changes[i];
      table += std::isnan(f.mean) ? std::string(" – |")
               : std::isfinite(f.relative)
                   ? fmt::format(" {:+.4f} ({:+.2f}%, steps {}→{}) |", f.mean, 100 * f.relative,
                                 f.from, f.to)
                   : fmt::format(" {:+.4f} (steps {}→{}) |", f.mean, f.from, f.to);
    }
    table += fmt::format(" {} ({:.3f}%) | {} |\n", first.params_perspective,
                         100.0 * double(first.params_perspective) /
                             double(first.params_total - first.params_perspective),
                         std::isnan(tps) ? "–" : num(tps, 0));
  }
  files.stage((dir / "summary.csv").string(), summary);

  // Each perspective configuration against its K = 1 baseline, paired by seed.
  auto baseline_of = [&](const Configuration& c) -> const Configuration* {
    for (bool relaxed : {false, true})
      for (const Configuration& b : configs) {
        if (!b.settings.count("perspectives") || b.settings.at("perspectives") != "1") continue;
        bool same = true;
        for (const std::string& k : keys)
          if (k != "perspectives" && !(relaxed && kPerspectiveOnly.count(k)) &&
              c.settings.count(k) && b.settings.count(k) && c.settings.at(k) != b.settings.at(k))
            same = false;
        if (same) return &b;
      }
    return nullptr;
  };
  std::string paired =
      "| configuration | baseline (K = 1) | pairs | difference | 95% CI | p (paired t) |\n"
      "|---|---|---|---|---|---|\n";
  int comparisons = 0;
  for (const Configuration& c : configs) {
    if (!c.settings.count("perspectives") || c.settings.at("perspectives") == "1") continue;
    const Configuration* b = baseline_of(c);
    if (!b) continue;
    std::vector<double> base, with;
    for (const Run* r : c.runs)
      for (const Run* s : b->runs)
        if (s->seed == r->seed) {
          base.push_back(s->headline());
          with.push_back(r->headline());
        }
    if (base.empty()) continue;
    const PairedTest t = paired_t_test(base, with);
    paired += fmt::format(
        "| {} | {} | {} | {:+.4f} | {} | {} |\n", c.label, b->label, t.n, t.difference.mean,
        t.n > 1 ? fmt::format("[{:+.4f}, {:+.4f}]", t.difference.lo, t.difference.hi) : "–",
        std::isnan(t.p_value) ? "–" : fmt::format("{:.3g}", t.p_value));
    ++comparisons;
  }

  // Hypotheses, from the design's file.
  std::optional<HypothesesFile> design;
  std::vector<HypothesisResult> tested;
  if (!options.hypotheses.empty()) {
    design = read_hypotheses(options.hypotheses);
    tested = test_hypotheses(*design, configs, keys);
  }

  // Plots: per cell when the sweep has several.
  const fs::path plots_dir = dir / "plots";
  if (options.plots) {
    fs::create_directories(plots_dir, ec);
    MTP_CHECK(!ec, "{}: cannot create the folder ({})", plots_dir.string(), ec.message());
  }
  std::vector<std::pair<std::string, std::string>> figures;  // (file stem, caption)
  bool plots_ok = true;
  const bool per_cell = std::find(keys.begin(), keys.end(), "cell") != keys.end();
  std::vector<std::string> cells = {""};
  if (per_cell) {
    cells.clear();
    for (const Configuration& c : configs)
      if (std::find(cells.begin(), cells.end(), c.settings.at("cell")) == cells.end())
        cells.push_back(c.settings.at("cell"));
  }
  auto of_cell = [&](const Configuration& c, const std::string& cell) {
    return cell.empty() || (c.settings.count("cell") && c.settings.at("cell") == cell);
  };
  // "_gru" and " (cell=gru)" for a cell's plot; nothing when the sweep has one cell.
  auto stem_of = [](const std::string& stem, const std::string& cell) {
    if (cell.empty()) return stem;
    std::string out = stem + "_";
    for (char ch : cell)
      out += std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.' ? ch : '_';
    return out;
  };
  auto for_cell = [](const std::string& cell) {
    return cell.empty() ? std::string() : " (cell=" + cell + ")";
  };
  // Lines over a numeric setting, one per value of the other settings, each with two or
  // more points (a lone point is no line); `skip` leaves configurations out.
  auto series_over = [&](const std::string& axis, const std::string& cell,
                         const std::function<bool(const Configuration&)>& skip) {
    std::map<std::string, Series> lines;
    for (const Configuration& c : configs) {
      if (!c.settings.count(axis) || !of_cell(c, cell) || (skip && skip(c))) continue;
      const MeanCI ci = mean_ci(c.headline());
      double x = 0;
      const std::string& v = c.settings.at(axis);
      const auto [end, err] = std::from_chars(v.data(), v.data() + v.size(), x);
      if (err != std::errc() || end != v.data() + v.size()) continue;  // not on a numeric axis
      const std::string title = label_of(c.settings, keys, axis);
      Series& s = lines[title];
      s.title = title;
      s.points.push_back({x, ci.mean, ci.lo, ci.hi});
    }
    std::vector<Series> out;
    for (auto& [label, s] : lines) {
      if (s.points.size() < 2) continue;
      std::sort(s.points.begin(), s.points.end());
      out.push_back(std::move(s));
    }
    return out;
  };
  auto add_plot = [&](const std::string& stem, const std::string& title, const std::string& xlabel,
                      const std::string& ylabel, const std::vector<Series>& lines, bool bars,
                      const std::string& caption, const std::string& extra = "") {
    if (lines.empty()) return;
    plots_ok &=
        plot(files, plots_dir, options.plots, stem, title, xlabel, ylabel, lines, bars, extra);
    figures.emplace_back(stem, caption);
  };
  const std::string ylabel = "validation " + metric_name;
  // The comparisons whose per-group gain and curves are drawn: the first hypothesis with
  // per-group differences, or every K > 1 configuration against its K = 1 baseline.
  const HypothesisResult* gains = nullptr;
  for (const HypothesisResult& h : tested)
    if (!gains && std::any_of(h.rows.begin(), h.rows.end(),
                              [](const ComparisonRow& r) { return !r.group_difference.empty(); }))
      gains = &h;
  for (const std::string& cell : cells) {
    add_plot(stem_of("metric_vs_k", cell), ylabel + " against K" + for_cell(cell), "perspectives K",
             ylabel, series_over("perspectives", cell, nullptr), true,
             ylabel + " against K" + for_cell(cell) + " (mean and 95% CI over seeds)",
             "set xtics 1\n");
    // Learned noise has no σ to place on the axis: its rows are in the hypothesis tables.
    add_plot(stem_of("metric_vs_noise", cell), ylabel + " against selector noise" + for_cell(cell),
             "selector noise sigma", ylabel,
             series_over("noise", cell,
                         [](const Configuration& c) {
                           return c.settings.count("noise_mode") &&
                                  c.settings.at("noise_mode") == "learned";
                         }),
             true, ylabel + " against the selector noise σ, per aggregator" + for_cell(cell));
    if (!group_names.empty()) {
      std::string xtics = "set xtics (";
      for (size_t g = 0; g < group_names.size(); ++g)
        xtics += fmt::format("{}{} {}", g ? ", " : "", gnuplot_quote(group_names[g]), g);
      xtics += ")\n";
      std::vector<Series> lines;
      if (gains) {
        for (const ComparisonRow& r : gains->rows) {
          if (!r.control || !of_cell(*r.treatment, cell) || r.group_difference.empty()) continue;
          Series s{r.treatment->label + " vs " + r.control->label, {}};
          for (const auto& [name, d] : r.group_difference) {
            const auto at = std::find(group_names.begin(), group_names.end(), name);
            if (at != group_names.end())
              s.points.push_back({double(at - group_names.begin()), d.mean, d.lo, d.hi});
          }
          std::sort(s.points.begin(), s.points.end());
          lines.push_back(std::move(s));
        }
      } else {
        for (const Configuration& c : configs) {
          if (!of_cell(c, cell)) continue;
          Series s{c.label, {}};
          for (size_t g = 0; g < group_names.size(); ++g) {
            std::vector<double> v;
            for (const Run* r : c.runs)
              if (!std::isnan(r->group(group_names[g]))) v.push_back(r->group(group_names[g]));
            const MeanCI ci = mean_ci(v);
            s.points.push_back({double(g), ci.mean, ci.lo, ci.hi});
          }
          lines.push_back(std::move(s));
        }
      }
      const std::string what =
          gains ? fmt::format("gain in accuracy per query group over the control ({})",
                              gains->spec->id)
                : std::string("accuracy per query group");
      add_plot(
          stem_of(gains ? "gain_per_group" : "accuracy_per_group", cell),
          "validation " + what + for_cell(cell), "", gains ? "accuracy difference" : "accuracy",
          lines, true,
          what + for_cell(cell) + " (mean and 95% CI over seeds" + (gains ? ", paired" : "") + ")",
          gains ? xtics + "set xzeroaxis\n" : xtics + "set yrange [0:1]\n");
    }
    std::set<const Configuration*> in_gains;
    if (gains)
      for (const ComparisonRow& r : gains->rows) in_gains.insert({r.treatment, r.control});
    // Per configuration (of the gains' comparisons, if any) the curve that `member` holds
    // in each run, mean over seeds at each step; with `ci`, its 95% interval too; curves
    // of fewer than `min_points` points are left out.
    auto mean_curves = [&](std::vector<std::pair<long long, double>> Run::*member, bool ci,
                           size_t min_points) {
      std::vector<Series> out;
      for (const Configuration& c : configs) {
        if (!of_cell(c, cell) || (gains && !in_gains.count(&c))) continue;
        std::map<long long, std::vector<double>> at;
        for (const Run* r : c.runs)
          for (const std::pair<long long, double>& point : r->*member)
            at[point.first].push_back(point.second);
        Series s{c.label, {}};
        for (const auto& [step, v] : at) {
          const MeanCI m = ci ? mean_ci(v) : MeanCI{};
          s.points.push_back({double(step), mean(v), ci ? m.lo : kNaN, ci ? m.hi : kNaN});
        }
        if (s.points.size() >= min_points) out.push_back(std::move(s));
      }
      return out;
    };
    add_plot(stem_of("training_curves", cell), "training loss (mean over seeds)" + for_cell(cell),
             "step", "training loss", mean_curves(&Run::train_curve, false, 1), false,
             "training loss, mean over seeds" + for_cell(cell) +
                 (gains ? ", the configurations of " + gains->spec->id : std::string()));
    // Validation curves where runs evaluated along the way (--eval-every): has the
    // metric flattened by the last step?
    add_plot(stem_of("validation_curves", cell), ylabel + " during training" + for_cell(cell),
             "step", ylabel, mean_curves(&Run::validation_curve, true, 2), true,
             ylabel + " at each evaluation (mean and 95% CI over seeds)" + for_cell(cell) +
                 (gains ? ", the configurations of " + gains->spec->id : std::string()));
  }
  // Zoology's figure: the metric against the recurrent state a sequence carries; per
  // cell one line of K views at one width and one of a single view made wider.
  {
    std::map<std::string, Series> lines;
    for (const Configuration& c : configs) {
      std::vector<double> state;
      for (const Run* r : c.runs)
        if (!std::isnan(r->state_floats)) state.push_back(r->state_floats);
      if (state.empty() || !c.settings.count("perspectives")) continue;
      const MeanCI ci = mean_ci(c.headline());
      const std::string width = value_text(c.runs.front()->config.value("width", nlohmann::json()));
      const bool one = c.settings.at("perspectives") == "1";
      std::map<std::string, std::string> rest = c.settings;
      rest.erase("perspectives");
      rest.erase("width");
      const std::string base = label_of(rest, keys);
      // A K = 1 run is on both lines: the views' start and the wider views' start.
      lines[base + ", K views at width " + width].points.push_back(
          {mean(state), ci.mean, ci.lo, ci.hi});
      if (one)
        lines[base + ", one view, width varies"].points.push_back(
            {mean(state), ci.mean, ci.lo, ci.hi});
    }
    std::vector<Series> out;
    for (auto& [title, s] : lines) {
      if (s.points.size() < 2) continue;
      s.title = title;
      std::sort(s.points.begin(), s.points.end());
      out.push_back(std::move(s));
    }
    add_plot("metric_vs_state", ylabel + " against the recurrent state",
             "state floats per sequence", ylabel, out, true,
             ylabel +
                 " against the recurrent state a sequence carries (mean and 95% CI over "
                 "seeds): K views against one wider view",
             "set logscale x 2\n");
  }

  // REPORT.md
  std::vector<std::string> commands;
  if (sweep.contains("commands"))
    commands = json_field<std::vector<std::string>>(sweep, "commands", record.string());
  else if (sweep.contains("command"))
    commands = {json_field<std::string>(sweep, "command", record.string())};
  std::string md = "# Sweep report\n\n";
  if (!commands.empty())
    md += fmt::format("Produced by:\n\n```sh\n{}\n{}\n```\n\n", fmt::join(commands, "\n"),
                      options.command_line.empty() ? "mtp-exp report " + shell_word(dir_name)
                                                   : options.command_line);
  md += fmt::format(
      "{} finished runs in {} configurations{}; {}.\n\n", runs.size(), configs.size(),
      unfinished.empty() ? "" : fmt::format(" ({} not finished: see the end)", unfinished.size()),
      machine_description());
  md += any_text
            ? "The metric is validation bits per byte: lower is better.\n\n"
            : "The metric is validation accuracy at the labelled positions: higher is better.\n\n";
  if (design)
    md +=
        "## Findings\n\nGenerated from the tables below (differences with 95% intervals, "
        "Holm-corrected p):\n\n" +
        findings_paragraph(*design, tested, keys, !any_text) + "\n\n";
  md += fmt::format(
      "## Configurations\n\nMean over seeds, with a 95% Student-t confidence interval.\n\n{}\n",
      table);
  // The configuration whose curves moved most, relative to the metric (none when no
  // relative change is finite: a metric of 0).
  std::optional<size_t> largest;
  for (size_t i = 0; i < configs.size(); ++i)
    if (std::isfinite(final_changes[i].relative) &&
        (!largest ||
         std::abs(final_changes[i].relative) > std::abs(final_changes[*largest].relative)))
      largest = i;
  if (show_final_change)
    md += fmt::format(
        "*last Δ*: the change of the metric between a run's last two evaluations, mean over "
        "seeds; near zero where the validation curve has flattened.{}\n\n",
        largest ? fmt::format(" The largest relative change is {:+.2f}% ({}).",
                              100 * final_changes[*largest].relative, configs[*largest].label)
                : std::string());
  if (design) md += hypotheses_markdown(*design, tested, keys, group_names, !any_text);
  md += views_markdown(configs);
  md +=
      "## Perspectives against the K = 1 baseline\n\n"
      "Each configuration with K > 1 against the K = 1 configuration with the same other "
      "settings (aggregator settings aside when no K = 1 run has them), paired by seed: the "
      "mean difference (K > 1 minus K = 1), its 95% confidence interval and the two-sided "
      "p-value of a paired t-test, not corrected for the many comparisons (the hypothesis "
      "tables are, where a design names them).\n\n";
  md += comparisons ? paired : "No K > 1 configuration has a K = 1 baseline in this sweep.\n";
  md += "\n## Plots\n\n";
  if (!options.plots) {
    md += "Not made (report --no-plots).\n";
    figures.clear();
  }
  if (!plots_ok) md += "Some plots were not rendered: is gnuplot installed? (see plots/*.log)\n\n";
  for (const auto& [stem, caption] : figures)
    md += fmt::format("![{}](plots/{}.svg)\n\n*{}* ([PNG](plots/{}.png), [data](plots/{}.dat))\n\n",
                      caption, stem, caption, stem, stem);
  if (!unfinished.empty()) {
    md +=
        "## Runs not counted\n\nNot finished (no result matching the run's configuration):\n\n"
        "| run | state | why |\n|---|---|---|\n";
    for (const auto& [id, status] : unfinished)
      md += fmt::format("| {} | {} | {} |\n", markdown_cell(id), run_state_name(status.state),
                        markdown_cell(status.detail.empty() ? "no run files" : status.detail));
  }
  files.stage((dir / "REPORT.md").string(), md);
  files.commit();
  // Plots of an earlier report that this one did not make (another cell set, plots
  // renamed with --hypotheses, --no-plots) would sit in plots/ as if current: removed.
  std::set<std::string> current;
  for (const auto& [stem, caption] : figures) current.insert(stem);
  for (fs::directory_iterator it(plots_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& f = it->path();
    const std::string ext = f.extension().string();
    if (it->is_regular_file(ec) &&
        (ext == ".svg" || ext == ".png" || ext == ".dat" || ext == ".gp" || ext == ".log") &&
        !current.count(f.stem().string()))
      fs::remove(f, ec);
  }
  return {int(runs.size()), int(configs.size()),    comparisons,       int(figures.size()),
          !plots_ok,        int(unfinished.size()), int(tested.size())};
}

}  // namespace mtp::exp
