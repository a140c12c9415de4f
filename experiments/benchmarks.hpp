// Zero-shot evaluation on the paper's benchmarks (LAMBADA plain and OpenAI's, ARC-Easy,
// PIQA, WinoGrande, HellaSwag) in the conventions of EleutherAI's lm-evaluation-harness
// (prompts, preprocessing, metrics, standard errors), so that numbers are comparable with
// published ones.
//
// Every benchmark reduces to log-likelihood requests: a context text and a continuation
// text whose summed log-probability given the context is wanted (plus whether greedy
// decoding would have produced it). The layers are kept apart so that the scoring does
// not care how text becomes tokens (bytes now, BPE later):
//   load_benchmark     file → Examples (texts, gold answer), strict parsing
//   Tokenizer          text → token ids (tokenizer.hpp: bytes, or a BPE's tokenizer.json)
//   Scorer             token ids → per-continuation log-likelihood and greedy flag
//                      (ModelScorer: any mtp Model, through its recurrent state)
//   evaluate_benchmark requests → metrics (acc, acc_norm, perplexity)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mtp/core/cell.hpp"
#include "mtp/core/error.hpp"
#include "mtp/core/tensor.hpp"
#include "mtp/experiments/tokenizer.hpp"

namespace mtp::exp {

// ---- Scorer ------------------------------------------------------------------------

struct ContinuationScore {
  double loglikelihood = 0;  // Σ_t log p(cont_t | context, cont_<t), natural log
  bool greedy = false;       // every cont_t is the argmax of its distribution
};

// Scores continuations of one shared context. The context has at least one token (it
// predicts the continuation's first token); every continuation has at least one.
class Scorer {
 public:
  virtual ~Scorer() = default;
  virtual std::vector<ContinuationScore> score(
      std::span<const std::int32_t> context,
      std::span<const std::vector<std::int32_t>> continuations) = 0;
};

// log softmax(row)[target] in double, and whether target is the (first) argmax. row has V
// entries.
template <class S>
ContinuationScore score_token(const S* row, index_t V, std::int32_t target) {
  index_t arg = 0;
  for (index_t v = 1; v < V; ++v)
    if (row[v] > row[arg]) arg = v;
  const double m = double(row[arg]);
  double sum = 0;
  for (index_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - m);
  return {double(row[target]) - m - std::log(sum), arg == target};
}

// Scores with an mtp Model (Model<Mixer, Ffn>, any scalar) through its recurrent state:
// the context except its last token runs once, from the zero state; the C continuations
// then run as C streams of one batch, each starting from a copy of that state and fed
// [last context token, cont_0, ..., cont_{n-2}], so the shared context is never
// recomputed per choice. Sequences of any length run in chunks of at most `chunk` steps
// with the state carried: activation memory stays bounded and the oneDNN primitive
// cache (one primitive per GEMM shape) sees a bounded set of shapes.
template <class M>
class ModelScorer final : public Scorer {
 public:
  explicit ModelScorer(M& model, index_t chunk = 128) : model_(model), chunk_(chunk) {
    MTP_CHECK(chunk > 0, "scorer chunk must be > 0, got {}", chunk);
  }

  std::vector<ContinuationScore> score(
      std::span<const std::int32_t> context,
      std::span<const std::vector<std::int32_t>> continuations) override {
    MTP_CHECK(!context.empty(), "scoring needs a non-empty context");
    const index_t C = index_t(continuations.size());
    index_t T = 0;
    for (const auto& c : continuations) {
      MTP_CHECK(!c.empty(), "scoring needs non-empty continuations");
      T = std::max(T, index_t(c.size()));
    }
    std::vector<ContinuationScore> out(C, ContinuationScore{0, true});
    if (C == 0) return out;

    auto one = model_.initial_state(1);
    run(context.data(), index_t(context.size()) - 1, 1, one, [](index_t, CView<S>) {});

    // Broadcast stream 0 to all C streams: every state tensor is (B, ...) row-major.
    auto state = model_.initial_state(C);
    auto broadcast = [C](const auto& from, auto& to) {
      for (size_t i = 0; i < from.size(); ++i) {
        const index_t row = from[i].numel();
        for (index_t c = 0; c < C; ++c) std::copy_n(from[i].data(), row, to[i].data() + c * row);
      }
    };
    broadcast(one.mixer, state.mixer);
    broadcast(one.ffn, state.ffn);

    // Inputs (T,C): the last context token, then each continuation shifted by one;
    // positions past a continuation's end repeat a valid token and are not scored (the
    // recurrence is causal, so they cannot affect the scored ones).
    std::vector<std::int32_t> tokens(T * C);
    for (index_t c = 0; c < C; ++c) {
      const auto& cont = continuations[c];
      for (index_t t = 0; t < T; ++t)
        tokens[t * C + c] = t == 0 ? context.back() : cont[std::min<index_t>(t, cont.size()) - 1];
    }
    run(tokens.data(), T, C, state, [&](index_t t0, CView<S> logits) {
      const index_t len = logits.dim(0), V = logits.dim(2);  // logits (len,C,V)
      for (index_t c = 0; c < C; ++c) {
        const auto& cont = continuations[c];
        for (index_t t = 0; t < len && t0 + t < index_t(cont.size()); ++t) {
          const ContinuationScore s = score_token(logits.data + (t * C + c) * V, V, cont[t0 + t]);
          out[c].loglikelihood += s.loglikelihood;
          out[c].greedy = out[c].greedy && s.greedy;
        }
      }
    });
    return out;
  }

 private:
  using S = typename M::S;

  // tokens (T,B) through the model in chunks, calling consume(t0, logits (len,B,V)).
  template <class State, class F>
  void run(const std::int32_t* tokens, index_t T, index_t B, State& state, F&& consume) {
    for (index_t t0 = 0; t0 < T; t0 += chunk_) {
      const index_t len = std::min(chunk_, T - t0);
      model_.forward(tokens + t0 * B, nullptr, len, B, StepContext{}, &state);
      consume(t0, model_.logits());
    }
  }

  M& model_;
  index_t chunk_;
};

// ---- Benchmarks --------------------------------------------------------------------

// lambada: LAMBADA's plain text (one passage per line); lambada-openai: OpenAI's
// detokenized, cased JSON lines ({"text"}), behind the published RWKV and GPT numbers.
enum class Benchmark { lambada, lambada_openai, arc_easy, piqa, winogrande, hellaswag };

// "arc-easy" → Benchmark::arc_easy; anything else is a usage error naming the known ones.
Benchmark parse_benchmark(std::string_view name);
const char* benchmark_name(Benchmark b);
std::string benchmark_names();  // "lambada, lambada-openai, ..."

// One log-likelihood request: score `continuation` after `context`.
struct Request {
  std::string context, continuation;
};

struct Example {
  int line = 0;                   // its line in the data file (1-based)
  std::vector<Request> requests;  // lambada: 1; the others: one per choice
  int gold = 0;                   // index of the correct request (lambada: 0)
  // acc_norm's denominators, per choice: the characters (Unicode code points) of the
  // choice text without the leading space, as lm-eval-harness's len(choice).
  std::vector<double> choice_chars;
};

// Reads a benchmark file in full, strictly: a malformed line, a missing field, a wrong
// label count or an unknown answer is an mtp::Error naming the file and line; an empty
// file is an error. `labels` is PIQA's label file (empty: the data path with ".jsonl"
// replaced by "_labels.lst"); the other benchmarks take none.
std::vector<Example> load_benchmark(Benchmark b, const std::string& data,
                                    const std::string& labels = "");

struct ExampleOutcome {
  std::vector<ContinuationScore> scores;  // per request
  int predicted = 0;                      // argmax of the log-likelihoods
  int predicted_norm = 0;                 // argmax of log-likelihood / choice_chars
};

// How requests become token ids, beyond the tokenizer: recorded with every result.
struct BenchmarkProtocol {
  // A token put before every context (RWKV's run_lm_eval.py puts "\n"; none: lm-eval's
  // default for models without a BOS token).
  std::optional<std::int32_t> prefix_token;
};

// Each metric with its standard error over examples, as lm-eval reports them: the sample
// standard deviation of the per-example values over √n; perplexity's by the delta method
// (perplexity × the standard error of the mean negative log-likelihood; lm-eval
// bootstraps it).
struct BenchmarkResult {
  Benchmark benchmark = Benchmark::lambada;
  BenchmarkProtocol protocol;
  std::vector<ExampleOutcome> outcomes;  // per example
  double acc = 0;  // lambada: greedy last-word accuracy; others: argmax accuracy
  double acc_stderr = 0;
  std::optional<double> acc_norm, acc_norm_stderr;      // arc-easy, piqa, hellaswag
  std::optional<double> perplexity, perplexity_stderr;  // lambada: exp(−mean of Σ log p)
  index_t examples() const { return index_t(outcomes.size()); }
  // {"benchmark", "examples", "acc", "acc_stderr"[, "acc_norm", "acc_norm_stderr"]
  //  [, "perplexity", "perplexity_stderr"], "protocol": {...}}
  nlohmann::json to_json() const;
};

// Context and continuation token ids as lm-eval-harness forms them: trailing spaces of
// the context move to the continuation, and the continuation is what encoding the whole
// text adds after the context's tokens (a BPE merges across the boundary as in running
// text). With bytes both are plain concatenation.
struct EncodedRequest {
  std::vector<std::int32_t> context, continuation;
};
EncodedRequest encode_request(const Tokenizer& tok, const Request& r);

// Scores every example (requests sharing a context in one Scorer call) and computes
// the benchmark's metrics. Ties go to the first choice, as numpy's argmax.
BenchmarkResult evaluate_benchmark(Benchmark b, const std::vector<Example>& examples,
                                   const Tokenizer& tok, Scorer& scorer,
                                   const BenchmarkProtocol& protocol = {});

struct BenchmarkArgs {
  std::string checkpoint, benchmark, data, labels;
  std::string tokenizer;        // in place of the checkpoint's (override_tokenizer)
  long long prefix_token = -1;  // BenchmarkProtocol::prefix_token (−1: none)
  // Also write one JSON line per example here: {"line", "gold", "predicted",
  // ["predicted_norm",] "loglikelihoods", "greedy"}.
  std::string examples_out;
  long long limit = 0;  // 0: all examples
  int threads = 0;
};

// `mtp-exp eval --benchmark`: loads a text checkpoint (others are an mtp::Error) with
// its tokenizer (bytes, or its BPE) and the benchmark file, evaluates the first `limit`
// examples. Returns BenchmarkResult::to_json() plus "checkpoint", "data", "tokenizer" and
// "seconds".
nlohmann::json run_benchmark(const BenchmarkArgs& args);

// The one-line summary of a to_json() / run_benchmark result:
// "arc-easy: acc 0.2543  acc_norm 0.2601  (570 questions)".
std::string benchmark_summary(const nlohmann::json& result);

}  // namespace mtp::exp
