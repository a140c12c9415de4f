// A user's own task, written against mtp's installed headers only: recall the first token
// of a sequence of random tokens (or the one at --recall-position, a flag of its own) at
// its last position (accuracy at that position; chance 1/V). Registered with
// mtp::exp::tasks().add(first_token_spec()).
#pragma once

#include <mtp/experiments/tasks.hpp>

#include <fmt/format.h>

#include <memory>

namespace user {

class FirstTokenTask final : public mtp::exp::GeneratedTask {
 public:
  FirstTokenTask(int vocab, int seq_len, int position, std::uint64_t seed, int val_batches,
                 int batch)
      : GeneratedTask(seq_len, seed, /*grouped=*/false), vocab_(vocab), position_(position) {
    build_validation(val_batches, batch);
  }
  std::string name() const override { return "first-token"; }
  mtp::index_t vocab() const override { return vocab_; }
  nlohmann::json describe() const override {
    return {{"task", "first-token"},
            {"vocab", vocab_},
            {"seq_len", seq_len_},
            {"recall_position", position_}};
  }
  // Column b of a (T,B) batch: random tokens; the target at the last step is the one at
  // the recalled position.
  void fill_sequence(mtp::RngSequence& rng, mtp::exp::Batch& batch, mtp::index_t b) const override {
    const mtp::index_t T = seq_len_, B = batch.B;
    for (mtp::index_t t = 0; t < T; ++t)
      batch.tokens[t * B + b] = std::int32_t(rng.below(std::uint64_t(vocab_)));
    batch.targets[(T - 1) * B + b] = batch.tokens[position_ * B + b];
  }

 private:
  int vocab_, position_;
};

inline mtp::exp::TaskSpec first_token_spec() {
  mtp::exp::TaskSpec t{.name = "first-token",
                       .help = "recall the first token at the last step (a user's own task)",
                       .defaults = {300, 32, 8, 8},
                       .flags = {{.name = "recall-position",
                                  .default_value = "0",
                                  .help = "the position whose token is recalled (0: the first)"}}};
  t.validate = [](const mtp::exp::TrainConfig& c) {
    if (c.vocab < 2) mtp::usage_fail("--vocab must be >= 2 for first-token, got {}", c.vocab);
    const long long p = mtp::exp::task_option_int(c, "recall-position");
    if (p < 0 || p >= c.seq_len - 1)
      mtp::usage_fail("--recall-position must be in [0, seq-len − 1) = [0, {}), got {}",
                      c.seq_len - 1, p);
  };
  t.describe = [](const mtp::exp::TrainConfig& c) {
    return fmt::format("first-token: vocab {}, T={}, recall position {}", c.vocab, c.seq_len,
                       mtp::exp::task_option(c, "recall-position"));
  };
  t.vocab = [](const mtp::exp::TrainConfig& c) { return mtp::index_t(c.vocab); };
  t.make = [](const mtp::exp::TrainConfig& c) -> std::unique_ptr<mtp::exp::Task> {
    return std::make_unique<FirstTokenTask>(c.vocab, c.seq_len,
                                            int(mtp::exp::task_option_int(c, "recall-position")),
                                            c.seed, c.val_batches, c.batch);
  };
  return t;
}

}  // namespace user
