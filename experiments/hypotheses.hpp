// Hypothesis tables of a sweep report (`mtp-exp report DIR --hypotheses FILE`): each
// hypothesis is a family of paired comparisons between configurations, tested by seed,
// with Holm–Bonferroni-corrected p-values, effect sizes with confidence intervals, the
// gain per query group, and a findings sentence generated from the numbers.
//
// The file (JSON) states the design before the results exist:
//
//   {"baseline_band": [0.3, 0.85],            optional: where a control must lie
//    "note": "...",                           optional: shown above the tables
//    "hypotheses": [
//      {"id": "H1", "claim": "K views beat one view",
//       "comparisons": [
//         {"treatment": {"perspectives": ["2", "3", "4"], "aggregator": "learned"},
//          "control": {"perspectives": "1"}}]}]}
//
// A comparison's treatment selects configurations (every named setting has one of the
// listed values); each one's control is the configuration with the same settings except
// those the control names (one control per combination of the control's values). A
// treatment whose control was not run gives a row that says so. Setting names are
// config.json's (decay_spread) or the flags' (decay-spread), and must be some run's;
// values compare as numbers when both are.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mtp/experiments/report_runs.hpp"

namespace mtp::exp::reporting {

using SettingValues = std::map<std::string, std::vector<std::string>>;

struct HypothesisSpec {
  std::string id, claim;
  std::vector<std::pair<SettingValues, SettingValues>> comparisons;  // (treatment, control)
};

struct HypothesesFile {
  std::vector<HypothesisSpec> hypotheses;
  std::optional<std::pair<double, double>> baseline_band;
  std::string note;  // the design's word on the tables (why no band applies, say)
};

// Reads and checks the file; throws mtp::Error naming what is wrong.
HypothesesFile read_hypotheses(const std::string& path);

struct ComparisonRow {
  const Configuration* treatment = nullptr;
  const Configuration* control = nullptr;    // null: planned, but no run has its settings
  std::map<std::string, std::string> asked;  // the control's settings, when it was not run
  int pairs = 0;
  MeanCI difference;               // treatment − control, paired by seed
  MeanCI effect;                   // d_z
  double p = kNaN, p_holm = kNaN;  // paired t, two-sided; Holm over the hypothesis
  // The difference these pairs detect with 80% power at α = 0.05 (two-sided, before
  // Holm), given the observed spread of the paired differences: (t₀.₉₇₅ + t₀.₈)·sd/√n.
  double detectable = kNaN;
  // The pairs that would detect half the control's seed-to-seed standard deviation with
  // 80% power at α = 0.05, at the observed spread (0: none up to 1000, or no spread).
  int pairs_for_half_sd = 0;
  MeanCI control_metric;  // the control's own mean and CI
  // Per query group (lag) present in both, by name: treatment − control.
  std::vector<std::pair<std::string, MeanCI>> group_difference;
  bool control_in_band = true;
};

struct HypothesisResult {
  const HypothesisSpec* spec = nullptr;
  std::vector<ComparisonRow> rows;
};

// Every hypothesis's rows over the report's configurations (`keys`: the varying settings):
// one per selected treatment and control asked, a control that was not run included (no
// test). Holm's m counts the rows with a test. Throws mtp::Error for a setting name no
// run has (a typo would otherwise match nothing). The results point into `file` and
// `configs`, which must outlive them.
std::vector<HypothesisResult> test_hypotheses(const HypothesesFile& file,
                                              const std::vector<Configuration>& configs,
                                              const std::vector<std::string>& keys);
std::vector<HypothesisResult> test_hypotheses(HypothesesFile&&, const std::vector<Configuration>&,
                                              const std::vector<std::string>&) = delete;

// The Markdown sections: one table per hypothesis (and the gain per group where runs
// report groups), then the generated findings paragraph. `higher_is_better`: accuracy
// (true) or bits per byte (false).
std::string hypotheses_markdown(const HypothesesFile& file,
                                const std::vector<HypothesisResult>& results,
                                const std::vector<std::string>& keys,
                                const std::vector<std::string>& group_names, bool higher_is_better);

// One paragraph, every number from `results`: per hypothesis, where it holds (Holm-
// corrected p < 0.05 in the claimed direction), where the difference is reversed, and
// where it is not resolved; and which controls lie outside the baseline band.
std::string findings_paragraph(const HypothesesFile& file,
                               const std::vector<HypothesisResult>& results,
                               const std::vector<std::string>& keys, bool higher_is_better);

}  // namespace mtp::exp::reporting
