// Sweeps and reports: grid parsing and expansion, and the real binary running a small
// sweep that is killed and resumed, split in shards, and summarised by `report`.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "mtp/core/error.hpp"
#include "mtp/experiments/report.hpp"
#include "mtp/experiments/report_runs.hpp"
#include "mtp/experiments/sweep.hpp"
#include "run_binary.hpp"
#include "temp_dir.hpp"

namespace mtp::exp {
namespace {

namespace fs = std::filesystem;

TEST(Grid, ParsesAxesInOrderAndExpandsLastFastest) {
  const auto axes = parse_grid("cell=gru,lstm; perspectives=1,3 ;seed=0");
  ASSERT_EQ(axes.size(), 3u);
  EXPECT_EQ(axes[0].flag, "cell");
  EXPECT_EQ(axes[1].values, (std::vector<std::string>{"1", "3"}));
  const auto runs = expand_grid(axes);
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_EQ(runs[0].id, "cell-gru_perspectives-1_seed-0");
  EXPECT_EQ(runs[1].id, "cell-gru_perspectives-3_seed-0");
  EXPECT_EQ(runs[3].id, "cell-lstm_perspectives-3_seed-0");
  EXPECT_EQ(runs[2].index, 2);
}

TEST(Grid, RejectsWhatIsNotAGridOverTrainFlags) {
  for (const char* bad : {"", "cell", "bogus=1", "out=a", "threads=2", "cell=gru;cell=lstm",
                          "cell=gru,,lstm", "carry-state=maybe", "cell=", "=a"})
    EXPECT_THROW(parse_grid(bad), UsageError) << bad;
}

TEST(Grid, SwitchesBecomeBareFlags) {
  const auto runs = expand_grid(parse_grid("carry-state=true,false;noise=0.1"));
  const auto on = run_arguments(runs[0], {"--task", "text"}, "D", 2);
  const auto off = run_arguments(runs[1], {"--task", "text"}, "D", 2);
  EXPECT_EQ(on, (std::vector<std::string>{"--task", "text", "--carry-state", "--noise", "0.1",
                                          "--out", "D", "--threads", "2"}));
  EXPECT_EQ(off, (std::vector<std::string>{"--task", "text", "--noise", "0.1", "--out", "D",
                                           "--threads", "2"}));
}

TEST(Grid, PlaceholdersInSharedFlagsTakeTheRunsValues) {
  const auto runs = expand_grid(parse_grid("cell=gru,ssm;seed=3"));
  const std::vector<std::string> base = {"--init-from", "b/runs/cell-{cell}_seed-{seed}/m", "--x",
                                         "{a b}{}"};
  const auto args = run_arguments(runs[1], base, "D", 1);
  EXPECT_EQ(args[1], "b/runs/cell-ssm_seed-3/m");
  EXPECT_EQ(args[3], "{a b}{}") << "braces around no name are text";
  EXPECT_THROW(expand_placeholders("a/{width}", runs[0].point), UsageError)
      << "a flag no axis fills";
  EXPECT_THROW(expand_placeholders("a/{cel}", runs[0].point), UsageError) << "a typo";
  EXPECT_EQ(expand_placeholders("{cell}-{seed}", runs[0].point), "gru-3");
  EXPECT_EQ(templated_flags(base), (std::vector<std::pair<std::string, std::string>>{
                                       {"init-from", "b/runs/cell-{cell}_seed-{seed}/m"}}));
  EXPECT_EQ(templated_flags({"--init-from=a{seed}", "--no-ffn", "--data", "x"}),
            (std::vector<std::pair<std::string, std::string>>{{"init-from", "a{seed}"}}));
}

TEST(Report, ReadsARunsCurves) {
  test::TempDir dir;
  const fs::path metrics = dir.path() / "metrics.csv";
  std::ofstream(metrics) << "step,split,loss,accuracy,bpb,lr,grad_norm,tokens_per_s,elapsed_s\n"
                            "10,train,2.5,0.1,3.6,0.003,0.5,100,1\n"
                            "10,val,2.4,0.2,3.4,,,,1\n"
                            "20,train,2.25,0.3,,0.003,0.5,100,2\n"
                            "20,val,2.0,0.5,,,,,2\n";
  const RunCurves curves = read_run_curves(metrics.string(), /*text=*/false);
  EXPECT_EQ(curves.train_loss, (std::vector<std::pair<long long, double>>{{10, 2.5}, {20, 2.25}}));
  EXPECT_EQ(curves.validation, (std::vector<std::pair<long long, double>>{{10, 0.2}, {20, 0.5}}));
  EXPECT_EQ(read_run_curves(metrics.string(), /*text=*/true).validation,
            (std::vector<std::pair<long long, double>>{{10, 3.4}}))
      << "bits per byte; an empty cell (a value that was not finite) is no point";
  std::ofstream(metrics) << "step,split,loss\n";
  EXPECT_THROW(read_run_curves(metrics.string(), false), Error) << "not a run's header";
  std::ofstream(metrics) << "step,split,loss,accuracy,bpb\n30,val,1.0,0.5x,\n";
  EXPECT_THROW(read_run_curves(metrics.string(), false), Error) << "a malformed accuracy";
  std::ofstream(metrics) << "step,split,loss,accuracy,bpb\n-3,train,1.0,,\n";
  EXPECT_THROW(read_run_curves(metrics.string(), false), Error) << "a negative step";
}

TEST(Report, FinalChangeIsTheLastIntervalsMeanOverSeeds) {
  using reporting::Configuration;
  using reporting::final_change;
  using reporting::Run;
  Run a, b;
  a.validation_curve = {{10, 0.5}, {20, 0.6}, {30, 0.62}};
  b.validation_curve = {{10, 0.4}, {20, 0.5}, {30, 0.54}};
  Configuration c{"x", {}, {&a, &b}};
  reporting::FinalChange f = final_change(c);
  EXPECT_NEAR(f.mean, 0.03, 1e-12);
  EXPECT_NEAR(f.relative, (0.02 / 0.6 + 0.04 / 0.5) / 2, 1e-12);
  EXPECT_EQ(f.from, 20);
  EXPECT_EQ(f.to, 30);
  b.validation_curve[1].second = 0;  // an accuracy of 0: no relative change
  f = final_change(c);
  EXPECT_NEAR(f.mean, (0.02 + 0.54) / 2, 1e-12);
  EXPECT_TRUE(std::isnan(f.relative));
  b.validation_curve[2].first = 40;  // the seeds evaluated at other steps: no common interval
  EXPECT_TRUE(std::isnan(final_change(c).mean));
  b.validation_curve.resize(1);  // one evaluation: no interval
  EXPECT_TRUE(std::isnan(final_change(c).mean));
}

int run(const std::vector<std::string>& args, const fs::path& log) {
  return test::run_mtp_exp(args, log);
}

const std::vector<std::string> kTiny = {
    "--task", "lag-recall", "--steps", "4", "--batch",  "2", "--seq-len",     "24",
    "--lags", "1,4",        "--width", "8", "--layers", "1", "--val-batches", "1"};

std::vector<std::string> sweep_args(const std::string& grid, const fs::path& out,
                                    std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"sweep", "--grid", grid, "--out", out.string()};
  a.insert(a.end(), kTiny.begin(), kTiny.end());
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

int finished_runs(const fs::path& out) {
  int n = 0;
  if (!fs::exists(out / "runs")) return 0;
  for (const auto& e : fs::directory_iterator(out / "runs"))
    n += fs::exists(e.path() / "result.json");
  return n;
}

// The authors' variant as two sweepable axes (issue 16): every pair of --combine and
// --per-perspective runs for RWKV, each run recording its own, and the report reads them.
TEST(Sweep, TheAuthorsVariantIsTwoAxes) {
  test::TempDir dir;
  const fs::path out = dir.path() / "sweep";
  ASSERT_EQ(run(sweep_args("combine=layer,head;per-perspective=decay,shift,both", out,
                           {"--cell", "rwkv", "--jobs", "2", "--threads", "1"}),
                dir.path() / "sweep.log"),
            0)
      << test::read_file(dir.path() / "sweep.log");
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& e : fs::directory_iterator(out / "runs")) {
    const nlohmann::json r = nlohmann::json::parse(test::read_file(e.path() / "result.json"));
    seen.emplace(r["config"]["combine"].get<std::string>(),
                 r["config"]["per_perspective"].get<std::string>());
  }
  EXPECT_EQ(seen.size(), 6u);
  EXPECT_EQ(run({"report", out.string()}, dir.path() / "report.log"), 0)
      << test::read_file(dir.path() / "report.log");
  EXPECT_NE(test::read_file(out / "results.csv").find("per_perspective"), std::string::npos);
}

// The paper's protocol as two sweeps (issue 17): K = 1 bases per cell and seed, then
// fine-tunes that each start from the base of their own cell and seed; the report over
// the fine-tunes tests a hypothesis file, and a rerun of one run reproduces its
// result.json bit for bit.
TEST(Sweep, ChainedSweepsHypothesesAndABitExactRerun) {
  test::TempDir dir;
  const fs::path base = dir.path() / "base", tune = dir.path() / "tune";
  ASSERT_EQ(run(sweep_args("cell=gru,ssm;seed=0,1", base, {"--perspectives", "1", "--jobs", "2"}),
                dir.path() / "base.log"),
            0)
      << test::read_file(dir.path() / "base.log");
  const std::string from =
      (base / "runs" / "cell-{cell}_seed-{seed}" / "model.safetensors").string();
  const std::string grid = "cell=gru,ssm;perspectives=1,3;seed=0,1";
  const std::vector<std::string> tune_args =
      sweep_args(grid, tune, {"--init-from", from, "--freeze", "base", "--jobs", "2"});
  // A placeholder no axis fills is refused before anything runs.
  EXPECT_EQ(run(sweep_args("cell=gru;seed=0", dir.path() / "bad",
                           {"--init-from", (base / "{width}").string()}),
                dir.path() / "bad.log"),
            2);
  EXPECT_NE(test::read_file(dir.path() / "bad.log").find("{width}, which names no axis"),
            std::string::npos)
      << test::read_file(dir.path() / "bad.log");
  // A base that is not there is found before any run starts.
  EXPECT_EQ(run(sweep_args("cell=gru,lstm;seed=0", dir.path() / "bad2",
                           {"--init-from", from, "--freeze", "base"}),
                dir.path() / "bad2.log"),
            2);
  EXPECT_NE(test::read_file(dir.path() / "bad2.log")
                .find("cell-lstm_seed-0/model.safetensors: no such file"),
            std::string::npos)
      << test::read_file(dir.path() / "bad2.log");
  EXPECT_FALSE(fs::exists(dir.path() / "bad2" / "runs" / "cell-gru_seed-0" / "result.json"));
  ASSERT_EQ(run(tune_args, dir.path() / "tune.log"), 0) << test::read_file(dir.path() / "tune.log");
  const fs::path one = tune / "runs" / "cell-ssm_perspectives-3_seed-1";
  const nlohmann::json result = nlohmann::json::parse(test::read_file(one / "result.json"));
  EXPECT_EQ(result["config"]["init_from"],
            (base / "runs" / "cell-ssm_seed-1" / "model.safetensors").string());
  EXPECT_FALSE(result.contains("throughput")) << "speed is not a result: throughput.json";
  EXPECT_TRUE(fs::exists(one / "throughput.json"));
  // What the views settled on: the recurrent state, and per layer K decay means, time
  // scales and (learned selector) selection weights that sum to 1.
  const nlohmann::json& views = result["views"];
  EXPECT_EQ(views["state_floats"], 3 * 8) << "1 layer, K = 3, the SSM's N = W = 8";
  ASSERT_EQ(views["layers"].size(), 1u);
  EXPECT_EQ(views["layers"][0]["decay_mean"].size(), 3u);
  EXPECT_EQ(views["layers"][0]["time_scale_quartiles"].size(), 3u);
  double weight = 0;
  for (const auto& w : views["layers"][0]["selection_mean"]) weight += w.get<double>();
  EXPECT_NEAR(weight, 1.0, 1e-5);

  const fs::path hypotheses = dir.path() / "hypotheses.json";
  std::ofstream(hypotheses) << R"({"baseline_band": [0.3, 0.85], "hypotheses": [
      {"id": "H1", "claim": "three views beat one, the base frozen",
       "comparisons": [{"treatment": {"perspectives": 3}, "control": {"perspectives": 1}}]}]})";
  ASSERT_EQ(run({"report", tune.string(), "--hypotheses", hypotheses.string()},
                dir.path() / "report.log"),
            0)
      << test::read_file(dir.path() / "report.log");
  const std::string md = test::read_file(tune / "REPORT.md");
  EXPECT_NE(md.find("## Findings"), std::string::npos) << md;
  EXPECT_NE(md.find("**H1** (three views beat one, the base frozen):"), std::string::npos) << md;
  EXPECT_NE(md.find("### H1: three views beat one, the base frozen"), std::string::npos) << md;
  EXPECT_NE(md.find("| cell=gru perspectives=3 | perspectives=1 | 2 |"), std::string::npos) << md;
  EXPECT_NE(md.find("## What the views settled on"), std::string::npos) << md;
  const std::string summary = test::read_file(tune / "summary.csv");
  EXPECT_EQ(std::count(summary.begin(), summary.end(), '\n'), 1 + 4)
      << "the fine-tunes of both seeds are one configuration: init_from shows its template\n"
      << summary;
  for (const char* plot : {"gain_per_group_gru", "training_curves_ssm", "metric_vs_state"})
    EXPECT_TRUE(fs::exists(tune / "plots" / (std::string(plot) + ".dat"))) << plot;
  // A report without the hypotheses draws accuracy per group instead: the gain plots of
  // the one before are gone, not left behind as if current.
  ASSERT_EQ(run({"report", tune.string()}, dir.path() / "report2.log"), 0);
  EXPECT_TRUE(fs::exists(tune / "plots" / "accuracy_per_group_gru.dat"));
  EXPECT_FALSE(fs::exists(tune / "plots" / "gain_per_group_gru.dat"));

  // Rerun one configuration with the recorded command: the same result.json, byte for byte.
  const std::string before = test::read_file(one / "result.json");
  fs::rename(one, dir.path() / "moved");
  ASSERT_EQ(run(tune_args, dir.path() / "rerun.log"), 0)
      << test::read_file(dir.path() / "rerun.log");
  EXPECT_NE(test::read_file(dir.path() / "rerun.log").find("7 already finished, 1 to run"),
            std::string::npos);
  EXPECT_EQ(test::read_file(one / "result.json"), before);
}

TEST(Sweep, KilledSweepResumesWithoutRedoingFinishedRuns) {
  test::TempDir dir;
  const fs::path out = dir.path() / "sweep";
  // Eight runs of 60 steps, one at a time; kill the sweep (SIGKILL) once two are done.
  const std::string grid = "cell=gru,ssm;perspectives=1,3;seed=0,1";
  // ... validating every 20 steps: the report draws the validation curves.
  auto slow = [&](std::vector<std::string> a) {
    for (size_t i = 0; i + 1 < a.size(); ++i)
      if (a[i] == "--steps") a[i + 1] = "60";
    a.insert(a.end(), {"--eval-every", "20"});
    return a;
  };
  std::vector<std::string> args = slow(sweep_args(grid, out, {"--jobs", "1", "--threads", "1"}));
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::vector<char*> argv{const_cast<char*>(MTP_EXP_PATH)};
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, STDOUT_FILENO);
    ::execv(MTP_EXP_PATH, argv.data());
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (finished_runs(out) < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const int done_before = finished_runs(out);
  ASSERT_GE(done_before, 2);
  ASSERT_LT(done_before, 8) << "the sweep finished before it could be killed";
  // Its running child dies with it: nothing more finishes after the kill.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(finished_runs(out), done_before) << "a run outlived the killed sweep";

  // Resuming with other shared flags is refused: it would mix settings.
  EXPECT_EQ(run(sweep_args(grid, out, {"--jobs", "2"}), dir.path() / "other.log"), 2);
  EXPECT_NE(test::read_file(dir.path() / "other.log").find("other shared flags"),
            std::string::npos);
  ASSERT_EQ(run(slow(sweep_args(grid, out, {"--jobs", "2"})), dir.path() / "resume.log"), 0)
      << test::read_file(dir.path() / "resume.log");
  const std::string log = test::read_file(dir.path() / "resume.log");
  EXPECT_NE(log.find(std::to_string(done_before) + " already finished"), std::string::npos) << log;
  EXPECT_EQ(finished_runs(out), 8);

  // The report over the finished sweep.
  ASSERT_EQ(run({"report", out.string()}, dir.path() / "report.log"), 0)
      << test::read_file(dir.path() / "report.log");
  const std::string results = test::read_file(out / "results.csv");
  EXPECT_EQ(std::count(results.begin(), results.end(), '\n'), 1 + 8);
  EXPECT_NE(results.find("acc lag 4"), std::string::npos);
  const std::string summary = test::read_file(out / "summary.csv");
  EXPECT_EQ(std::count(summary.begin(), summary.end(), '\n'), 1 + 4) << "four configurations";
  const std::string md = test::read_file(out / "REPORT.md");
  EXPECT_NE(md.find("cell=gru perspectives=3 | cell=gru perspectives=1 | 2 |"), std::string::npos)
      << "paired by seed against the K = 1 baseline\n"
      << md;
  EXPECT_NE(md.find("mtp-exp sweep --grid '" + grid + "'"), std::string::npos)
      << "the command is recorded, quoted for a shell\n"
      << md;
  EXPECT_NE(md.find("| last Δ |"), std::string::npos) << md;
  EXPECT_NE(md.find("steps 40→60) |"), std::string::npos) << md;
  EXPECT_NE(md.find("The largest relative change is"), std::string::npos) << md;
  EXPECT_EQ(md.find("inf%"), std::string::npos) << md;
  EXPECT_EQ(md.find("nan%"), std::string::npos) << md;
  for (const char* plot : {"metric_vs_k_gru", "accuracy_per_group_ssm", "training_curves_gru",
                           "validation_curves_ssm"}) {
    EXPECT_TRUE(fs::exists(out / "plots" / (std::string(plot) + ".dat"))) << plot;
    EXPECT_NE(md.find(std::string("plots/") + plot + ".svg"), std::string::npos) << plot;
  }
}

TEST(Sweep, ShardsSplitTheRunsAndSlurmScriptRunsThem) {
  test::TempDir dir;
  const fs::path out = dir.path() / "sweep";
  const std::string grid = "perspectives=1,2,3";
  ASSERT_EQ(run(sweep_args(grid, out, {"--shard", "1/2"}), dir.path() / "a.log"), 0)
      << test::read_file(dir.path() / "a.log");
  EXPECT_EQ(finished_runs(out), 1) << "shard 1 of 2 holds run 1 only";
  EXPECT_TRUE(fs::exists(out / "runs" / "perspectives-2" / "result.json"));
  ASSERT_EQ(run(sweep_args(grid, out, {"--shard", "0/2"}), dir.path() / "b.log"), 0);
  EXPECT_EQ(finished_runs(out), 3);

  const fs::path script = dir.path() / "sweep.sbatch";
  ASSERT_EQ(run(sweep_args(grid, dir.path() / "s2",
                           {"--emit-slurm", script.string(), "--slurm-tasks", "2"}),
                dir.path() / "c.log"),
            0);
  const std::string s = test::read_file(script);
  EXPECT_NE(s.find("#SBATCH --array=0-1"), std::string::npos) << s;
  EXPECT_NE(s.find("--shard \"${SLURM_ARRAY_TASK_ID}/2\""), std::string::npos) << s;
  EXPECT_EQ(finished_runs(dir.path() / "s2"), 0) << "emitting runs nothing";

  // Bad grids and flags are refused before any run starts.
  EXPECT_EQ(run(sweep_args("cell=gru,nope", dir.path() / "s3"), dir.path() / "d.log"), 2);
  EXPECT_FALSE(fs::exists(dir.path() / "s3"));
  EXPECT_EQ(
      run(sweep_args("cell=gru", dir.path() / "s4", {"--shard", "2/2"}), dir.path() / "e.log"), 2);
}

// A run that was killed after writing its training state continues from it when the
// sweep is run again, instead of starting over (here: killed after its last checkpoint,
// before its result), and ends with the same result.
TEST(Sweep, UnfinishedRunWithATrainingStateResumes) {
  test::TempDir dir;
  const fs::path out = dir.path() / "sweep";
  const std::vector<std::string> ckpt = {"--checkpoint-every", "2"};
  ASSERT_EQ(run(sweep_args("perspectives=1,2", out, ckpt), dir.path() / "a.log"), 0)
      << test::read_file(dir.path() / "a.log");
  const fs::path run_dir = out / "runs" / "perspectives-2";
  const std::string result = test::read_file(run_dir / "result.json");
  ASSERT_TRUE(fs::exists(run_dir / "training-state.safetensors"));
  fs::remove(run_dir / "result.json");
  ASSERT_EQ(run(sweep_args("perspectives=1,2", out, ckpt), dir.path() / "b.log"), 0)
      << test::read_file(dir.path() / "b.log");
  const std::string log = test::read_file(run_dir / "log.txt");
  EXPECT_NE(log.find("resumed      from step 4 of 4"), std::string::npos) << log;
  EXPECT_LT(log.find("wrote"), log.find("resumed")) << "the first attempt's log is kept\n" << log;
  const auto before = nlohmann::json::parse(result);
  const auto after = nlohmann::json::parse(test::read_file(run_dir / "result.json"));
  EXPECT_EQ(before["validation"], after["validation"]);
  EXPECT_EQ(before["train"], after["train"]);
}

}  // namespace
}  // namespace mtp::exp
