// The report's view of a sweep (`mtp-exp report`, report.cpp): its finished runs and their
// configurations, shared by the parts that tabulate, test and plot them.
#pragma once

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "mtp/experiments/stats.hpp"

namespace mtp::exp::reporting {

// One layer of a run's views (result.json "views"): per perspective, the median time
// scale over the channels and the mean selection weight (NaN where not recorded).
struct RunLayerViews {
  std::vector<double> time_scale_median, selection_mean;
};

struct Run {
  std::string id;
  nlohmann::json config;
  std::uint64_t seed = 0;
  bool text = false;  // the headline is bits per byte (lower is better), else accuracy
  double loss = kNaN, accuracy = kNaN, bpb = kNaN;
  std::vector<std::pair<std::string, double>> groups;
  long long params_total = 0, params_perspective = 0, params_trained = 0;
  double tokens_per_s = kNaN, train_seconds = kNaN;
  std::vector<std::pair<long long, double>> train_curve;       // (step, mean train loss)
  std::vector<std::pair<long long, double>> validation_curve;  // (step, headline metric)
  std::map<std::string, std::string> settings;                 // the varying ones
  std::string label;                                           // "cell=gru perspectives=3"
  double state_floats = kNaN;        // recurrent state per sequence (result.json "views")
  std::vector<RunLayerViews> views;  // per layer; empty for runs that did not record them
  double headline() const { return text ? bpb : accuracy; }
  // The accuracy of the query group so named; NaN when the run has none.
  double group(const std::string& name) const {
    for (const auto& [n, v] : groups)
      if (n == name) return v;
    return kNaN;
  }
};

struct Configuration {
  std::string label;
  std::map<std::string, std::string> settings;
  std::vector<const Run*> runs;  // ordered by seed
  bool text() const { return runs.front()->text; }
  std::vector<double> headline() const {
    std::vector<double> v;
    for (const Run* r : runs) v.push_back(r->headline());
    return v;
  }
};

// The change of the validation metric between a run's last two evaluations, mean over
// the configuration's seeds: how far from flat its curves ended. NaN when a run has fewer
// than two evaluations or its runs evaluated at different steps.
struct FinalChange {
  double mean = kNaN;
  double relative = kNaN;      // to the metric at the earlier evaluation; NaN where that is 0
  long long from = 0, to = 0;  // the steps of the two evaluations
};
inline FinalChange final_change(const Configuration& c) {
  FinalChange f;
  std::vector<double> change, relative;
  for (const Run* r : c.runs) {
    const auto& curve = r->validation_curve;
    if (curve.size() < 2) return {};
    const std::pair<long long, double>& before = curve[curve.size() - 2];
    const std::pair<long long, double>& last = curve.back();
    if (!change.empty() && (before.first != f.from || last.first != f.to)) return {};
    f.from = before.first;
    f.to = last.first;
    change.push_back(last.second - before.second);
    relative.push_back(before.second != 0 ? (last.second - before.second) / std::abs(before.second)
                                          : kNaN);
  }
  f.mean = mean(change);
  f.relative = mean(relative);
  return f;
}

inline std::string value_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    std::string s;
    for (const auto& e : v) {
      if (!s.empty()) s += ',';
      s += value_text(e);
    }
    return s;
  }
  if (v.is_number_float()) return fmt::format("{:g}", v.get<double>());
  return v.dump();
}

inline std::string num(double v, int digits = 4) {
  return std::isnan(v) ? std::string() : fmt::format("{:.{}f}", v, digits);
}

// Text for a Markdown table cell: '|' escaped, control characters as spaces.
inline std::string markdown_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else
      out += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
  }
  return out;
}

inline std::string label_of(const std::map<std::string, std::string>& settings,
                            const std::vector<std::string>& keys, const std::string& skip = "") {
  std::string s;
  for (const std::string& k : keys)
    if (k != skip && settings.count(k)) {
      if (!s.empty()) s += ' ';
      s += fmt::format("{}={}", k, settings.at(k));
    }
  return s.empty() ? "all runs" : s;
}

}  // namespace mtp::exp::reporting
