// Checkpoints and resume through the real binary: a run killed with SIGKILL after a
// checkpoint and resumed with --resume ends with the metrics of an uninterrupted run
// (same seed, same threads), for a generated task and for text with the state carried
// across chunks; bad resumes are refused cleanly.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <thread>

#include "mtp/core/safetensors.hpp"
#include "run_binary.hpp"
#include "temp_dir.hpp"

namespace mtp {
namespace {

namespace fs = std::filesystem;
using test::run_mtp_exp;

// The metrics.csv columns that do not depend on timing: step, split, loss, accuracy,
// bpb, lr, grad_norm.
std::string deterministic_columns(const fs::path& csv) {
  std::string out, line;
  std::istringstream in(test::read_file(csv));
  while (std::getline(in, line)) {
    size_t cut = 0;
    for (int comma = 0; comma < 7 && cut != std::string::npos; ++comma)
      cut = line.find(',', cut + 1);
    out += line.substr(0, cut) + "\n";
  }
  return out;
}

// Starts `args` as a child, kills it with SIGKILL once `path` exists (the first
// checkpoint), and returns whether it was still running then.
bool kill_after(const std::vector<std::string>& args, const fs::path& path, const fs::path& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<const char*> argv{MTP_EXP_PATH};
    for (const std::string& a : args) argv.push_back(a.c_str());
    argv.push_back(nullptr);
    const std::string l = log.string();
    (void)!std::freopen(l.c_str(), "w", stdout);
    ::execv(MTP_EXP_PATH, const_cast<char* const*>(argv.data()));
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(path) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const bool running = ::kill(pid, SIGKILL) == 0;
  int status = 0;
  ::waitpid(pid, &status, 0);
  return running && WIFSIGNALED(status);
}

void killed_and_resumed_equals_uninterrupted(std::vector<std::string> args) {
  test::TempDir dir;
  const fs::path full = dir.path() / "full", part = dir.path() / "part";
  args.insert(args.end(), {"--threads", "2", "--log-every", "5", "--checkpoint-every", "10"});
  auto with_out = [&](const fs::path& out) {
    std::vector<std::string> a = args;
    a.insert(a.end(), {"--out", out.string()});
    return a;
  };
  ASSERT_EQ(run_mtp_exp(with_out(full), dir.path() / "full.log"), 0)
      << test::read_file(dir.path() / "full.log");

  ASSERT_TRUE(
      kill_after(with_out(part), part / "training-state.safetensors", dir.path() / "part.log"))
      << "the run ended before it could be killed";
  EXPECT_FALSE(fs::exists(part / "result.json"));
  ASSERT_EQ(run_mtp_exp({"--resume", part.string(), "--threads", "2"}, dir.path() / "resume.log"),
            0)
      << test::read_file(dir.path() / "resume.log");
  const std::string log = test::read_file(dir.path() / "resume.log");
  // The kill came mid-run: the resumed part has steps left to do.
  const size_t at = log.find("resumed      from step ");
  ASSERT_NE(at, std::string::npos) << log;
  const long long from = std::stoll(log.substr(at + 23));
  const long long of = std::stoll(log.substr(log.find(" of ", at) + 4));
  EXPECT_LT(from, of) << "killed after the last step: nothing resumed";

  EXPECT_EQ(deterministic_columns(part / "metrics.csv"),
            deterministic_columns(full / "metrics.csv"));
  const auto a = nlohmann::json::parse(test::read_file(full / "result.json"));
  const auto b = nlohmann::json::parse(test::read_file(part / "result.json"));
  EXPECT_EQ(a["validation"], b["validation"]);
  EXPECT_EQ(a["train"], b["train"]);
  // The final parameters are the same bits (the files differ only in the folder named in
  // their configuration).
  const SafeTensors fa = SafeTensors::load((full / "model.safetensors").string());
  const SafeTensors fb = SafeTensors::load((part / "model.safetensors").string());
  ASSERT_EQ(fa.tensors.size(), fb.tensors.size());
  for (const auto& [name, t] : fa.tensors) {
    ASSERT_TRUE(fb.has(name)) << name;
    EXPECT_EQ(t.bytes, fb.at(name).bytes) << name;
  }
}

TEST(Resume, KilledGeneratedTaskRunReproducesTheUninterruptedRun) {
  killed_and_resumed_equals_uninterrupted({"--task", "lag-recall", "--steps", "40", "--batch", "4",
                                           "--seq-len", "48", "--lags", "2,8", "--width", "16",
                                           "--val-batches", "2", "--noise", "0.3"});
}

TEST(Resume, KilledTextRunWithCarriedStateReproducesTheUninterruptedRun) {
  test::TempDir data;
  std::string text;
  for (int i = 0; i < 400; ++i)
    text += "the quick brown fox " + std::to_string(i * 7919 % 1000) + ". ";
  const fs::path corpus = data.file("corpus.txt", text);
  killed_and_resumed_equals_uninterrupted(
      {"--task", "text", "--data", corpus.string(), "--carry-state", "--cell", "rwkv", "--steps",
       "30", "--batch", "4", "--seq-len", "16", "--width", "16", "--val-batches", "2"});
}

// A learning rate that blows the weights up: the first non-finite loss or gradient stops
// the run with one line naming the step (and the tensor, for a gradient), exit 1; the
// training state on disk is the last good one, all finite, and no result is written.
TEST(Resume, NonFiniteTrainingStopsAndKeepsTheLastGoodState) {
  test::TempDir dir;
  const fs::path out = dir.path() / "run";
  ASSERT_EQ(run_mtp_exp({"--task", "mqar", "--steps", "50", "--batch", "2", "--width", "8",
                         "--val-batches", "1", "--lr", "1e30", "--warmup", "0",
                         "--checkpoint-every", "1", "--out", out.string()},
                        dir.path() / "nan.log"),
            1);
  const std::string log = test::read_file(dir.path() / "nan.log");
  const size_t at = log.find("mtp-exp: error: step ");
  ASSERT_NE(at, std::string::npos) << log;
  EXPECT_NE(log.find("stopping", at), std::string::npos) << log;
  const long long failed_step = std::stoll(log.substr(at + 21));
  EXPECT_FALSE(fs::exists(out / "result.json"));
  EXPECT_FALSE(fs::exists(out / "model.safetensors"));

  const SafeTensors state = SafeTensors::load((out / "training-state.safetensors").string());
  const auto tally = nlohmann::json::parse(state.metadata.at("tally"));
  EXPECT_EQ(tally["step"].get<long long>(), failed_step - 1) << "the last step that completed";
  for (const auto& [name, t] : state.tensors)
    for (float v : t.to<float>(name)) ASSERT_TRUE(std::isfinite(v)) << name;
}

TEST(Resume, RefusesOtherSettingsAndMissingOrBrokenState) {
  test::TempDir dir;
  const fs::path out = dir.path() / "run";
  const std::vector<std::string> run = {"--task",        "mqar", "--steps", "4",
                                        "--batch",       "2",    "--width", "8",
                                        "--val-batches", "1",    "--out",   out.string()};
  ASSERT_EQ(run_mtp_exp(run, dir.path() / "plain.log"), 0);
  // Started without --checkpoint-every: nothing to resume from.
  EXPECT_EQ(run_mtp_exp({"--resume", out.string()}, dir.path() / "none.log"), 1);
  EXPECT_NE(test::read_file(dir.path() / "none.log").find("training-state.safetensors"),
            std::string::npos);
  // A setting other than --threads with --resume is a usage error.
  EXPECT_EQ(run_mtp_exp({"--resume", out.string(), "--lr", "0.1"}, dir.path() / "flag.log"), 2);
  EXPECT_NE(test::read_file(dir.path() / "flag.log").find("--lr"), std::string::npos);
  EXPECT_EQ(run_mtp_exp({"--resume", (dir.path() / "nowhere").string()}, dir.path() / "gone.log"),
            1);

  // A training state whose run had other settings than config.json is refused. (The
  // run replaces the finished one in its folder: only with --overwrite.)
  std::vector<std::string> with_ckpt = run;
  with_ckpt.insert(with_ckpt.end(), {"--checkpoint-every", "2"});
  EXPECT_EQ(run_mtp_exp(with_ckpt, dir.path() / "ckpt.log"), 2);
  with_ckpt.push_back("--overwrite");
  ASSERT_EQ(run_mtp_exp(with_ckpt, dir.path() / "ckpt.log"), 0);
  const std::string config = test::read_file(out / "config.json");
  const std::string lr_text = "\"lr\": 0.003";
  const size_t lr = config.find(lr_text);
  ASSERT_NE(lr, std::string::npos) << config;
  std::string edited = config;
  edited.replace(lr, lr_text.size(), "\"lr\": 0.004");
  test::TempDir edit;
  fs::copy_file(edit.file("config.json", edited), out / "config.json",
                fs::copy_options::overwrite_existing);
  EXPECT_EQ(run_mtp_exp({"--resume", out.string()}, dir.path() / "other.log"), 1);
  EXPECT_NE(test::read_file(dir.path() / "other.log").find("other settings"), std::string::npos)
      << test::read_file(dir.path() / "other.log");
  fs::copy_file(edit.file("config.json", config), out / "config.json",
                fs::copy_options::overwrite_existing);

  // A truncated training state is refused with one line naming the file.
  const fs::path state = out / "training-state.safetensors";
  ASSERT_TRUE(fs::exists(state));
  fs::resize_file(state, fs::file_size(state) / 2);
  EXPECT_EQ(run_mtp_exp({"--resume", out.string()}, dir.path() / "broken.log"), 1);
  const std::string broken = test::read_file(dir.path() / "broken.log");
  EXPECT_NE(broken.find("training-state.safetensors"), std::string::npos) << broken;
  EXPECT_EQ(std::count(broken.begin(), broken.end(), '\n'), 1) << broken;
}

}  // namespace
}  // namespace mtp
