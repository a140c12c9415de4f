#include "mtp/experiments/tasks.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mtp/core/file_io.hpp"
#include "mtp/core/ops/softmax.hpp"
#include "mtp/core/rng.hpp"
#include "mtp/core/sha256.hpp"
#include "mtp/experiments/named.hpp"

namespace mtp::exp {
namespace {

// The validation sets do not depend on the run's seed, so that runs with different
// seeds are scored on the same data.
constexpr std::uint64_t kValidationSeed = 0x76616c6964ull;  // "valid"

// Per-step data streams: step s of a run with seed k uses stream (kTrainData, s) under
// key k, so batches never share random numbers and any step can be regenerated alone.
RngSequence train_rng(std::uint64_t seed, std::uint64_t step) {
  return RngSequence(seed, (rng_stream::kTrainData << 48) ^ step);
}

Batch empty_batch(index_t T, index_t B) {
  Batch b;
  b.T = T;
  b.B = B;
  b.tokens.assign(T * B, 0);
  b.targets.assign(T * B, kIgnoreTarget);
  return b;
}

}  // namespace

// --------------------------------------------------------------- generated tasks

Batch GeneratedTask::generate(RngSequence& rng, index_t B) const {
  Batch b = empty_batch(seq_len_, B);
  if (grouped_) b.groups.assign(b.tokens.size(), -1);
  for (index_t j = 0; j < B; ++j) fill_sequence(rng, b, j);
  return b;
}

Batch GeneratedTask::train_batch(std::uint64_t step, index_t B) const {
  RngSequence rng = train_rng(seed_, step);
  return generate(rng, B);
}

void GeneratedTask::build_validation(int val_batches, int batch) {
  RngSequence rng(kValidationSeed, rng_stream::kValidData);
  for (int v = 0; v < val_batches; ++v) val_.push_back(generate(rng, batch));
}

index_t GeneratedTask::validation_sequences() const {
  index_t n = 0;
  for (const Batch& b : val_) n += b.B;
  return n;
}

// ---------------------------------------------------------------------------- mqar

MqarTask::MqarTask(int vocab, int pairs, int seq_len, std::uint64_t seed, int val_batches,
                   int batch)
    : GeneratedTask(seq_len, seed, false), vocab_(vocab), pairs_(pairs) {
  // Zoology: slots = (T − 2·pairs)/2 query slots after the context, slot i chosen with
  // probability ∝ a·i^(a−1), a = 0.01: short distances are more likely.
  const int slots = (seq_len - 2 * pairs) / 2;
  constexpr double a = 0.01;
  double total = 0;
  for (int i = 1; i <= slots; ++i) gap_cdf_.push_back(total += a * std::pow(i, a - 1));
  for (double& c : gap_cdf_) c /= total;
  build_validation(val_batches, batch);
}

void MqarTask::fill_sequence(RngSequence& rng, Batch& batch, index_t b) const {
  const index_t T = seq_len_, B = batch.B;
  const int half = vocab_ / 2;
  auto at = [&](index_t t) -> std::int32_t& { return batch.tokens[t * B + b]; };
  auto target = [&](index_t t) -> std::int32_t& { return batch.targets[t * B + b]; };

  // Distinct keys from [1, half), distinct values from [half, vocab): partial
  // Fisher-Yates over the candidate lists.
  std::vector<std::int32_t> keys(half - 1), values(vocab_ - half);
  for (int i = 0; i < half - 1; ++i) keys[i] = 1 + i;
  for (int i = 0; i < vocab_ - half; ++i) values[i] = half + i;
  for (int i = 0; i < pairs_; ++i) {
    std::swap(keys[i], keys[i + rng.below(keys.size() - i)]);
    std::swap(values[i], values[i + rng.below(values.size() - i)]);
  }
  for (index_t t = 0; t < T; ++t) {
    at(t) = static_cast<std::int32_t>(rng.below(vocab_));  // random non-query filler
    target(t) = kIgnoreTarget;
  }
  for (int i = 0; i < pairs_; ++i) {
    at(2 * i) = keys[i];
    at(2 * i + 1) = values[i];
  }
  // Distinct query slots drawn from the power law (rejection of repeats).
  std::vector<char> used(gap_cdf_.size(), 0);
  for (int i = 0; i < pairs_; ++i) {
    size_t slot;
    do {
      const double u = rng.uniform();
      slot = std::lower_bound(gap_cdf_.begin(), gap_cdf_.end(), u) - gap_cdf_.begin();
      slot = std::min(slot, gap_cdf_.size() - 1);
    } while (used[slot]);
    used[slot] = 1;
    const index_t pos = 2 * pairs_ + 2 * index_t(slot);
    at(pos) = keys[i];
    target(pos) = values[i];
  }
}

nlohmann::json MqarTask::describe() const {
  return {{"task", "mqar"},
          {"vocab", vocab_},
          {"pairs", pairs_},
          {"seq_len", seq_len_},
          {"validation_sequences", validation_sequences()},
          {"validation_queries", validation_sequences() * pairs_}};
}

// ---------------------------------------------------------------------- lag recall

LagRecallTask::LagRecallTask(int vocab, std::vector<int> lags, int seq_len, std::uint64_t seed,
                             int val_batches, int batch)
    : GeneratedTask(seq_len, seed, true), vocab_(vocab), lags_(std::move(lags)) {
  build_validation(val_batches, batch);
}

void LagRecallTask::fill_sequence(RngSequence& rng, Batch& batch, index_t b) const {
  const index_t T = seq_len_, B = batch.B;
  std::vector<char> is_query(T, 0);
  std::vector<int> eligible;
  for (index_t t = 0; t < T; ++t) {
    batch.tokens[t * B + b] = std::int32_t(rng.below(vocab_));
    batch.targets[t * B + b] = kIgnoreTarget;
    batch.groups[t * B + b] = -1;
    // A query here for lag d needs a data token at t − d.
    eligible.clear();
    for (int i = 0; i < int(lags_.size()); ++i)
      if (t >= lags_[i] && !is_query[t - lags_[i]]) eligible.push_back(i);
    if (eligible.empty() || rng.below(4) != 0) continue;
    const int i = eligible[rng.below(eligible.size())];
    is_query[t] = 1;
    batch.targets[t * B + b] = batch.tokens[(t - lags_[i]) * B + b];
    batch.tokens[t * B + b] = std::int32_t(vocab_ + i);
    batch.groups[t * B + b] = i;
  }
}

std::vector<std::string> LagRecallTask::group_names() const {
  std::vector<std::string> names;
  for (int d : lags_) names.push_back("lag " + std::to_string(d));
  return names;
}

nlohmann::json LagRecallTask::describe() const {
  index_t queries = 0;
  for (const Batch& b : validation())
    for (std::int32_t g : b.groups) queries += g >= 0;
  return {{"task", "lag-recall"},
          {"vocab", vocab_},
          {"lags", lags_},
          {"seq_len", seq_len_},
          {"validation_queries", queries}};
}

// ------------------------------------------------------------------ selective copy

SelectiveCopyTask::SelectiveCopyTask(int vocab, int copies, int seq_len, std::uint64_t seed,
                                     int val_batches, int batch)
    : GeneratedTask(seq_len, seed, false), vocab_(vocab), copies_(copies) {
  build_validation(val_batches, batch);
}

void SelectiveCopyTask::fill_sequence(RngSequence& rng, Batch& batch, index_t b) const {
  constexpr std::int32_t kBlank = 0, kMarker = 1;
  const index_t T = seq_len_, B = batch.B, M = copies_, span = T - M;
  // M distinct positions in [0, span): partial Fisher-Yates, then in increasing order.
  std::vector<index_t> pos(span);
  for (index_t i = 0; i < span; ++i) pos[i] = i;
  for (index_t i = 0; i < M; ++i) std::swap(pos[i], pos[i + rng.below(span - i)]);
  std::sort(pos.begin(), pos.begin() + M);
  for (index_t t = 0; t < T; ++t) {
    batch.tokens[t * B + b] = t < span ? kBlank : kMarker;
    batch.targets[t * B + b] = kIgnoreTarget;
  }
  for (index_t i = 0; i < M; ++i) {
    const auto data = std::int32_t(2 + rng.below(vocab_));
    batch.tokens[pos[i] * B + b] = data;
    batch.targets[(span + i) * B + b] = data;
  }
}

nlohmann::json SelectiveCopyTask::describe() const {
  return {{"task", "selective-copy"},
          {"vocab", vocab_},
          {"copy_tokens", copies_},
          {"seq_len", seq_len_},
          {"validation_tokens", validation_sequences() * copies_}};
}

// ---------------------------------------------------------------------------- text

TextTask::TextTask(const std::string& path, const std::string& tokenizer,
                   const std::string& token_cache, int seq_len, std::uint64_t seed, int val_batches,
                   int batch, bool carry_state, int threads)
    : carry_(carry_state),
      path_(path),
      tokenizer_path_(tokenizer),
      batch_(batch),
      tok_(load_tokenizer(tokenizer)),
      corpus_(path, *tok_, token_cache, threads),
      seq_len_(seq_len),
      seed_(seed) {
  const size_t n = corpus_.size();
  const char* unit = tokenizer.empty() ? "bytes" : "tokens";
  MTP_CHECK(n > 0, "--data {}: the file is empty", path);
  split_ = n * 9 / 10;
  const size_t window = size_t(seq_len) + 1;
  MTP_CHECK(split_ >= window && n - split_ >= window,
            "--data {}: {} {} is too short for --seq-len {} (each 90%/10% split needs {} {})", path,
            n, unit, seq_len, window, unit);
  if (!tokenizer.empty())
    train_bytes_per_label_ = double(corpus_.decoded_bytes(0, split_)) / double(split_);
  if (carry_) {
    // Validation streams: as many of the B streams as the split can give one chunk each.
    const index_t B = std::min<index_t>(batch, index_t((n - split_ - 1) / size_t(seq_len)));
    const index_t chunks = std::min<index_t>(val_batches, chunks_per_stream(split_, n, B));
    for (index_t c = 0; c < chunks; ++c) {
      val_.push_back(stream_chunk(split_, n, B, c));
      val_tokens_ += B * seq_len;
    }
    MTP_CHECK(chunks_per_stream(0, split_, batch) >= 1,
              "--data {}: the training split ({} {}) is too short for {} streams of "
              "--seq-len {}",
              path, split_, unit, batch, seq_len);
  } else {
    // Consecutive windows of the validation split, filled column by column, until the
    // split or val_batches batches run out.
    const size_t windows = (n - split_ - 1) / size_t(seq_len);
    size_t w = 0;
    for (int v = 0; v < val_batches && w < windows; ++v) {
      const index_t B = static_cast<index_t>(std::min(size_t(batch), windows - w));
      Batch b = empty_batch(seq_len, B);
      for (index_t j = 0; j < B; ++j, ++w) fill_window(b, j, split_ + w * size_t(seq_len));
      val_tokens_ += B * seq_len;
      val_.push_back(std::move(b));
    }
  }
  if (!tokenizer.empty()) {
    std::uint64_t target_bytes = 0;
    for (const Batch& b : val_)
      for (const std::int32_t t : b.targets) target_bytes += tok_->token_bytes(t).size();
    val_bytes_per_label_ = double(target_bytes) / double(val_tokens_);
  }
}

void TextTask::fill_window(Batch& b, index_t j, size_t start) const {
  for (index_t t = 0; t < seq_len_; ++t) {
    b.tokens[t * b.B + j] = corpus_[start + size_t(t)];
    b.targets[t * b.B + j] = corpus_[start + size_t(t) + 1];
  }
}

index_t TextTask::chunks_per_stream(size_t begin, size_t end, index_t streams) const {
  const size_t length = (end - begin) / size_t(streams);
  return length < 1 ? 0 : index_t((length - 1) / size_t(seq_len_));
}

Batch TextTask::stream_chunk(size_t begin, size_t end, index_t streams, index_t chunk) const {
  const size_t length = (end - begin) / size_t(streams);
  Batch b = empty_batch(seq_len_, streams);
  for (index_t j = 0; j < streams; ++j)
    fill_window(b, j, begin + size_t(j) * length + size_t(chunk) * size_t(seq_len_));
  return b;
}

bool TextTask::starts_streams(std::uint64_t step) const {
  return !carry_ || step % std::uint64_t(chunks_per_stream(0, split_, batch_)) == 0;
}

Batch TextTask::train_batch(std::uint64_t step, index_t B) const {
  if (carry_) {
    MTP_CHECK(B == batch_, "text with carried state streams {} sequences, asked for {}", batch_, B);
    return stream_chunk(0, split_, B,
                        index_t(step % std::uint64_t(chunks_per_stream(0, split_, B))));
  }
  RngSequence rng = train_rng(seed_, step);
  Batch b = empty_batch(seq_len_, B);
  const size_t starts = split_ - size_t(seq_len_);  // window [s, s+T] inside the train split
  for (index_t j = 0; j < B; ++j) fill_window(b, j, rng.below(starts));
  return b;
}

std::vector<DataFile> TextTask::data_files() const {
  std::vector<DataFile> files = {{"--data", path_, corpus_.text_bytes(), corpus_.sha256()}};
  if (!tokenizer_path_.empty()) {
    const nlohmann::json t = tok_->describe();
    files.push_back({"--tokenizer", tokenizer_path_, t.at("bytes").get<std::uint64_t>(),
                     t.at("sha256").get<std::string>()});
  }
  return files;
}

nlohmann::json TextTask::describe() const {
  nlohmann::json j = {{"task", "text"},
                      {"data", path_},
                      {"bytes", corpus_.text_bytes()},
                      {"sha256", corpus_.sha256()},
                      {"seq_len", seq_len_},
                      {"carry_state", carry_}};
  if (tokenizer_path_.empty()) {
    j["train_bytes"] = split_;
    j["validation_bytes"] = corpus_.size() - split_;
  } else {
    j["tokenizer"] = tok_->describe();
    j["token_cache"] = corpus_.cache_path();
    j["tokens"] = corpus_.size();
    j["train_tokens"] = split_;
    j["validation_split_tokens"] = corpus_.size() - split_;
    j["validation_bytes_per_token"] = val_bytes_per_label_;
  }
  j["validation_tokens"] = val_tokens_;
  return j;
}

namespace {

void need(bool ok, const char* flag, const std::string& why) {
  if (!ok) usage_fail("--{} {}", flag, why);
}

// The built-in tasks' specs, each beside its task.
TaskSpec mqar_spec() {
  TaskSpec t{.name = "mqar",
             .help = "multi-query associative recall, as in Zoology",
             .defaults = {4000, 32, 32, 32},
             .own_flags = {"pairs"}};
  t.validate = [](const TrainConfig& c) {
    need(c.vocab >= 4 && c.vocab <= 1'000'000, "vocab",
         fmt::format("must be in [4, 1000000], got {}", c.vocab));
    need(c.pairs >= 1, "pairs", fmt::format("must be >= 1, got {}", c.pairs));
    need(c.pairs <= c.vocab / 2 - 1, "pairs",
         fmt::format("{} needs distinct keys: at most vocab/2 − 1 = {}", c.pairs, c.vocab / 2 - 1));
    need(4 * c.pairs <= c.seq_len, "seq-len",
         fmt::format("{} is too short for {} pairs: mqar needs at least 4·pairs = {}", c.seq_len,
                     c.pairs, 4 * c.pairs));
  };
  t.describe = [](const TrainConfig& c) {
    return fmt::format("mqar: vocab {}, {} key-value pairs, T={}", c.vocab, c.pairs, c.seq_len);
  };
  t.vocab = [](const TrainConfig& c) { return index_t(c.vocab); };
  t.make = [](const TrainConfig& c) -> std::unique_ptr<Task> {
    return std::make_unique<MqarTask>(c.vocab, c.pairs, c.seq_len, c.seed, c.val_batches, c.batch);
  };
  return t;
}

TaskSpec lag_recall_spec() {
  TaskSpec t{.name = "lag-recall",
             .help = "per-lag recall, the probe of time scales",
             .defaults = {1500, 16, 256, 16},
             .own_flags = {"lags"}};
  t.validate = [](const TrainConfig& c) {
    need(c.vocab >= 2 && c.vocab <= 1'000'000, "vocab",
         fmt::format("(data tokens) must be in [2, 1000000], got {}", c.vocab));
    need(!c.lags.empty(), "lags", "needs at least one lag");
    for (int d : c.lags)
      need(d >= 1 && d < c.seq_len, "lags",
           fmt::format("{} must be in [1, seq-len) = [1, {})", d, c.seq_len));
  };
  t.describe = [](const TrainConfig& c) {
    return fmt::format("lag-recall: {} data tokens, lags {}, T={}", c.vocab, fmt::join(c.lags, ","),
                       c.seq_len);
  };
  t.vocab = [](const TrainConfig& c) { return index_t(c.vocab) + index_t(c.lags.size()); };
  t.make = [](const TrainConfig& c) -> std::unique_ptr<Task> {
    return std::make_unique<LagRecallTask>(c.vocab, c.lags, c.seq_len, c.seed, c.val_batches,
                                           c.batch);
  };
  return t;
}

TaskSpec selective_copy_spec() {
  TaskSpec t{.name = "selective-copy",
             .help = "selective copying, as in Gu & Dao 2023",
             .defaults = {3000, 32, 64, 16},
             .own_flags = {"copy-tokens"}};
  t.validate = [](const TrainConfig& c) {
    need(c.vocab >= 2 && c.vocab <= 1'000'000, "vocab",
         fmt::format("(data tokens) must be in [2, 1000000], got {}", c.vocab));
    need(c.copy_tokens >= 1 && 2 * c.copy_tokens <= c.seq_len, "copy-tokens",
         fmt::format("{} needs 1 <= M and 2M <= seq-len ({})", c.copy_tokens, c.seq_len));
  };
  t.describe = [](const TrainConfig& c) {
    return fmt::format("selective-copy: {} data tokens, copy {}, T={}", c.vocab, c.copy_tokens,
                       c.seq_len);
  };
  t.vocab = [](const TrainConfig& c) { return index_t(c.vocab) + 2; };
  t.make = [](const TrainConfig& c) -> std::unique_ptr<Task> {
    return std::make_unique<SelectiveCopyTask>(c.vocab, c.copy_tokens, c.seq_len, c.seed,
                                               c.val_batches, c.batch);
  };
  return t;
}

TaskSpec text_spec() {
  TaskSpec t{.name = "text",
             .help = "language modelling on --data: bytes, or --tokenizer's tokens",
             .defaults = {2000, 32, 64, 256},
             .own_flags = {"data", "tokenizer", "token-cache", "carry-state"},
             .reads_vocab = false};
  t.describe = [](const TrainConfig& c) {
    return fmt::format("text: {} ({}), T={}{}", c.data,
                       c.tokenizer.empty() ? "bytes" : "tokens of " + c.tokenizer, c.seq_len,
                       c.carry_state ? ", state carried across chunks" : "");
  };
  t.validate = [](const TrainConfig& c) {
    if (!c.token_cache.empty() && c.tokenizer.empty())
      usage_fail("--token-cache applies with --tokenizer (bytes need no cache)");
  };
  t.vocab = [](const TrainConfig& c) { return load_tokenizer(c.tokenizer)->vocab_size(); };
  t.make = [](const TrainConfig& c) -> std::unique_ptr<Task> {
    return std::make_unique<TextTask>(c.data, c.tokenizer, c.token_cache, c.seq_len, c.seed,
                                      c.val_batches, c.batch, c.carry_state, c.threads);
  };
  return t;
}

}  // namespace

void TaskRegistry::add(TaskSpec spec) {
  MTP_CHECK(!spec.name.empty() && spec.make && spec.vocab && spec.describe,
            "a task is registered without a name, make, vocab or describe");
  MTP_CHECK(!has(spec.name), "task '{}' is registered twice", spec.name);
  specs_.push_back(std::move(spec));
}

bool TaskRegistry::has(std::string_view name) const {
  return find_named(specs_, name) != nullptr;
}

const TaskSpec& TaskRegistry::at(std::string_view name) const {
  if (const TaskSpec* t = find_named(specs_, name)) return *t;
  usage_fail("--task '{}' is not one of {}", name, names());
}

std::string TaskRegistry::names(std::string_view separator) const {
  return join_names(specs_, separator);
}

TaskRegistry& tasks() {
  static TaskRegistry r = [] {
    TaskRegistry built_in;
    for (TaskSpec (*spec)() : {mqar_spec, lag_recall_spec, selective_copy_spec, text_spec})
      built_in.add(spec());
    return built_in;
  }();
  return r;
}

index_t task_vocab(const TrainConfig& c) {
  return tasks().at(c.task).vocab(c);
}

std::unique_ptr<Task> make_task(const TrainConfig& c) {
  return tasks().at(c.task).make(c);
}

}  // namespace mtp::exp
