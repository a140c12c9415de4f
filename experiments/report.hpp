// `mtp-exp report DIR`: the tables, statistics and plots of a sweep folder.
//
//   DIR/results.csv   one row per finished run
//   DIR/summary.csv   per configuration: seeds, mean and 95% CI of each metric
//   DIR/REPORT.md     the tables, every perspective configuration against the K = 1
//                     baseline of the same seed (difference, CI, paired t-test), plots
//   DIR/plots/        gnuplot data, scripts, SVG and PNG: metric vs K per cell, metric
//                     vs noise per aggregator, accuracy per lag, training and validation
//                     curves, the metric against the recurrent state
//
// A configuration is a run's settings without its seed: the settings that vary across
// the sweep's runs, read from their result.json, define it.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace mtp::exp {

struct ReportSummary {
  int runs = 0, configurations = 0, comparisons = 0, plots = 0;
  bool plots_skipped = false;  // gnuplot is missing or failed
  int unfinished = 0;          // run folders without a result matching their config
  int hypotheses = 0;          // tables from ReportOptions::hypotheses
};

struct ReportOptions {
  bool plots = true;         // render plots with gnuplot (else tables and statistics only)
  std::string command_line;  // how the report was asked for (REPORT.md shows it)
  std::string hypotheses;    // the design's hypotheses file (hypotheses.hpp), or none
};

// Writes the report of `dir`: everything at once (staged, then renamed into place), so a
// failure part way leaves the previous report whole. Reads the run folders strictly:
// a malformed file is an mtp::Error naming it.
ReportSummary write_report(const std::string& dir, const ReportOptions& options = {});

// A run's curves from its metrics.csv: (step, value) per row of each split; `text`: the
// validation metric is bits per byte (else accuracy).
struct RunCurves {
  std::vector<std::pair<long long, double>> train_loss;  // mean training loss per log row
  // The validation metric at each evaluation (its finite values); the last is the run's
  // result.
  std::vector<std::pair<long long, double>> validation;
};
RunCurves read_run_curves(const std::string& path, bool text);

}  // namespace mtp::exp
