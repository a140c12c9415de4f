// The report's hypothesis tables: which configurations a comparison pairs, the paired
// statistics and Holm's correction over a family, verdicts, the per-group gain, the
// baseline band and the generated findings, on hand-made runs with known numbers.
#include <gtest/gtest.h>

#include <cmath>
#include <deque>
#include <fstream>

#include "mtp/core/error.hpp"
#include "mtp/experiments/hypotheses.hpp"
#include "temp_dir.hpp"

namespace mtp::exp::reporting {
namespace {

// Runs of a tiny sweep: settings cell × perspectives × aggregator, seeds 0..n−1, an
// accuracy per seed and two query groups.
struct Sweep {
  std::deque<Run> runs;  // stable addresses
  std::vector<Configuration> configs;
  std::vector<std::string> keys = {"cell", "perspectives", "aggregator"};

  void add(const std::string& cell, int K, const std::string& agg, std::vector<double> acc,
           double group_shift = 0) {
    Configuration c;
    c.settings = {{"cell", cell}, {"perspectives", std::to_string(K)}, {"aggregator", agg}};
    c.label = label_of(c.settings, keys);
    for (size_t s = 0; s < acc.size(); ++s) {
      Run& r = runs.emplace_back();
      r.id = c.label + " seed " + std::to_string(s);
      r.seed = s;
      r.accuracy = acc[s];
      // "probe-depth": a program's own task flag keeps its hyphen in config.json.
      r.config = {{"cell", cell}, {"perspectives", K}, {"aggregator", agg}, {"width", 64},
                  {"noise", 0.0}, {"seed", s},         {"probe-depth", 2}};
      r.settings = c.settings;
      r.groups = {{"lag 2", acc[s]}, {"lag 8", acc[s] + group_shift}};
      c.runs.push_back(&r);
    }
    configs.push_back(std::move(c));
  }
};

HypothesesFile file_of(const std::string& json) {
  test::TempDir dir;
  const std::string path = (dir.path() / "h.json").string();
  std::ofstream(path) << json;
  return read_hypotheses(path);
}

TEST(Hypotheses, PairsEachTreatmentWithItsControlBySeed) {
  Sweep s;
  s.add("gru", 1, "learned", {0.50, 0.52, 0.51, 0.49, 0.50});
  s.add("gru", 3, "learned", {0.55, 0.58, 0.55, 0.54, 0.55}, 0.1);  // +0.05 ± 0.01
  s.add("gru", 3, "mean", {0.50, 0.53, 0.51, 0.50, 0.51});
  s.add("lstm", 1, "learned", {0.60, 0.61, 0.62, 0.60, 0.61});
  s.add("lstm", 3, "learned", {0.59, 0.62, 0.61, 0.61, 0.60});  // no difference
  s.add("ssm", 3, "learned", {0.3, 0.3, 0.3, 0.3, 0.3});        // no K = 1 control was run
  const HypothesesFile f = file_of(R"({"baseline_band": [0.3, 0.55], "note": "why", "hypotheses": [
      {"id": "H1", "claim": "K views beat one view",
       "comparisons": [{"treatment": {"perspectives": ["2", "3"], "aggregator": "learned"},
                        "control": {"perspectives": 1}}]},
      {"id": "H2", "claim": "learned beats mean",
       "comparisons": [{"treatment": {"aggregator": "learned", "perspectives": 3,
                                      "probe_depth": 2, "width": 64},
                        "control": {"aggregator": ["mean", "fixed"]}}]}]})");
  const auto results = test_hypotheses(f, s.configs, s.keys);
  ASSERT_EQ(results.size(), 2u);
  const auto& h1 = results[0].rows;
  ASSERT_EQ(h1.size(), 3u) << "gru, lstm, and the ssm whose control was not run";
  EXPECT_EQ(h1[0].treatment, &s.configs[1]);
  EXPECT_EQ(h1[0].control, &s.configs[0]);
  EXPECT_EQ(h1[0].pairs, 5);
  EXPECT_NEAR(h1[0].difference.mean, 0.05, 1e-12);
  ASSERT_EQ(h1[0].group_difference.size(), 2u);
  EXPECT_EQ(h1[0].group_difference[1].first, "lag 8");
  EXPECT_NEAR(h1[0].group_difference[1].second.mean, 0.15, 1e-12) << "the gain lies in lag 8";
  EXPECT_EQ(h1[2].control, nullptr);
  EXPECT_TRUE(std::isnan(h1[2].p) && std::isnan(h1[2].p_holm)) << "no control, no test";
  // Holm over the two rows with a test: the smaller p doubles, the larger stays (or rises).
  ASSERT_LT(h1[0].p, h1[1].p);
  EXPECT_NEAR(h1[0].p_holm, 2 * h1[0].p, 1e-15);
  EXPECT_NEAR(h1[1].p_holm, std::max(h1[1].p, 2 * h1[0].p), 1e-15);
  EXPECT_LT(h1[0].p_holm, 0.05);
  EXPECT_GT(h1[1].p_holm, 0.05);
  EXPECT_GT(h1[0].detectable, 0);
  EXPECT_TRUE(h1[0].control_in_band);
  EXPECT_FALSE(h1[1].control_in_band) << "lstm's K = 1 lies above the band";
  // H2 names the task flag in the other spelling; of its six planned rows (3 cells × mean,
  // fixed) only the GRU's mean was run.
  const auto& h2 = results[1].rows;
  ASSERT_EQ(h2.size(), 6u);
  EXPECT_EQ(h2[0].control, &s.configs[2]);
  EXPECT_NEAR(h2[0].difference.mean, 0.044, 1e-12);
  EXPECT_EQ(h2[1].control, nullptr);
  EXPECT_EQ(h2[1].asked, (std::map<std::string, std::string>{{"aggregator", "fixed"}}));
  EXPECT_NEAR(h2[0].p_holm, h2[0].p, 1e-15) << "m = 1: the untested row does not count";
  // A setting no run has is a typo, not a hypothesis that matches nothing; the replicate
  // is no setting.
  const HypothesesFile typo = file_of(R"({"hypotheses": [{"id": "H9", "claim": "c",
      "comparisons": [{"treatment": {"aggregater": "learned"}, "control": {"perspectives": 1}}]}]})");
  EXPECT_THROW(test_hypotheses(typo, s.configs, s.keys), Error);
  const HypothesesFile replicate = file_of(R"({"hypotheses": [{"id": "H9", "claim": "c",
      "comparisons": [{"treatment": {"seed": 1}, "control": {"perspectives": 1}}]}]})");
  EXPECT_THROW(test_hypotheses(replicate, s.configs, s.keys), Error);

  const std::string md = hypotheses_markdown(f, results, s.keys, {"lag 2", "lag 8"}, true);
  EXPECT_NE(md.find("### H1: K views beat one view"), std::string::npos);
  EXPECT_NE(md.find("*From the design:* why"), std::string::npos);
  EXPECT_NE(md.find("| cell=gru perspectives=3 | perspectives=1 | 5 |"), std::string::npos)
      << "the compared setting is shown on both sides\n"
      << md;
  EXPECT_NE(md.find("holds"), std::string::npos);
  EXPECT_NE(md.find("⚠"), std::string::npos) << "the control above the band is marked";
  EXPECT_NE(md.find("+0.150"), std::string::npos) << "the per-group table";
  EXPECT_NE(md.find("aggregator=fixed (not run)"), std::string::npos) << md;
  EXPECT_NE(md.find("over the 2 rows with a test, of 3 planned"), std::string::npos) << md;
  const std::string text = findings_paragraph(f, results, s.keys, true);
  EXPECT_NE(text.find("**H1** (K views beat one view): holds for cell=gru perspectives=3 vs "
                      "perspectives=1 (+0.0500"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("not resolved in 1 of 3 comparisons"), std::string::npos) << text;
  EXPECT_NE(text.find("1 of 3 planned comparisons have no test yet"), std::string::npos) << text;
  EXPECT_NE(text.find("Controls outside [0.3, 0.55]: cell=lstm perspectives=1 (0.6080)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("**H2** (learned beats mean): holds for cell=gru aggregator=learned vs "
                      "aggregator=mean"),
            std::string::npos)
      << text;
  // A control list that holds the treatment's own value compares it with the others only.
  const HypothesesFile own = file_of(R"({"hypotheses": [{"id": "H3", "claim": "c",
      "comparisons": [{"treatment": {"cell": "gru"}, "control": {"aggregator": ["learned", "mean"]}}]}]})");
  const auto r3 = test_hypotheses(own, s.configs, s.keys);
  ASSERT_EQ(r3[0].rows.size(), 3u)
      << "gru K=1 vs mean (not run), K=3 learned vs mean, K=3 mean vs learned";
  EXPECT_EQ(r3[0].rows[0].control, nullptr);
  EXPECT_EQ(r3[0].rows[1].control, &s.configs[2]);
  EXPECT_EQ(r3[0].rows[2].control, &s.configs[1]);
  // Lower is better (bits per byte): the same +0.05 is a reversal.
  EXPECT_NE(findings_paragraph(f, results, s.keys, false).find("reversed for cell=gru"),
            std::string::npos);
}

TEST(Hypotheses, IdenticalDifferencesAreNoTest) {
  Sweep s;
  s.add("gru", 1, "learned", {0.50, 0.52, 0.51});
  s.add("gru", 3, "learned", {0.60, 0.62, 0.61});  // +0.1 on every seed: no spread
  const HypothesesFile f = file_of(R"({"hypotheses": [{"id": "H1", "claim": "c",
      "comparisons": [{"treatment": {"perspectives": 3}, "control": {"perspectives": 1}}]}]})");
  const auto results = test_hypotheses(f, s.configs, s.keys);
  ASSERT_EQ(results[0].rows.size(), 1u);
  EXPECT_NEAR(results[0].rows[0].difference.mean, 0.1, 1e-12);
  EXPECT_TRUE(std::isnan(results[0].rows[0].p)) << "a t-test needs spread";
  EXPECT_NE(findings_paragraph(f, results, s.keys, true).find("no test yet"), std::string::npos);
}

TEST(Hypotheses, AMalformedFileIsNamed) {
  for (const char* bad :
       {R"([])", R"({"hypotheses": []})",
        R"({"hypotheses": [{"id": "H1", "claim": "c", "comparisons": []}]})",
        R"({"hypotheses": [{"id": "H1", "claim": "c", "comparisons": [{"treatment": {}}]}]})",
        R"({"hypotheses": [{"id": "H1", "claim": "c",
               "comparisons": [{"treatment": {}, "control": {}}]}]})",
        R"({"hypotheses": [{"id": "H1", "claim": "c",
               "comparisons": [{"treatment": {"a": {}}, "control": {"b": 1}}]}]})",
        R"({"baseline_band": [0.9, 0.1], "hypotheses": [{"id": "H1", "claim": "c",
               "comparisons": [{"treatment": {}, "control": {"b": 1}}]}]})",
        R"({"hypotheses": [{"id": "H1", "claim": "c", "comparisons": [{"treatment": {},
               "control": {"b": 1}, "controll": {"b": 2}}]}]})",
        R"({"baseline-band": [0, 1], "hypotheses": [{"id": "H1", "claim": "c",
               "comparisons": [{"treatment": {}, "control": {"b": 1}}]}]})",
        R"({"hypotheses": [{"id": "H1", "claim": "c",
               "comparisons": [{"treatment": {"--cell": "gru"}, "control": {"b": 1}}]}]})",
        R"({"hypotheses": [{"id": "H1", "claim": "c",
               "comparisons": [{"treatment": {}, "control": {"b": 1}}]},
               {"id": "H1", "claim": "d",
               "comparisons": [{"treatment": {}, "control": {"b": 1}}]}]})"})
    EXPECT_THROW(file_of(bad), Error) << bad;
}

}  // namespace
}  // namespace mtp::exp::reporting
