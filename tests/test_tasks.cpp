// Training tasks (experiments/tasks.hpp): the structure of MQAR sequences, that every
// batch is a pure function of (seed, step), that validation sets do not depend on the
// seed, and the text task's 90/10 split, next-byte targets and file errors.
#include <gtest/gtest.h>

#include <unistd.h>
#include "temp_dir.hpp"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "mtp/core/error.hpp"
#include "mtp/experiments/tasks.hpp"

namespace mtp::exp {
namespace {

namespace fs = std::filesystem;

constexpr std::int32_t kIgnore = -1;

using test::TempDir;

// Column b of a time-major (T,B) buffer.
std::vector<std::int32_t> column(const std::vector<std::int32_t>& v, const Batch& batch,
                                 index_t b) {
  std::vector<std::int32_t> c(size_t(batch.T));
  for (index_t t = 0; t < batch.T; ++t) c[size_t(t)] = v[size_t(t * batch.B + b)];
  return c;
}

bool same(const Batch& a, const Batch& b) {
  return a.T == b.T && a.B == b.B && a.tokens == b.tokens && a.targets == b.targets;
}

// Checks one MQAR sequence against the task's definition (tasks.hpp, Zoology).
void check_mqar_sequence(const std::vector<std::int32_t>& tok, const std::vector<std::int32_t>& tgt,
                         int V, int pairs, const std::string& where) {
  SCOPED_TRACE(where);
  const int T = int(tok.size());
  const int half = V / 2;
  for (int t = 0; t < T; ++t) {
    ASSERT_GE(tok[t], 0) << "t=" << t;
    ASSERT_LT(tok[t], V) << "t=" << t;
  }
  // Context: pairs (key, value) at positions 2i, 2i+1, unlabelled, keys and values distinct.
  std::map<std::int32_t, std::int32_t> value_of;
  std::set<std::int32_t> values;
  for (int i = 0; i < pairs; ++i) {
    const std::int32_t k = tok[2 * i], v = tok[2 * i + 1];
    EXPECT_GE(k, 1) << "key " << i;
    EXPECT_LT(k, half) << "key " << i;
    EXPECT_GE(v, half) << "value " << i;
    EXPECT_LT(v, V) << "value " << i;
    EXPECT_TRUE(value_of.emplace(k, v).second) << "key " << k << " repeats in the context";
    EXPECT_TRUE(values.insert(v).second) << "value " << v << " repeats in the context";
    EXPECT_EQ(tgt[2 * i], kIgnore);
    EXPECT_EQ(tgt[2 * i + 1], kIgnore);
  }
  // Queries: exactly `pairs` labelled positions, all after the context, each a context
  // key whose target is its value, every key exactly once.
  int labelled = 0;
  std::map<std::int32_t, int> queried;
  for (int t = 2 * pairs; t < T; ++t) {
    if (tgt[t] == kIgnore) continue;
    ++labelled;
    const auto it = value_of.find(tok[t]);
    ASSERT_NE(it, value_of.end()) << "query at t=" << t << " is token " << tok[t]
                                  << ", not a context key";
    EXPECT_EQ(tgt[t], it->second) << "query at t=" << t;
    ++queried[tok[t]];
  }
  EXPECT_EQ(labelled, pairs);
  for (const auto& [k, v] : value_of) EXPECT_EQ(queried[k], 1) << "key " << k;
  // Every target is either ignored or a value token.
  for (int t = 0; t < T; ++t) {
    if (tgt[t] != kIgnore) {
      EXPECT_TRUE(values.count(tgt[t])) << "t=" << t;
    }
  }
}

struct MqarShape {
  int vocab, pairs, seq_len;
};

class MqarStructure : public testing::TestWithParam<MqarShape> {};

TEST_P(MqarStructure, SequencesFollowTheDefinition) {
  const MqarShape s = GetParam();
  constexpr int kBatch = 6, kValBatches = 2;
  const MqarTask task(s.vocab, s.pairs, s.seq_len, /*seed=*/3, kValBatches, kBatch);
  EXPECT_EQ(task.vocab(), s.vocab);
  EXPECT_FALSE(task.reports_bits_per_byte());
  for (std::uint64_t step : {0ull, 1ull, 17ull, 123456789ull}) {
    const Batch b = task.train_batch(step, kBatch);
    ASSERT_EQ(b.T, s.seq_len);
    ASSERT_EQ(b.B, kBatch);
    ASSERT_EQ(b.tokens.size(), size_t(s.seq_len * kBatch));
    ASSERT_EQ(b.targets.size(), b.tokens.size());
    for (index_t j = 0; j < b.B; ++j)
      check_mqar_sequence(column(b.tokens, b, j), column(b.targets, b, j), s.vocab, s.pairs,
                          "train step " + std::to_string(step) + " column " + std::to_string(j));
  }
  ASSERT_EQ(task.validation().size(), size_t(kValBatches));
  for (size_t v = 0; v < task.validation().size(); ++v) {
    const Batch& b = task.validation()[v];
    ASSERT_EQ(b.T, s.seq_len);
    ASSERT_EQ(b.B, kBatch);
    for (index_t j = 0; j < b.B; ++j)
      check_mqar_sequence(column(b.tokens, b, j), column(b.targets, b, j), s.vocab, s.pairs,
                          "validation batch " + std::to_string(v) + " column " + std::to_string(j));
  }
  const nlohmann::json d = task.describe();
  EXPECT_EQ(d["validation_queries"].get<long long>(), kValBatches * kBatch * s.pairs);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MqarStructure,
    testing::Values(MqarShape{64, 8, 64},  // the defaults
                    MqarShape{16, 7, 28},  // every key used, tightest seq_len = 4·pairs
                    MqarShape{4, 1, 4},    // smallest vocabulary
                    MqarShape{65, 4, 33},  // odd vocabulary and odd length
                    MqarShape{256, 16, 200}),
    [](const testing::TestParamInfo<MqarShape>& i) {
      return "V" + std::to_string(i.param.vocab) + "_P" + std::to_string(i.param.pairs) + "_T" +
             std::to_string(i.param.seq_len);
    });

TEST(MqarTask, TrainBatchIsAPureFunctionOfSeedAndStep) {
  const MqarTask a(64, 8, 64, /*seed=*/5, 1, 4);
  const MqarTask b(64, 8, 64, /*seed=*/5, 1, 4);
  for (std::uint64_t step : {0ull, 1ull, 2ull, 999ull}) {
    EXPECT_TRUE(same(a.train_batch(step, 4), a.train_batch(step, 4))) << "step " << step;
    EXPECT_TRUE(same(a.train_batch(step, 4), b.train_batch(step, 4))) << "step " << step;
  }
  // Any step can be regenerated alone, in any order.
  const Batch late = a.train_batch(7, 4);
  for (std::uint64_t step = 0; step < 7; ++step) a.train_batch(step, 4);
  EXPECT_TRUE(same(late, a.train_batch(7, 4)));

  EXPECT_FALSE(same(a.train_batch(0, 4), a.train_batch(1, 4)));
  EXPECT_FALSE(same(a.train_batch(1, 4), a.train_batch(2, 4)));
  // No two of the first steps share a sequence.
  std::set<std::vector<std::int32_t>> seen;
  for (std::uint64_t step = 0; step < 20; ++step) {
    const Batch b = a.train_batch(step, 4);
    for (index_t j = 0; j < 4; ++j)
      EXPECT_TRUE(seen.insert(column(b.tokens, b, j)).second) << "step " << step << " col " << j;
  }
}

TEST(MqarTask, SeedChangesTrainingDataButNotValidation) {
  const MqarTask a(64, 8, 64, /*seed=*/0, 3, 4);
  const MqarTask b(64, 8, 64, /*seed=*/1, 3, 4);
  for (std::uint64_t step : {0ull, 1ull, 50ull})
    EXPECT_FALSE(same(a.train_batch(step, 4), b.train_batch(step, 4))) << "step " << step;
  ASSERT_EQ(a.validation().size(), 3u);
  ASSERT_EQ(b.validation().size(), 3u);
  for (size_t v = 0; v < 3; ++v)
    EXPECT_TRUE(same(a.validation()[v], b.validation()[v])) << "validation batch " << v;
  // The validation batches differ from each other and from training data.
  EXPECT_FALSE(same(a.validation()[0], a.validation()[1]));
  EXPECT_FALSE(same(a.validation()[0], a.train_batch(0, 4)));
}

TEST(MqarTask, MakeTaskUsesTheConfig) {
  TrainConfig c;
  c.task = "mqar";
  c.vocab = 32;
  c.pairs = 3;
  c.seq_len = 20;
  c.batch = 5;
  c.val_batches = 2;
  const std::unique_ptr<Task> t = make_task(c);
  EXPECT_EQ(t->name(), "mqar");
  EXPECT_EQ(t->vocab(), 32);
  ASSERT_EQ(t->validation().size(), 2u);
  EXPECT_EQ(t->validation()[0].T, 20);
  EXPECT_EQ(t->validation()[0].B, 5);
  c.task = "bogus";
  EXPECT_THROW(make_task(c), UsageError);
}

// ---------------------------------------------------------------------------- text

// 1000 bytes: the first 900 (the training split) are lowercase letters, the last 100
// (validation) digits, so a window's origin shows in its bytes. Pseudo-random, so a
// window of 17 bytes occurs once in the file.
std::string corpus(size_t n = 1000) {
  std::string s(n, ' ');
  std::uint64_t x = 88172645463325252ull;
  const size_t split = n * 9 / 10;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = i < split ? char('a' + x % 26) : char('0' + x % 10);
  }
  return s;
}

std::vector<std::int32_t> bytes_of(const std::string& s, size_t begin, size_t n) {
  std::vector<std::int32_t> v;
  for (size_t i = begin; i < begin + n; ++i) v.push_back(static_cast<unsigned char>(s[i]));
  return v;
}

TEST(TextTask, SplitNextByteTargetsAndValidationWindows) {
  TempDir dir;
  const std::string text = corpus();
  const fs::path p = dir.file("corpus.txt", text);
  constexpr int T = 16, B = 4, kValBatches = 2;
  const TextTask task(p.string(), "", "", T, /*seed=*/1, kValBatches, B);
  EXPECT_EQ(task.vocab(), 256);
  EXPECT_TRUE(task.reports_bits_per_byte());
  const nlohmann::json d = task.describe();
  EXPECT_EQ(d["bytes"].get<size_t>(), 1000u);
  EXPECT_EQ(d["train_bytes"].get<size_t>(), 900u);
  EXPECT_EQ(d["validation_bytes"].get<size_t>(), 100u);

  // Training windows: inside the first 90%, targets are the next byte.
  for (std::uint64_t step : {0ull, 1ull, 2ull, 3ull, 100ull}) {
    const Batch b = task.train_batch(step, B);
    ASSERT_EQ(b.T, T);
    ASSERT_EQ(b.B, B);
    for (index_t j = 0; j < B; ++j) {
      const std::vector<std::int32_t> tok = column(b.tokens, b, j), tgt = column(b.targets, b, j);
      for (int t = 0; t + 1 < T; ++t) EXPECT_EQ(tgt[t], tok[t + 1]);
      for (int t = 0; t < T; ++t) {
        EXPECT_TRUE(tok[t] >= 'a' && tok[t] <= 'z') << "train token from outside the 90%";
        EXPECT_TRUE(tgt[t] >= 'a' && tgt[t] <= 'z') << "train target from outside the 90%";
      }
      // The window is a substring of the file: tokens then one more byte.
      std::string window;
      for (int t = 0; t < T; ++t) window += char(tok[t]);
      window += char(tgt[T - 1]);
      const size_t at = text.find(window);
      ASSERT_NE(at, std::string::npos) << "step " << step << " column " << j;
      EXPECT_LE(at + T + 1, 900u);
    }
  }
  EXPECT_TRUE(same(task.train_batch(5, B), task.train_batch(5, B)));
  EXPECT_FALSE(same(task.train_batch(5, B), task.train_batch(6, B)));
  const TextTask other_seed(p.string(), "", "", T, /*seed=*/2, kValBatches, B);
  EXPECT_FALSE(same(task.train_batch(5, B), other_seed.train_batch(5, B)));

  // Validation: consecutive windows from the start of the last 10%, column by column,
  // (100 − 1) / 16 = 6 windows: one batch of 4, then one of 2.
  const std::vector<Batch>& val = task.validation();
  ASSERT_EQ(val.size(), 2u);
  EXPECT_EQ(val[0].B, 4);
  EXPECT_EQ(val[1].B, 2);
  size_t w = 0;
  for (const Batch& b : val) {
    ASSERT_EQ(b.T, T);
    for (index_t j = 0; j < b.B; ++j, ++w) {
      const size_t start = 900 + w * T;
      EXPECT_EQ(column(b.tokens, b, j), bytes_of(text, start, T)) << "window " << w;
      EXPECT_EQ(column(b.targets, b, j), bytes_of(text, start + 1, T)) << "window " << w;
    }
  }
  EXPECT_EQ(d["validation_tokens"].get<long long>(), 6 * T);
  for (size_t v = 0; v < val.size(); ++v)
    EXPECT_TRUE(same(val[v], other_seed.validation()[v])) << "validation depends on the seed";
}

TEST(TextTask, ValidationStopsAtValBatches) {
  TempDir dir;
  const fs::path p = dir.file("big.txt", corpus(10000));
  const TextTask task(p.string(), "", "", 8, 0, /*val_batches=*/3, /*batch=*/2);
  ASSERT_EQ(task.validation().size(), 3u);
  for (const Batch& b : task.validation()) EXPECT_EQ(b.B, 2);
}

TEST(TextTask, SmallestFileThatFits) {
  // seq_len 8 needs 9 bytes on each side of the split: 81 bytes split 72/9.
  TempDir dir;
  const fs::path p = dir.file("tiny.txt", corpus(81));
  const TextTask task(p.string(), "", "", 8, 0, 4, 4);
  ASSERT_EQ(task.validation().size(), 1u);
  EXPECT_EQ(task.validation()[0].B, 1);
  const Batch b = task.train_batch(0, 3);
  for (std::int32_t t : b.tokens) EXPECT_TRUE(t >= 'a' && t <= 'z');
  for (std::int32_t t : b.targets) EXPECT_TRUE(t >= 'a' && t <= 'z');
}

void expect_error_naming(const std::string& path, int seq_len, const std::string& fragment) {
  try {
    const TextTask task(path, "", "", seq_len, 0, 1, 1);
    FAIL() << path << ": accepted with " << task.validation().size() << " validation batches";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(TextTask, MissingFileIsAnErrorNamingIt) {
  TempDir dir;
  expect_error_naming((dir.path() / "does-not-exist.txt").string(), 8, "cannot open");
}

TEST(TextTask, EmptyFileIsAnErrorNamingIt) {
  TempDir dir;
  expect_error_naming(dir.file("empty.txt", "").string(), 8, "empty");
}

TEST(TextTask, FileTooShortForSeqLenIsAnErrorNamingIt) {
  TempDir dir;
  // 80 bytes split 72/8: one byte short of a 9-byte validation window.
  expect_error_naming(dir.file("short80.txt", corpus(80)).string(), 8, "--seq-len 8");
  expect_error_naming(dir.file("short.txt", "hello").string(), 8, "too short");
  expect_error_naming(dir.file("onebyte.txt", "x").string(), 2, "too short");
  expect_error_naming(dir.file("medium.txt", corpus(1000)).string(), 100, "too short");
}

// With carried state, batch s+1 continues every stream of batch s where it stopped,
// streams are contiguous slices of their split, and training restarts them when used up.
TEST(TextTask, CarriedStateBatchesContinueTheirStreams) {
  TempDir dir;
  const std::string path = dir.file("c.txt", corpus()).string();  // 900 train, 100 val bytes
  constexpr int T = 8, B = 3;
  const TextTask task(path, "", "", T, 0, 100, B, /*carry_state=*/true);
  EXPECT_TRUE(task.carries_state());
  const std::string text = corpus();
  // Training: 3 streams of 300 bytes, (300 − 1) / 8 = 37 chunks each.
  for (std::uint64_t step : {0u, 1u, 36u}) {
    const Batch a = task.train_batch(step, B), b = task.train_batch(step + 1, B);
    for (index_t j = 0; j < B; ++j) {
      const size_t start = size_t(j) * 300 + size_t(step % 37) * T;
      for (index_t t = 0; t < T; ++t) {
        EXPECT_EQ(a.tokens[t * B + j], std::uint8_t(text[start + t]));
        EXPECT_EQ(a.targets[t * B + j], std::uint8_t(text[start + t + 1]));
      }
      if (step % 37 != 36) {  // the next chunk starts where this one's targets end
        EXPECT_EQ(b.tokens[0 * B + j], a.targets[(T - 1) * B + j]);
      }
    }
  }
  EXPECT_TRUE(task.starts_streams(0));
  EXPECT_FALSE(task.starts_streams(1));
  EXPECT_TRUE(task.starts_streams(37));
  // Validation: 3 streams of the last 100 bytes, (33 − 1) / 8 = 4 chunks, in order.
  ASSERT_EQ(task.validation().size(), 4u);
  for (size_t c = 0; c + 1 < task.validation().size(); ++c)
    for (index_t j = 0; j < B; ++j)
      EXPECT_EQ(task.validation()[c + 1].tokens[j], task.validation()[c].targets[(T - 1) * B + j]);
  EXPECT_EQ(task.validation()[0].tokens[0], std::uint8_t(text[900]));
}

TEST(TextTask, MakeTaskBuildsTheTextTask) {
  TempDir dir;
  TrainConfig c;
  c.task = "text";
  c.data = dir.file("c.txt", corpus()).string();
  c.seq_len = 16;
  c.batch = 2;
  c.val_batches = 1;
  const std::unique_ptr<Task> t = make_task(c);
  EXPECT_EQ(t->name(), "text");
  EXPECT_EQ(t->vocab(), 256);
  ASSERT_EQ(t->validation().size(), 1u);
  EXPECT_EQ(t->validation()[0].B, 2);
}

// ---------------------------------------------------------------------- lag recall

TEST(LagRecallTask, QueriesAskForTheDataTokenTheirLagBack) {
  const std::vector<int> lags = {2, 8, 32};
  const LagRecallTask task(10, lags, 64, 3, 2, 8);
  EXPECT_EQ(task.vocab(), 10 + 3);
  EXPECT_EQ(task.group_names(), (std::vector<std::string>{"lag 2", "lag 8", "lag 32"}));
  std::vector<index_t> per_lag(lags.size(), 0);
  index_t eligible_positions = 0, queries = 0;
  for (const Batch& b : {task.train_batch(0, 8), task.train_batch(1, 8), task.validation()[0]}) {
    ASSERT_EQ(b.groups.size(), b.tokens.size());
    for (index_t j = 0; j < b.B; ++j)
      for (index_t t = 0; t < b.T; ++t) {
        const index_t i = t * b.B + j;
        const std::int32_t tok = b.tokens[i], g = b.groups[i];
        ASSERT_GE(tok, 0);
        ASSERT_LT(tok, 13);
        eligible_positions += t >= 2;
        if (tok < 10) {  // a data token: unlabelled
          EXPECT_EQ(b.targets[i], kIgnore);
          EXPECT_EQ(g, -1);
          continue;
        }
        ++queries;
        ASSERT_EQ(g, tok - 10) << "the group is the lag index";
        const int d = lags[g];
        ASSERT_GE(t, d);
        const std::int32_t source = b.tokens[(t - d) * b.B + j];
        EXPECT_LT(source, 10) << "a query's source is a data token";
        EXPECT_EQ(b.targets[i], source);
        ++per_lag[g];
      }
  }
  for (index_t n : per_lag) EXPECT_GT(n, 0) << "every lag is queried";
  // Queries appear at about a quarter of the positions that can hold one.
  EXPECT_GT(double(queries) / double(eligible_positions), 0.15);
  EXPECT_LT(double(queries) / double(eligible_positions), 0.30);
}

TEST(LagRecallTask, BatchesArePureFunctionsOfSeedAndStep) {
  const LagRecallTask a({8, {1, 4}, 32, 5, 1, 4}), b(8, {1, 4}, 32, 5, 1, 4),
      c(8, {1, 4}, 32, 6, 1, 4);
  EXPECT_EQ(a.train_batch(7, 4).tokens, b.train_batch(7, 4).tokens);
  EXPECT_NE(a.train_batch(7, 4).tokens, a.train_batch(8, 4).tokens);
  EXPECT_NE(a.train_batch(7, 4).tokens, c.train_batch(7, 4).tokens);
  EXPECT_EQ(a.validation()[0].tokens, c.validation()[0].tokens);
}

// ------------------------------------------------------------------ selective copy

TEST(SelectiveCopyTask, MarkersAskForTheDataTokensInOrder) {
  constexpr int V = 6, M = 5, T = 24;
  const SelectiveCopyTask task(V, M, T, 1, 1, 16);
  EXPECT_EQ(task.vocab(), V + 2);
  for (const Batch& b : {task.train_batch(3, 16), task.validation()[0]})
    for (index_t j = 0; j < b.B; ++j) {
      std::vector<std::int32_t> data;
      for (index_t t = 0; t < T - M; ++t) {
        const std::int32_t tok = b.tokens[t * b.B + j];
        EXPECT_EQ(b.targets[t * b.B + j], kIgnore);
        EXPECT_NE(tok, 1) << "no marker before the recall phase";
        if (tok != 0) data.push_back(tok);
      }
      ASSERT_EQ(data.size(), size_t(M)) << "M data tokens among blanks";
      for (index_t i = 0; i < M; ++i) {
        const index_t t = T - M + i;
        EXPECT_EQ(b.tokens[t * b.B + j], 1) << "recall marker";
        EXPECT_EQ(b.targets[t * b.B + j], data[i]) << "copied in order";
        EXPECT_GE(data[i], 2);
        EXPECT_LT(data[i], V + 2);
      }
    }
}

}  // namespace
}  // namespace mtp::exp
