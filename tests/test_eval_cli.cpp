// `mtp-exp eval --benchmark` through the real binary: a tiny text checkpoint scored on
// a small file of each benchmark (JSON fields, --limit, the summary line), and the
// errors: a non-text checkpoint, a malformed file, an unknown benchmark, misused flags.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "run_binary.hpp"
#include "temp_dir.hpp"

namespace mtp {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using test::Result;

Result run(const test::TempDir& dir, const std::vector<std::string>& args) {
  return test::run_mtp_exp_captured(args, dir.path());
}

// One tiny text checkpoint and one mqar checkpoint, trained once for all tests.
class EvalCli : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    std::string text;
    for (int i = 0; i < 200; ++i) text += "the cat sat on the mat. ";
    const std::string corpus = dir_->file("corpus.txt", text).string();
    const std::vector<std::string> tiny = {"--steps", "3", "--width",   "8", "--layers",      "1",
                                           "--batch", "2", "--threads", "1", "--val-batches", "1"};
    std::vector<std::string> args = {
        "--task",    "text", "--data", corpus,
        "--seq-len", "8",    "--out",  (dir_->path() / "text").string()};
    args.insert(args.end(), tiny.begin(), tiny.end());
    const Result t = run(*dir_, args);
    ASSERT_EQ(t.status, 0) << t.describe();
    args = {"--task", "mqar", "--out", (dir_->path() / "mqar").string()};
    args.insert(args.end(), tiny.begin(), tiny.end());
    const Result m = run(*dir_, args);
    ASSERT_EQ(m.status, 0) << m.describe();
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string checkpoint(const char* run) {
    return (dir_->path() / run / "model.safetensors").string();
  }
  static test::TempDir* dir_;
};
test::TempDir* EvalCli::dir_ = nullptr;

struct Bench {
  const char* name;
  const char* file;
  std::string data;
  int examples;
  bool acc_norm, perplexity;
};

const std::vector<Bench>& benches() {
  static const std::vector<Bench> b = {
      {"lambada", "lambada.txt", "the cat sat on the mat\nthe cat sat on the\nthe mat sat\n", 3,
       false, true},
      {"arc-easy", "arc.jsonl",
       R"({"question":{"stem":"Where did the cat sit?","choices":[{"text":"on the mat","label":"A"},{"text":"in the sea","label":"B"}]},"answerKey":"A"})"
       "\n"
       R"({"question":{"stem":"What sat?","choices":[{"text":"the cat","label":"1"},{"text":"a dog","label":"2"},{"text":"x","label":"3"}]},"answerKey":"1"})"
       "\n",
       2, true, false},
      {"piqa", "piqa.jsonl",
       R"({"goal":"sit","sol1":"on the mat","sol2":"on the sea"})"
       "\n"
       R"({"goal":"cat","sol1":"sat","sol2":"swam"})"
       "\n",
       2, true, false},
      {"winogrande", "wino.jsonl",
       R"({"sentence":"the cat sat on the _.","option1":"mat","option2":"sea","answer":"1"})"
       "\n"
       R"({"sentence":"the _ sat on the mat.","option1":"cat","option2":"dog","answer":"1"})"
       "\n",
       2, false, false},
      {"lambada-openai", "lambada_openai.jsonl",
       R"({"text":"the cat sat\non the mat"})"
       "\n"
       R"({"text":"\"the cat,\" she said. the mat"})"
       "\n",
       2, false, true},
      {"hellaswag", "hellaswag.jsonl",
       R"({"activity_label":"Cats","ctx_a":"the cat","ctx_b":"SAT on","endings":["the mat.","the [title] sea."],"label":0})"
       "\n",
       1, true, false},
  };
  return b;
}

TEST_F(EvalCli, ScoresEachBenchmarkAsJson) {
  dir_->file("piqa_labels.lst", "0\n0\n");
  for (const Bench& b : benches()) {
    const std::string data = dir_->file(b.file, b.data).string();
    const Result r = run(*dir_, {"eval", "--checkpoint", checkpoint("text"), "--benchmark", b.name,
                                 "--data", data, "--threads", "1", "--json"});
    ASSERT_EQ(r.status, 0) << b.name << "\n" << r.describe();
    const json j = json::parse(r.out);
    EXPECT_EQ(j.at("benchmark"), b.name);
    EXPECT_EQ(j.at("examples"), b.examples) << b.name;
    EXPECT_EQ(j.at("data"), data);
    EXPECT_EQ(j.at("checkpoint"), checkpoint("text"));
    const double acc = j.at("acc").get<double>();
    EXPECT_TRUE(acc >= 0 && acc <= 1) << acc;
    // Accuracy over n examples is a multiple of 1/n.
    EXPECT_NEAR(acc * b.examples, std::round(acc * b.examples), 1e-9) << b.name;
    EXPECT_EQ(j.contains("acc_norm"), b.acc_norm) << b.name;
    EXPECT_EQ(j.contains("perplexity"), b.perplexity) << b.name;
    if (b.perplexity) {
      EXPECT_GT(j["perplexity"].get<double>(), 1.0);
    }
    EXPECT_GE(j.at("seconds").get<double>(), 0.0);

    // --limit 1: the first example only.
    const Result one = run(*dir_, {"eval", "--checkpoint", checkpoint("text"), "--benchmark",
                                   b.name, "--data", data, "--threads", "1", "--limit", "1"});
    ASSERT_EQ(one.status, 0) << one.describe();
    EXPECT_TRUE(std::regex_match(
        one.out,
        std::regex(std::string(b.name) +
                   ": acc [01]\\.0000 ± 0\\.0000(  acc_norm [01]\\.0000 ± 0\\.0000)?(  "
                   "perplexity [0-9.]+ ± 0\\.00)?  \\(1 (passages|questions|sentences|contexts)\\)\n")))
        << one.out;
  }
}

TEST_F(EvalCli, RefusesANonTextCheckpoint) {
  const std::string data = dir_->file("l.txt", "a b\n").string();
  const Result r = run(*dir_, {"eval", "--checkpoint", checkpoint("mqar"), "--benchmark", "lambada",
                               "--data", data});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_TRUE(r.out.empty());
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("mtp-exp: error:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("score text models"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("mqar"), std::string::npos) << r.err;
}

TEST_F(EvalCli, MalformedFileAndMisusedFlags) {
  const std::string bad = dir_->file("bad.jsonl", "{\"goal\":\"g\",\"sol1\":\"a\"}\n").string();
  dir_->file("bad_labels.lst", "0\n");
  Result r = run(
      *dir_, {"eval", "--checkpoint", checkpoint("text"), "--benchmark", "piqa", "--data", bad});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find(bad + ":1: missing field 'sol2'"), std::string::npos) << r.err;

  const std::string ok = dir_->file("ok.txt", "a b\n").string();
  const std::vector<std::pair<std::vector<std::string>, std::string>> usage = {
      {{"--benchmark", "storycloze", "--data", ok}, "storycloze"},
      {{"--benchmark", "lambada", "--data", ok, "--prefix-token", "-1"}, "--prefix-token"},
      {{"--prefix-token", "0"}, "--benchmark"},
      {{"--benchmark", "lambada"}, "--data"},
      {{"--benchmark", "lambada", "--data", ok, "--limit", "0"}, "--limit"},
      {{"--benchmark", "lambada", "--data", ok, "--labels", ok}, "piqa only"},
      {{"--limit", "3"}, "--benchmark"},
  };
  for (const auto& [extra, fragment] : usage) {
    std::vector<std::string> args = {"eval", "--checkpoint", checkpoint("text")};
    args.insert(args.end(), extra.begin(), extra.end());
    r = run(*dir_, args);
    EXPECT_EQ(r.status, 2) << fragment << "\n" << r.describe();
    EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace mtp
