// Training tasks. Every batch is a pure function of (seed, step), so runs are
// reproducible and a resumed run sees exactly the data the uninterrupted one saw.
// Batches are time-major (T,B) like the layers; targets are kIgnoreTarget (-1) where
// a position is not scored.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "mtp/core/rng.hpp"
#include "mtp/core/tensor.hpp"
#include "mtp/experiments/config.hpp"
#include "mtp/experiments/token_corpus.hpp"
#include "mtp/experiments/tokenizer.hpp"

namespace mtp::exp {

struct Batch {
  index_t T = 0, B = 0;
  std::vector<std::int32_t> tokens;   // (T,B)
  std::vector<std::int32_t> targets;  // (T,B)
  // (T,B) index into Task::group_names() of each labelled position (−1 otherwise), for
  // tasks that report accuracy per group (lag-recall: per lag); empty when they do not.
  std::vector<std::int32_t> groups;
};

// A file a task reads, as a training state records it: a resume on other data is
// refused.
struct DataFile {
  std::string flag, path;  // "--data", as given
  std::uint64_t bytes = 0;
  std::string sha256;
};

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  virtual index_t vocab() const = 0;
  virtual Batch train_batch(std::uint64_t step, index_t B) const = 0;
  // The fixed validation set: the same for every run of the same task settings.
  virtual const std::vector<Batch>& validation() const = 0;
  // Whether the headline metric is accuracy at labelled positions (mqar) or bits per
  // byte (text).
  virtual bool reports_bits_per_byte() const = 0;
  // The bytes of text a labelled position stands for, on average over the validation
  // set or the training split: 1 for bytes; bits per byte = loss / ln 2 / this.
  virtual double bytes_per_label(bool validation) const {
    (void)validation;
    return 1.0;
  }
  virtual nlohmann::json describe() const = 0;
  // Names of the groups labelled positions fall into (see Batch::groups).
  virtual std::vector<std::string> group_names() const { return {}; }
  // Whether consecutive batches continue the same B streams, so that the model's state
  // is carried from one to the next (truncated BPTT) — in training and in validation.
  virtual bool carries_state() const { return false; }
  // With carried state: whether training step `step` starts the streams over (the state
  // must be reset).
  virtual bool starts_streams(std::uint64_t step) const { return step == 0; }
  // The files the task's data come from (none for generated tasks).
  virtual std::vector<DataFile> data_files() const { return {}; }
};

// A task whose sequences are generated on the fly, one column of a (T,B) batch at a
// time: training batch `step` from the run's seed, the validation set from a fixed
// seed (so runs with different seeds are scored on the same data).
class GeneratedTask : public Task {
 public:
  Batch train_batch(std::uint64_t step, index_t B) const override;
  const std::vector<Batch>& validation() const override { return val_; }
  bool reports_bits_per_byte() const override { return false; }
  // One sequence into column b of batch (T,B), from the given random sequence.
  virtual void fill_sequence(RngSequence& rng, Batch& batch, index_t b) const = 0;

 protected:
  // `grouped`: batches carry Batch::groups (the task reports accuracy per group).
  GeneratedTask(int seq_len, std::uint64_t seed, bool grouped)
      : seq_len_(seq_len), seed_(seed), grouped_(grouped) {}
  // Generates the validation set; a derived constructor calls it once it is complete.
  void build_validation(int val_batches, int batch);
  index_t validation_sequences() const;

  int seq_len_;
  std::uint64_t seed_;

 private:
  Batch generate(RngSequence& rng, index_t B) const;
  bool grouped_;
  std::vector<Batch> val_;
};

// Multi-query associative recall as in Zoology (Arora et al. 2023): the sequence
// opens with `pairs` key-value pairs (keys from [1, V/2), values from [V/2, V), both
// drawn without replacement); each key is queried once later, at a distance drawn
// from Zoology's power law, and the target at the query is its value. Positions that
// are not queries hold random tokens. Accuracy is measured at query positions.
class MqarTask final : public GeneratedTask {
 public:
  MqarTask(int vocab, int pairs, int seq_len, std::uint64_t seed, int val_batches, int batch);
  std::string name() const override { return "mqar"; }
  index_t vocab() const override { return vocab_; }
  nlohmann::json describe() const override;
  void fill_sequence(RngSequence& rng, Batch& batch, index_t b) const override;

 private:
  int vocab_, pairs_;
  std::vector<double> gap_cdf_;  // power-law distribution over query slots
};

// Lag recall, the direct probe of time scales: a stream of random data tokens from
// [0, V) in which query tokens appear, one per lag (token V + i asks for lags[i]); the
// target at a query for lag d is the data token d positions back. Queries are placed at
// random (probability 1/4 at each position whose source lies in the sequence and is not
// itself a query). Accuracy is reported per lag.
class LagRecallTask final : public GeneratedTask {
 public:
  LagRecallTask(int vocab, std::vector<int> lags, int seq_len, std::uint64_t seed, int val_batches,
                int batch);
  std::string name() const override { return "lag-recall"; }
  index_t vocab() const override { return vocab_ + index_t(lags_.size()); }
  nlohmann::json describe() const override;
  std::vector<std::string> group_names() const override;
  void fill_sequence(RngSequence& rng, Batch& batch, index_t b) const override;

 private:
  int vocab_;
  std::vector<int> lags_;
};

// Selective copy (Gu & Dao 2023): M data tokens from [2, V+2) scattered at random
// among blanks (token 0) in the first T − M positions, then M recall markers (token 1);
// at the markers the targets are the data tokens in order. Accuracy per copied token.
class SelectiveCopyTask final : public GeneratedTask {
 public:
  SelectiveCopyTask(int vocab, int copies, int seq_len, std::uint64_t seed, int val_batches,
                    int batch);
  std::string name() const override { return "selective-copy"; }
  index_t vocab() const override { return vocab_ + 2; }
  nlohmann::json describe() const override;
  void fill_sequence(RngSequence& rng, Batch& batch, index_t b) const override;

 private:
  int vocab_, copies_;
};

// Language modelling on a text file, as bytes (V = 256) or as the ids of a BPE tokenizer
// (--tokenizer; the ids cached and memory-mapped, token_corpus.hpp): the first 90% of the
// tokens train, the last 10% validate. Reports bits per byte: the summed loss over ln 2
// and over the bytes of text the targets stand for (with bytes, loss / ln 2), so models
// with different tokenizers compare; with a tokenizer also bits per token.
//   Without carried state: training on random windows; validation on consecutive
//   windows from the start of its split, one per sequence.
//   With carried state (truncated BPTT): each split is cut into B contiguous streams and
//   batch s holds chunk s of every stream, so the state flows from one batch to the next;
//   training restarts the streams when they are used up.
class TextTask final : public Task {
 public:
  // `threads`: for tokenizing the corpus when its cache is built.
  TextTask(const std::string& path, const std::string& tokenizer, const std::string& token_cache,
           int seq_len, std::uint64_t seed, int val_batches, int batch, bool carry_state = false,
           int threads = 0);
  std::string name() const override { return "text"; }
  index_t vocab() const override { return tok_->vocab_size(); }
  Batch train_batch(std::uint64_t step, index_t B) const override;
  const std::vector<Batch>& validation() const override { return val_; }
  bool reports_bits_per_byte() const override { return true; }
  double bytes_per_label(bool validation) const override {
    return validation ? val_bytes_per_label_ : train_bytes_per_label_;
  }
  nlohmann::json describe() const override;
  bool carries_state() const override { return carry_; }
  bool starts_streams(std::uint64_t step) const override;
  std::vector<DataFile> data_files() const override;
  const Tokenizer& tokenizer() const { return *tok_; }

 private:
  // Chunks of T tokens (plus the next token as the last target) per stream when [begin,
  // end) is cut into `streams` contiguous streams.
  index_t chunks_per_stream(size_t begin, size_t end, index_t streams) const;
  Batch stream_chunk(size_t begin, size_t end, index_t streams, index_t chunk) const;
  // Column j of b from the window of T + 1 tokens at `start`.
  void fill_window(Batch& b, index_t j, size_t start) const;
  bool carry_;
  std::string path_, tokenizer_path_;
  index_t batch_;  // the number of streams with carried state
  std::unique_ptr<Tokenizer> tok_;
  TokenCorpus corpus_;
  size_t split_;  // train: [0, split_), validation: [split_, size)
  int seq_len_;
  std::uint64_t seed_;
  std::vector<Batch> val_;
  index_t val_tokens_ = 0;
  double val_bytes_per_label_ = 1, train_bytes_per_label_ = 1;
};

// A task as the command line knows it: its name, sizes, flags, checks and construction,
// in one place. The built-in specs sit next to their tasks in tasks.cpp; a program adds
// its own with tasks().add(spec) before run_main.
// A flag of a task's own, beyond train's flags: `--name VALUE`, with its default and
// help; its value reaches the task as TrainConfig::task_options[name].
struct TaskFlag {
  std::string name, default_value, help;
};

struct TaskSpec {
  std::string name{};
  std::string help{};       // what --help says of it
  TaskDefaults defaults{};  // steps, batch, seq_len, vocab unless given
  // Train's flags only this task reads: given with another task they are refused.
  std::vector<std::string> own_flags{};
  // Flags of its own (a program's task): added to train and sweep, refused with another
  // task, stored in config.json, read with task_option_int/_double (config.hpp).
  std::vector<TaskFlag> flags{};
  bool reads_vocab = true;  // false: the vocabulary is the task's own (--vocab refused)
  // Range and consistency checks of its settings; usage errors naming the flag.
  void (*validate)(const TrainConfig&) = nullptr;
  // The run header's task line.
  std::string (*describe)(const TrainConfig&) = nullptr;
  // The model's vocabulary, without building the task (which for text reads the corpus).
  index_t (*vocab)(const TrainConfig&) = nullptr;
  std::unique_ptr<Task> (*make)(const TrainConfig&) = nullptr;
};

class TaskRegistry {
 public:
  void add(TaskSpec spec);  // a name registered twice is an error
  const std::vector<TaskSpec>& specs() const { return specs_; }
  bool has(std::string_view name) const;
  // The task, or a usage error naming --task.
  const TaskSpec& at(std::string_view name) const;
  std::string names(std::string_view separator = ", ") const;

 private:
  std::vector<TaskSpec> specs_;
};

// The program's tasks: the built-in ones, then what the program added.
TaskRegistry& tasks();

// The task a configuration names, and its model vocabulary.
std::unique_ptr<Task> make_task(const TrainConfig& cfg);
index_t task_vocab(const TrainConfig& cfg);

}  // namespace mtp::exp
