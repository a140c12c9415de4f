// The mtp-exp binary end to end (docs/cli.md, docs/reliability.md): help output, exit statuses and
// one-line errors for bad flags and files, no output written on failure, a tiny
// training run with its files, eval reproducing the run's validation result, text
// runs, and the `layer` command checked against an independent GRU reference.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>
#include "run_binary.hpp"
#include "temp_dir.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "mtp/core/safetensors.hpp"
#include "mtp/experiments/cli.hpp"
#include "mtp/experiments/config.hpp"
#include "mtp/experiments/tasks.hpp"

namespace mtp {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> lines;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

using test::Result;

// Every test works in a fresh temp folder `root`. The binary runs with `cwd` (an
// empty folder inside it) as its working directory, so a test can check that a failed
// command left nothing behind, not even a default runs/ folder.
class Cli : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "mtp-test-cli-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    cwd_ = root_ / "cwd";
    fs::create_directory(cwd_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  Result run(const std::vector<std::string>& args) {
    return test::run_mtp_exp_captured(args, root_, cwd_);
  }

  std::vector<std::string> cwd_entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(cwd_))
      names.push_back(e.path().filename().string());
    return names;
  }

  // A failed command: the given status, exactly one line on stderr, starting with
  // "mtp-exp: error:" and containing every fragment; nothing on stdout; nothing written.
  void expect_failure(const std::vector<std::string>& args, int status,
                      const std::vector<std::string>& fragments) {
    std::string joined;
    for (const std::string& a : args) joined += a + " ";
    SCOPED_TRACE("mtp-exp " + joined);
    const Result r = run(args);
    EXPECT_EQ(r.status, status) << r.describe();
    const std::vector<std::string> lines = lines_of(r.err);
    ASSERT_EQ(lines.size(), 1u) << "stderr must be exactly one line\n" << r.describe();
    EXPECT_EQ(r.err.back(), '\n');
    EXPECT_EQ(lines[0].rfind("mtp-exp: error:", 0), 0u) << lines[0];
    for (const std::string& f : fragments)
      EXPECT_NE(lines[0].find(f), std::string::npos) << "'" << f << "' missing from: " << lines[0];
    EXPECT_EQ(r.out, "") << "a failed command prints its error on stderr only";
    EXPECT_TRUE(cwd_entries().empty()) << "created " << cwd_entries().front();
    EXPECT_FALSE(fs::exists(out_dir())) << "--out folder created by a failed run";
  }

  // The train flags every test run uses, tiny and single-threaded; a flag in `extra`
  // replaces its default (mtp-exp rejects a flag given twice).
  std::vector<std::string> tiny(const std::vector<std::string>& extra = {}) const {
    std::vector<std::pair<std::string, std::string>> defaults = {
        {"--steps", "3"},    {"--width", "8"},
        {"--layers", "1"},   {"--batch", "4"},
        {"--seq-len", "16"}, {"--val-batches", "1"},
        {"--threads", "1"},  {"--out", out_dir().string()}};
    // --pairs is mqar's own: another task refuses it.
    const auto task = std::find(extra.begin(), extra.end(), "--task");
    if (task == extra.end() || (task + 1 != extra.end() && task[1] == "mqar"))
      defaults.emplace_back("--pairs", "2");
    return with_defaults(defaults, extra);
  }
  static std::vector<std::string> with_defaults(
      const std::vector<std::pair<std::string, std::string>>& defaults,
      const std::vector<std::string>& extra) {
    std::vector<std::string> a;
    for (const auto& [flag, value] : defaults) {
      if (std::find(extra.begin(), extra.end(), flag) != extra.end()) continue;
      a.push_back(flag);
      a.push_back(value);
    }
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  fs::path out_dir() const { return cwd_ / "out"; }

  fs::path root_, cwd_;
};

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// ---------------------------------------------------------------------------- help

TEST_F(Cli, HelpListsEveryTrainFlag) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--help"}, std::vector<std::string>{"train", "--help"},
        std::vector<std::string>{"-h"}}) {
    const Result r = run(args);
    EXPECT_EQ(r.status, 0) << r.describe();
    EXPECT_EQ(r.err, "");
    for (const char* flag :
         {"--cell", "--perspectives", "--aggregator", "--noise", "--decay-spread", "--layers",
          "--width", "--steps", "--batch", "--seq-len", "--lr", "--seed", "--task", "--data",
          "--out", "--threads", "--fixed-weights"})
      EXPECT_NE(r.out.find(std::string(flag) + " "), std::string::npos) << flag << "\n" << r.out;
    EXPECT_NE(r.out.find("usage: mtp-exp"), std::string::npos);
  }
  EXPECT_TRUE(cwd_entries().empty());
}

TEST_F(Cli, EvalAndLayerHelp) {
  const Result e = run({"eval", "--help"});
  EXPECT_EQ(e.status, 0) << e.describe();
  EXPECT_EQ(e.err, "");
  for (const char* flag : {"--checkpoint", "--data", "--threads", "--json"})
    EXPECT_NE(e.out.find(flag), std::string::npos) << flag << "\n" << e.out;

  const Result l = run({"layer", "--help"});
  EXPECT_EQ(l.status, 0) << l.describe();
  EXPECT_EQ(l.err, "");
  for (const char* flag : {"--params", "--input", "--output", "--dtype", "--cell", "--perspectives",
                           "--aggregator", "--fixed-weights"})
    EXPECT_NE(l.out.find(flag), std::string::npos) << flag << "\n" << l.out;
  EXPECT_TRUE(cwd_entries().empty());
}

// --------------------------------------------------------------------- usage errors

TEST_F(Cli, BadFlagsExitTwoWithOneLine) {
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> fragments;
  };
  const std::vector<Case> cases = {
      {tiny({"--bogus"}), {"--bogus"}},
      {tiny({"--bogus=1"}), {"--bogus"}},
      {tiny({"--cell", "transformer"}), {"--cell", "transformer"}},
      {tiny({"--aggregator", "max"}), {"--aggregator", "max"}},
      {tiny({"--task", "imagenet"}), {"--task", "imagenet"}},
      {{"frobnicate", "--steps", "1"}, {"frobnicate"}},
      {tiny({"--perspectives", "0"}), {"--perspectives"}},
      {tiny({"--perspectives", "65"}), {"--perspectives"}},
      {tiny({"--perspectives", "abc"}), {"--perspectives", "abc"}},
      {tiny({"--perspectives"}), {"--perspectives"}},
      {tiny({"--noise", "-1"}), {"--noise"}},
      {tiny({"--noise=-1"}), {"--noise"}},
      {tiny({"--noise", "nan"}), {"--noise"}},
      {tiny({"--aggregator", "fixed", "--perspectives", "2", "--fixed-weights", "0.5,0.3,0.2"}),
       {"--fixed-weights", "3"}},
      {tiny({"--aggregator", "fixed", "--perspectives", "2", "--fixed-weights", "0.5,0.4"}),
       {"--fixed-weights"}},
      {tiny({"--aggregator", "fixed", "--perspectives", "2", "--fixed-weights", "0.5,abc"}),
       {"--fixed-weights", "abc"}},
      {tiny({"--aggregator", "fixed", "--perspectives", "2", "--fixed-weights", "0.5,0.5x"}),
       {"--fixed-weights", "0.5x"}},
      {tiny({"--perspectives", "2", "--fixed-weights", "0.5,0.5"}),
       {"--fixed-weights", "--aggregator fixed"}},
      {tiny({"--aggregator", "mean", "--perspectives", "2", "--fixed-weights", "0.5,0.5"}),
       {"--fixed-weights", "--aggregator fixed"}},
      {tiny({"--steps", "0"}), {"--steps"}},
      {tiny({"--steps", "-5"}), {"--steps"}},
      {tiny({"--pairs", "8", "--seq-len", "31"}), {"--seq-len", "31"}},
      {tiny({"--pairs", "40"}), {"--pairs"}},
      {tiny({"--width", "0"}), {"--width"}},
      {tiny({"--lr", "0"}), {"--lr"}},
      {tiny({"--seed", "-1"}), {"--seed"}},
      {tiny({"--checkpoint-every", "-1"}), {"--checkpoint-every"}},
      {tiny({"--task", "text"}), {"--data"}},
      {tiny({"stray"}), {"positional"}},
      {{"train", "stray", "--out", out_dir().string()}, {"positional"}},
      {{"eval"}, {"--checkpoint"}},
      {{"eval", "--checkpoint", "x.safetensors", "extra"}, {"positional"}},
      {{"eval", "--checkpoint", "x.safetensors", "--bogus"}, {"--bogus"}},
      {{"layer"}, {"--params"}},
      {{"layer", "--cell", "rnn", "--params", "p", "--input", "x", "--output", "y"}, {"rnn"}},
      {{"layer", "--dtype", "f16", "--params", "p", "--input", "x", "--output", "y"}, {"--dtype"}},
  };
  for (const Case& c : cases) expect_failure(c.args, 2, c.fragments);
}

// ------------------------------------------------------------- missing/broken files

TEST_F(Cli, MissingFilesExitOneNamingTheFile) {
  const std::string missing = (root_ / "nonexistent" / "corpus.txt").string();
  expect_failure(tiny({"--task", "text", "--data", missing}), 1, {missing});
  const std::string ckpt = (root_ / "nonexistent.safetensors").string();
  expect_failure({"eval", "--checkpoint", ckpt}, 1, {ckpt});
  expect_failure({"eval", "--checkpoint", ckpt, "--json"}, 1, {ckpt});

  const fs::path x = root_ / "x.safetensors";
  SafeTensors in;
  const std::vector<float> xs(6, 0.5f);
  in.put("x", {1, 2, 3}, xs.data());
  in.save(x.string());
  const std::string params = (root_ / "no-params.safetensors").string();
  expect_failure({"layer", "--params", params, "--input", x.string(), "--output",
                  (cwd_ / "y.safetensors").string()},
                 1, {params});
}

TEST_F(Cli, MalformedCheckpointExitsOne) {
  // Random bytes.
  const fs::path junk = root_ / "junk.safetensors";
  std::string bytes(4096, '\0');
  std::uint64_t s = 12345;
  for (char& c : bytes) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    c = char(s >> 56);
  }
  write_text(junk, bytes);
  expect_failure({"eval", "--checkpoint", junk.string()}, 1, {junk.string()});

  // A plausible small header length followed by garbage.
  std::string short_header(64, 'z');
  const std::uint64_t n = 16;
  std::memcpy(short_header.data(), &n, 8);
  write_text(junk, short_header);
  expect_failure({"eval", "--checkpoint", junk.string()}, 1, {junk.string()});

  // A valid safetensors file that is not a checkpoint.
  const fs::path plain = root_ / "plain.safetensors";
  SafeTensors st;
  const float v = 1;
  st.put("w", {1}, &v);
  st.save(plain.string());
  expect_failure({"eval", "--checkpoint", plain.string()}, 1, {plain.string(), "checkpoint"});

  // An empty file.
  write_text(junk, "");
  expect_failure({"eval", "--checkpoint", junk.string()}, 1, {junk.string()});
}

// Library bug (reported, not fixed here): a folder where a file is expected escapes as
// "mtp-exp: error: basic_filebuf::underflow error reading the file: Is a directory",
// which does not name the path. Enable once the readers check for a regular file.
TEST_F(Cli, FolderInsteadOfFileNamesThePath) {
  const std::string folder = root_.string();
  expect_failure({"eval", "--checkpoint", folder}, 1, {folder});
  expect_failure(tiny({"--task", "text", "--data", folder}), 1, {folder});
}

// ----------------------------------------------------------------------- training

void expect_run_files(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  EXPECT_EQ(names, (std::set<std::string>{".lock", "config.json", "metrics.csv",
                                          "model.safetensors", "result.json", "throughput.json"}))
      << "exactly the five run files and the folder's lock, no temporaries";
}

// Checks metrics.csv: the header, then rows of 9 fields; returns the count per split.
std::map<std::string, int> check_metrics(const fs::path& p, bool bpb) {
  const std::vector<std::string> lines = lines_of(test::read_file(p));
  std::map<std::string, int> rows;
  EXPECT_FALSE(lines.empty());
  if (lines.empty()) return rows;
  EXPECT_EQ(lines[0], "step,split,loss,accuracy,bpb,lr,grad_norm,tokens_per_s,elapsed_s");
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> f;
    std::stringstream ss(lines[i]);
    for (std::string cell; std::getline(ss, cell, ',');) f.push_back(cell);
    if (!lines[i].empty() && lines[i].back() == ',') f.push_back("");
    EXPECT_EQ(f.size(), 9u) << lines[i];
    if (f.size() != 9) continue;
    ++rows[f[1]];
    EXPECT_GE(std::stoll(f[0]), 1) << lines[i];
    EXPECT_TRUE(std::isfinite(std::stod(f[2]))) << lines[i];
    EXPECT_EQ(f[4].empty(), !bpb) << lines[i];
    if (f[1] == "train") {
      EXPECT_FALSE(f[5].empty()) << "train rows have the lr: " << lines[i];
    }
  }
  return rows;
}

TEST_F(Cli, TrainWritesRunFilesAndEvalReproducesValidation) {
  const Result r = run(tiny({"--perspectives", "2", "--aggregator", "learned", "--noise", "0.1"}));
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("parameters"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("validation"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("accuracy"), std::string::npos) << r.out;
  EXPECT_EQ(r.err.find("error"), std::string::npos) << r.err;
  expect_run_files(out_dir());
  EXPECT_EQ(cwd_entries(), std::vector<std::string>{"out"}) << "nothing outside --out";

  const json config = json::parse(test::read_file(out_dir() / "config.json"));
  EXPECT_EQ(config["config"]["perspectives"], 2);
  EXPECT_EQ(config["config"]["cell"], "gru");
  const std::map<std::string, int> rows = check_metrics(out_dir() / "metrics.csv", false);
  EXPECT_GE(rows.count("train") ? rows.at("train") : 0, 1);
  EXPECT_GE(rows.count("val") ? rows.at("val") : 0, 1);

  const json result = json::parse(test::read_file(out_dir() / "result.json"));
  ASSERT_TRUE(result.contains("validation")) << result.dump(2);
  ASSERT_TRUE(result["validation"]["accuracy"].is_number());
  const double val_loss = result["validation"]["loss"].get<double>();
  const double val_acc = result["validation"]["accuracy"].get<double>();
  EXPECT_TRUE(std::isfinite(val_loss));
  EXPECT_GE(val_acc, 0.0);
  EXPECT_LE(val_acc, 1.0);
  // mqar validation: val_batches · batch · pairs queries.
  EXPECT_EQ(result["validation"]["labelled"].get<long long>(), 1 * 4 * 2);
  EXPECT_GT(result["parameters"]["perspective"].get<long long>(), 0);
  EXPECT_FALSE(result["validation"].contains("bits_per_byte"));

  const std::string ckpt = (out_dir() / "model.safetensors").string();
  const Result e = run({"eval", "--checkpoint", ckpt, "--json", "--threads", "1"});
  ASSERT_EQ(e.status, 0) << e.describe();
  const json ev = json::parse(e.out);
  // Same parameters, same validation set, same thread count: the same numbers.
  EXPECT_EQ(ev["loss"].get<double>(), val_loss);
  EXPECT_EQ(ev["accuracy"].get<double>(), val_acc);
  EXPECT_EQ(ev["labelled"], result["validation"]["labelled"]);
  EXPECT_EQ(ev["checkpoint"], ckpt);

  // Plain text output: one summary line.
  const Result plain = run({"eval", "--checkpoint", ckpt, "--threads", "1"});
  ASSERT_EQ(plain.status, 0) << plain.describe();
  EXPECT_EQ(lines_of(plain.out).size(), 1u) << plain.out;
  EXPECT_NE(plain.out.find("accuracy"), std::string::npos) << plain.out;

  // --data is for text checkpoints only.
  const fs::path text = root_ / "a.txt";
  write_text(text, std::string(400, 'a'));
  const Result wrong = run({"eval", "--checkpoint", ckpt, "--data", text.string()});
  EXPECT_EQ(wrong.status, 2) << wrong.describe();
  EXPECT_EQ(lines_of(wrong.err).size(), 1u) << wrong.describe();
}

TEST_F(Cli, TrainWithFixedAggregatorWeights) {
  const Result r = run(tiny({"--perspectives", "3", "--aggregator", "fixed", "--fixed-weights",
                             "0.2,0.3,0.5", "--decay-spread", "0.5"}));
  ASSERT_EQ(r.status, 0) << r.describe();
  const json result = json::parse(test::read_file(out_dir() / "result.json"));
  EXPECT_EQ(result["config"]["fixed_weights"], json::parse("[0.2, 0.3, 0.5]"));
  expect_run_files(out_dir());
}

// A deterministic byte corpus: words from a small vocabulary.
std::string make_corpus(std::uint64_t seed, size_t n) {
  static const char* words[] = {"the ",  "cat ", "sat ", "on ",  "a ",
                                "mat. ", "dog ", "ran ", "far ", "away\n"};
  std::string s;
  while (s.size() < n) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    s += words[(seed >> 33) % 10];
  }
  s.resize(n);
  return s;
}

TEST_F(Cli, TextRunReportsBitsPerByteAndEvaluatesOtherData) {
  const fs::path a = root_ / "a.txt", b = root_ / "b.txt";
  write_text(a, make_corpus(1, 3000));
  write_text(b, std::string(3000, 'q'));
  const Result r = run(tiny(
      {"--task", "text", "--data", a.string(), "--perspectives", "2", "--aggregator", "mean"}));
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("bits/byte"), std::string::npos) << r.out;
  expect_run_files(out_dir());
  const json result = json::parse(test::read_file(out_dir() / "result.json"));
  ASSERT_TRUE(result["validation"].contains("bits_per_byte")) << result.dump(2);
  const double bpb = result["validation"]["bits_per_byte"].get<double>();
  const double loss = result["validation"]["loss"].get<double>();
  EXPECT_NEAR(bpb, loss / std::log(2.0), 1e-12);
  EXPECT_GT(bpb, 0.0);
  // val_batches=1 · batch=4 windows of 16 bytes, all labelled.
  EXPECT_EQ(result["validation"]["labelled"].get<long long>(), 4 * 16);
  const std::map<std::string, int> rows = check_metrics(out_dir() / "metrics.csv", true);
  EXPECT_GE(rows.count("val") ? rows.at("val") : 0, 1);

  const std::string ckpt = (out_dir() / "model.safetensors").string();
  const Result same = run({"eval", "--checkpoint", ckpt, "--json", "--threads", "1"});
  ASSERT_EQ(same.status, 0) << same.describe();
  const json js = json::parse(same.out);
  EXPECT_EQ(js["bits_per_byte"].get<double>(), bpb);

  const Result other =
      run({"eval", "--checkpoint", ckpt, "--data", b.string(), "--json", "--threads", "1"});
  ASSERT_EQ(other.status, 0) << other.describe();
  const json jo = json::parse(other.out);
  ASSERT_TRUE(jo.contains("bits_per_byte")) << other.out;
  EXPECT_EQ(jo["task"]["data"], b.string());
  EXPECT_NE(jo["bits_per_byte"].get<double>(), bpb) << "evaluated on the training corpus again";
  EXPECT_TRUE(std::isfinite(jo["bits_per_byte"].get<double>()));

  const Result plain = run({"eval", "--checkpoint", ckpt, "--data", b.string()});
  ASSERT_EQ(plain.status, 0) << plain.describe();
  EXPECT_NE(plain.out.find("bits/byte"), std::string::npos) << plain.out;

  const std::string missing = (root_ / "gone.txt").string();
  const Result m = run({"eval", "--checkpoint", ckpt, "--data", missing});
  EXPECT_EQ(m.status, 1) << m.describe();
  ASSERT_EQ(lines_of(m.err).size(), 1u) << m.describe();
  EXPECT_NE(m.err.find(missing), std::string::npos) << m.err;
}

TEST_F(Cli, TextCorpusTooShortExitsOne) {
  const fs::path a = root_ / "short.txt";
  write_text(a, "just a few bytes");
  expect_failure(tiny({"--task", "text", "--data", a.string()}), 1, {a.string(), "too short"});
  write_text(a, "");
  expect_failure(tiny({"--task", "text", "--data", a.string()}), 1, {a.string(), "empty"});
}

// -------------------------------------------------------------------------- layer

// The wrapped GRU of docs/contract.md §4.1 with the mean aggregator, in double, written
// independently of the library: x (T,B,I) → y (T,B,H).
struct GruRef {
  index_t T, B, I, H, K;
  std::vector<double> w_ih, w_hh, b_ih, b_hh, decay, x;

  static double sigmoid(double v) { return 1 / (1 + std::exp(-v)); }

  std::vector<double> forward() const {
    std::vector<double> y(size_t(T * B * H), 0.0);
    for (index_t k = 0; k < K; ++k) {
      for (index_t b = 0; b < B; ++b) {
        std::vector<double> h(size_t(H), 0.0), hn(size_t(H), 0.0);
        for (index_t t = 0; t < T; ++t) {
          const double* xt = &x[size_t((t * B + b) * I)];
          for (index_t j = 0; j < H; ++j) {
            double gi[3], gh[3];
            for (int g = 0; g < 3; ++g) {
              const index_t row = g * H + j;
              gi[g] = b_ih[size_t(row)];
              for (index_t i = 0; i < I; ++i) gi[g] += w_ih[size_t(row * I + i)] * xt[i];
              gh[g] = b_hh[size_t(row)];
              for (index_t i = 0; i < H; ++i) gh[g] += w_hh[size_t(row * H + i)] * h[size_t(i)];
            }
            const double r = sigmoid(gi[0] + gh[0]);
            const double z = sigmoid(gi[1] + gh[1] + decay[size_t(k * H + j)]);
            const double n = std::tanh(gi[2] + r * gh[2]);
            hn[size_t(j)] = (1 - z) * n + z * h[size_t(j)];
          }
          h = hn;
          for (index_t j = 0; j < H; ++j) y[size_t((t * B + b) * H + j)] += h[size_t(j)] / K;
        }
      }
    }
    return y;
  }

  std::vector<double>* param(const std::string& name) {
    if (name == "weight_ih") return &w_ih;
    if (name == "weight_hh") return &w_hh;
    if (name == "bias_ih") return &b_ih;
    if (name == "bias_hh") return &b_hh;
    if (name == "decay") return &decay;
    if (name == "x") return &x;
    return nullptr;
  }
};

std::vector<double> filled(size_t n, std::uint64_t seed, double scale) {
  std::vector<double> v(n);
  for (double& e : v) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    e = scale * (double(seed >> 11) * 0x1p-53 * 2 - 1);
  }
  return v;
}

class Layer : public Cli {
 protected:
  static constexpr index_t T = 4, B = 2, I = 3, H = 4, K = 2;

  void SetUp() override {
    Cli::SetUp();
    ref_ = {T,
            B,
            I,
            H,
            K,
            filled(3 * H * I, 1, 0.8),
            filled(3 * H * H, 2, 0.8),
            filled(3 * H, 3, 0.5),
            filled(3 * H, 4, 0.5),
            {-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, -2.0},
            filled(T * B * I, 5, 1.0)};
    dy_ = filled(T * B * H, 6, 1.0);
  }

  SafeTensors params() const {
    SafeTensors p;
    p.put("weight_ih", {3 * H, I}, ref_.w_ih.data());
    p.put("weight_hh", {3 * H, H}, ref_.w_hh.data());
    p.put("bias_ih", {3 * H}, ref_.b_ih.data());
    p.put("bias_hh", {3 * H}, ref_.b_hh.data());
    p.put("decay", {K, H}, ref_.decay.data());
    return p;
  }
  SafeTensors input(bool with_dy = true) const {
    SafeTensors in;
    in.put("x", {T, B, I}, ref_.x.data());
    if (with_dy) in.put("dy", {T, B, H}, dy_.data());
    return in;
  }
  fs::path params_path() const { return root_ / "params.safetensors"; }
  fs::path input_path() const { return root_ / "input.safetensors"; }
  fs::path output_path() const { return cwd_ / "out.safetensors"; }
  std::vector<std::string> layer_args(const std::vector<std::string>& extra = {}) const {
    return std::vector<std::string>{"layer"} + with_defaults({{"--perspectives", "2"},
                                                              {"--aggregator", "mean"},
                                                              {"--params", params_path().string()},
                                                              {"--input", input_path().string()},
                                                              {"--output", output_path().string()},
                                                              {"--threads", "1"}},
                                                             extra);
  }
  void expect_layer_failure(const SafeTensors& p, const SafeTensors& in,
                            const std::vector<std::string>& fragments,
                            std::vector<std::string> extra = {}) {
    p.save(params_path().string());
    in.save(input_path().string());
    expect_failure(layer_args(extra), 1, fragments);
    EXPECT_FALSE(fs::exists(output_path()));
  }

  GruRef ref_;
  std::vector<double> dy_;
};

TEST_F(Layer, GruMeanMatchesReferenceForwardAndBackward) {
  params().save(params_path().string());
  input().save(input_path().string());
  const Result r = run(layer_args({"--dtype", "f64"}));
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.err, "");
  const SafeTensors out = SafeTensors::load(output_path().string());

  std::set<std::string> names;
  for (const auto& [name, t] : out.tensors) names.insert(name);
  EXPECT_EQ(names, (std::set<std::string>{"y", "grad.x", "grad.weight_ih", "grad.weight_hh",
                                          "grad.bias_ih", "grad.bias_hh", "grad.decay"}));
  EXPECT_EQ(out.metadata.at("perspectives"), "2");
  EXPECT_EQ(out.metadata.at("aggregator"), "mean");

  // Forward.
  ASSERT_TRUE(out.has("y"));
  EXPECT_EQ(out.at("y").shape, (std::vector<index_t>{T, B, H}));
  const std::vector<double> y = out.at("y").to<double>("y");
  const std::vector<double> y_ref = ref_.forward();
  ASSERT_EQ(y.size(), y_ref.size());
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], y_ref[i], 1e-12) << "y[" << i << "]";

  // Backward: every gradient against central differences of Σ dy·y on the reference.
  GruRef probe = ref_;
  auto loss = [&] {
    const std::vector<double> v = probe.forward();
    double s = 0;
    for (size_t i = 0; i < v.size(); ++i) s += v[i] * dy_[i];
    return s;
  };
  const std::vector<std::pair<std::string, std::vector<index_t>>> grads = {
      {"x", {T, B, I}},     {"weight_ih", {3 * H, I}}, {"weight_hh", {3 * H, H}},
      {"bias_ih", {3 * H}}, {"bias_hh", {3 * H}},      {"decay", {K, H}}};
  for (const auto& [name, shape] : grads) {
    SCOPED_TRACE("grad." + name);
    ASSERT_TRUE(out.has("grad." + name));
    EXPECT_EQ(out.at("grad." + name).shape, shape);
    const std::vector<double> g = out.at("grad." + name).to<double>(name);
    std::vector<double>& v = *probe.param(name);
    ASSERT_EQ(g.size(), v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      const double orig = v[i], eps = 1e-6;
      v[i] = orig + eps;
      const double up = loss();
      v[i] = orig - eps;
      const double down = loss();
      v[i] = orig;
      EXPECT_NEAR(g[i], (up - down) / (2 * eps), 1e-7) << name << "[" << i << "]";
    }
  }

  // The default f32 path agrees with f64 to float precision.
  fs::remove(output_path());
  const Result r32 = run(layer_args());
  ASSERT_EQ(r32.status, 0) << r32.describe();
  const SafeTensors out32 = SafeTensors::load(output_path().string());
  EXPECT_EQ(out32.at("y").dtype, DType::F32);
  for (const auto& [name, t] : out.tensors) {
    ASSERT_TRUE(out32.has(name)) << name;
    const std::vector<double> a = t.to<double>(name), b = out32.at(name).to<double>(name);
    ASSERT_EQ(a.size(), b.size()) << name;
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4) << name << "[" << i << "]";
  }
}

TEST_F(Layer, ForwardOnlyWithoutDy) {
  params().save(params_path().string());
  input(/*with_dy=*/false).save(input_path().string());
  const Result r = run(layer_args({"--dtype", "f64"}));
  ASSERT_EQ(r.status, 0) << r.describe();
  const SafeTensors out = SafeTensors::load(output_path().string());
  EXPECT_EQ(out.tensors.size(), 1u);
  ASSERT_TRUE(out.has("y"));
  const std::vector<double> y = out.at("y").to<double>("y"), y_ref = ref_.forward();
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], y_ref[i], 1e-12) << i;
}

TEST_F(Layer, LearnedAggregatorAtKOneHasZeroSelectorGradients) {
  SafeTensors p = params();
  const std::vector<double> decay1 = {0.1, 0.2, 0.3, 0.4}, sw = filled(I, 9, 1.0), sb = {0.3};
  p.put("decay", {1, H}, decay1.data());
  p.put("selector.weight", {1, I}, sw.data());
  p.put("selector.bias", {1}, sb.data());
  p.save(params_path().string());
  input().save(input_path().string());
  const Result r =
      run(layer_args({"--perspectives", "1", "--aggregator", "learned", "--dtype", "f64"}));
  ASSERT_EQ(r.status, 0) << r.describe();
  const SafeTensors out = SafeTensors::load(output_path().string());
  for (const char* name : {"grad.selector.weight", "grad.selector.bias"}) {
    ASSERT_TRUE(out.has(name)) << name;
    for (double g : out.at(name).to<double>(name)) EXPECT_EQ(g, 0.0) << name;
  }
}

TEST_F(Layer, MissingDecayIsAnErrorNamingFileAndTensor) {
  SafeTensors p = params();
  p.tensors.erase("decay");
  expect_layer_failure(p, input(), {params_path().string(), "'decay'"});
}

TEST_F(Layer, DecayOfTheWrongKIsAnError) {
  SafeTensors p = params();
  const std::vector<double> d(3 * H, 0.0);
  p.put("decay", {3, H}, d.data());
  expect_layer_failure(p, input(), {params_path().string(), "'decay'"});
  p.put("decay", {H}, d.data());  // a (H) row instead of (K,H)
  expect_layer_failure(p, input(), {params_path().string(), "'decay'"});
}

TEST_F(Layer, UnexpectedTensorIsAnError) {
  SafeTensors p = params();
  const double v = 1;
  p.put("selector.bias", {}, &v);
  expect_layer_failure(p, input(), {params_path().string(), "'selector.bias'"});
}

TEST_F(Layer, SelectorTensorsRequiredForLearned) {
  expect_layer_failure(params(), input(), {params_path().string(), "'selector.weight'"},
                       {"--aggregator", "learned"});
}

TEST_F(Layer, InputOfTheWrongWidthIsAnError) {
  SafeTensors in;
  const std::vector<double> x(T * B * (I + 1), 0.1);
  in.put("x", {T, B, I + 1}, x.data());
  expect_layer_failure(params(), in, {input_path().string(), "x"});
  in.put("x", {T * B, I}, x.data());  // not 3-d
  expect_layer_failure(params(), in, {input_path().string(), "x"});
}

TEST_F(Layer, BadDyOrExtraInputTensorIsAnError) {
  SafeTensors in = input(false);
  const std::vector<double> dy(T * B * (H + 1), 0.1);
  in.put("dy", {T, B, H + 1}, dy.data());
  expect_layer_failure(params(), in, {input_path().string(), "dy"});
  in = input();
  in.put("h0", {B, H}, dy.data());
  expect_layer_failure(params(), in, {input_path().string(), "'h0'"});
  in = input();
  in.tensors.erase("x");
  expect_layer_failure(params(), in, {input_path().string(), "'x'"});
}

TEST_F(Layer, IntegerParameterIsAnError) {
  SafeTensors p = params();
  const std::vector<std::int32_t> b(3 * H, 0);
  p.put_i32("bias_hh", {3 * H}, b.data());
  expect_layer_failure(p, input(), {params_path().string(), "'bias_hh'"});
}

// Library rough edge (reported, not fixed here): Gru::infer_config's message is
// "mtp-exp: error: weight_ih has shape (10,3), expected (3H,I)", without the file name.
// Enable once run_layer prefixes shape-inference errors with the params path.
TEST_F(Layer, MalformedWeightIhNamesTheFile) {
  SafeTensors p = params();
  const std::vector<double> w(10 * I, 0.0);
  p.put("weight_ih", {10, I}, w.data());  // not (3H, I)
  expect_layer_failure(p, input(), {params_path().string(), "weight_ih"});
}

// A program's task declares flags of its own (TaskSpec::flags): train parses them with
// their defaults, refuses them with another task, and config.json keeps them. (In
// process: the registry is this test's own.)
TEST(TaskFlags, AProgramsTaskGetsItsOwnFlags) {
  exp::TaskSpec probe = exp::tasks().at("mqar");  // mqar's construction under a new name
  probe.name = "probe";
  probe.flags = {{.name = "probe-depth", .default_value = "3", .help = "how deep"}};
  exp::tasks().add(probe);
  using exp::cli::parse_train_args;
  const exp::TrainConfig by_default = parse_train_args({"--task", "probe"});
  EXPECT_EQ(by_default.task_options, (std::map<std::string, std::string>{{"probe-depth", "3"}}));
  const exp::TrainConfig given = parse_train_args({"--task", "probe", "--probe-depth", "5"});
  EXPECT_EQ(exp::task_option_int(given, "probe-depth"), 5);
  EXPECT_TRUE(parse_train_args({"--task", "mqar"}).task_options.empty());
  const exp::TrainConfig back = exp::train_config_from_json(exp::to_json(given), "config.json");
  EXPECT_EQ(back.task_options, given.task_options);
  try {
    parse_train_args({"--task", "mqar", "--probe-depth", "5"});
    ADD_FAILURE() << "another task's flag was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--probe-depth applies to --task probe"),
              std::string::npos)
        << e.what();
  }
  const exp::TrainConfig bad = parse_train_args({"--task", "probe", "--probe-depth", "deep"});
  EXPECT_THROW(exp::task_option_int(bad, "probe-depth"), UsageError);
  EXPECT_THROW(exp::task_option(bad, "probe-width"), UsageError);
  // A flag train already has cannot be a task's own.
  probe.name = "clash";
  probe.flags = {{.name = "steps", .default_value = "1", .help = "clashes"}};
  exp::tasks().add(probe);
  EXPECT_THROW(parse_train_args({}), Error);
}

}  // namespace
}  // namespace mtp
