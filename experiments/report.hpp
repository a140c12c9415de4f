// `mtp-exp report DIR`: the tables, statistics and plots of a sweep folder.
//
//   DIR/results.csv   one row per finished run
//   DIR/summary.csv   per configuration: seeds, mean and 95% CI of each metric
//   DIR/REPORT.md     the tables, every perspective configuration against the K = 1
//                     baseline of the same seed (difference, CI, paired t-test), plots
//   DIR/plots/        gnuplot data, scripts, SVG and PNG: metric vs K per cell, metric
//                     vs noise per aggregator, accuracy per lag, training curves
//
// A configuration is a run's settings without its seed: the settings that vary across
// the sweep's runs, read from their result.json, define it.
#pragma once

#include <string>

namespace mtp::exp {

struct ReportSummary {
  int runs = 0, configurations = 0, comparisons = 0, plots = 0;
  bool plots_skipped = false;  // gnuplot is missing or failed
};

ReportSummary write_report(const std::string& dir);

}  // namespace mtp::exp
