// The benchmark harness (experiments/benchmarks.hpp):
//  - scoring and metrics of each benchmark format on hand-made files, scored by a fixed
//    bigram byte model whose log-probabilities the test computes in closed form;
//  - the model scorer (context run once, continuations from copies of its state, in
//    chunks) against a plain full forward of context + continuation from scratch;
//  - strict parsing: malformed inputs are errors naming the file and line.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "mtp/experiments/benchmarks.hpp"
#include "mtp/experiments/trainer.hpp"
#include "temp_dir.hpp"
#include "tiny_text_model.hpp"

namespace mtp::exp {
namespace {

// ---- A bigram byte model with closed-form probabilities -----------------------------
//
// Next-byte weights given the previous byte: 30 for its successor (a→b, ..., y→z, z→' ',
// anything else → a), 10 for another lowercase letter, 4 for ' ', 1 for the other 229
// bytes; p = weight / Σ weights. Σ is 519 after 'z' (its successor is ' ', so all 26
// letters weigh 10) and 513 after anything else (25·10 + 30 + 4 + 229).
int successor(int prev) {
  if (prev >= 'a' && prev < 'z') return prev + 1;
  return prev == 'z' ? ' ' : 'a';
}
double weight(int prev, int next) {
  if (next == successor(prev)) return 30;
  if (next >= 'a' && next <= 'z') return 10;
  return next == ' ' ? 4 : 1;
}
// Closed form: log(weight / Z), Z = 519 after 'z', 513 otherwise.
double logp(char prev, char next) {
  return std::log(weight(std::uint8_t(prev), std::uint8_t(next))) -
         std::log(prev == 'z' ? 519.0 : 513.0);
}
// Σ log p(continuation | context) by the closed form, straight from the texts.
double text_loglikelihood(const std::string& context, const std::string& continuation) {
  double ll = 0;
  char prev = context.back();
  for (char c : continuation) {
    ll += logp(prev, c);
    prev = c;
  }
  return ll;
}

// The model as a Scorer: normalises the 256 weights numerically, token by token.
class BigramScorer final : public Scorer {
 public:
  int calls = 0;
  std::vector<ContinuationScore> score(
      std::span<const std::int32_t> context,
      std::span<const std::vector<std::int32_t>> continuations) override {
    ++calls;
    std::vector<ContinuationScore> out;
    for (const auto& cont : continuations) {
      ContinuationScore s{0, true};
      std::int32_t prev = context.back();
      for (std::int32_t tok : cont) {
        double row[256];
        for (int v = 0; v < 256; ++v) row[v] = std::log(weight(prev, v));
        const ContinuationScore t = score_token(row, 256, tok);
        s.loglikelihood += t.loglikelihood;
        s.greedy = s.greedy && t.greedy;
        prev = tok;
      }
      out.push_back(s);
    }
    return out;
  }
};

BenchmarkResult score_file(Benchmark b, const std::string& data, const std::string& labels = "") {
  BigramScorer scorer;
  const std::vector<Example> ex = load_benchmark(b, data, labels);
  return evaluate_benchmark(b, ex, ByteTokenizer{}, scorer);
}

TEST(BenchmarkScoring, ByteTokenizerAndLmEvalRequestEncoding) {
  EXPECT_EQ(ByteTokenizer{}.encode("a\xff "), (std::vector<std::int32_t>{'a', 255, ' '}));
  // lm-eval moves the context's trailing whitespace to the continuation.
  const EncodedRequest e = encode_request(ByteTokenizer{}, {"ab  ", "c"});
  EXPECT_EQ(e.context, (std::vector<std::int32_t>{'a', 'b'}));
  EXPECT_EQ(e.continuation, (std::vector<std::int32_t>{' ', ' ', 'c'}));
}

TEST(BenchmarkScoring, LambadaGreedyAccuracyAndPerplexity) {
  test::TempDir dir;
  // Passage 1's last word is the model's greedy continuation (z→' '→a→b→c); passage 2's
  // is not ('o' is followed by 'p', not ' ').
  const std::string path = dir.file("l.txt", "xyz abc\nsay hello world\n").string();
  const std::vector<Example> ex = load_benchmark(Benchmark::lambada, path);
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(ex[1].requests[0].context, "say hello");
  EXPECT_EQ(ex[1].requests[0].continuation, " world");
  const BenchmarkResult r = score_file(Benchmark::lambada, path);
  ASSERT_EQ(r.examples(), 2);
  const double ll1 = std::log(30.0 / 519) + 3 * std::log(30.0 / 513);
  const double ll2 = std::log(4.0 / 513) + 5 * std::log(10.0 / 513);
  EXPECT_NEAR(ll1, text_loglikelihood("xyz", " abc"), 1e-12);
  EXPECT_NEAR(r.outcomes[0].scores[0].loglikelihood, ll1, 1e-12);
  EXPECT_NEAR(r.outcomes[1].scores[0].loglikelihood, ll2, 1e-12);
  EXPECT_TRUE(r.outcomes[0].scores[0].greedy);
  EXPECT_FALSE(r.outcomes[1].scores[0].greedy);
  EXPECT_EQ(r.acc, 0.5);
  ASSERT_TRUE(r.perplexity.has_value());
  EXPECT_NEAR(*r.perplexity, std::exp(-(ll1 + ll2) / 2), 1e-12 * *r.perplexity);
  EXPECT_FALSE(r.acc_norm.has_value());
  // Standard errors: of hits (1, 0), sd √½ over √2; perplexity's by the delta method.
  EXPECT_NEAR(r.acc_stderr, 0.5, 1e-15);
  const double nll_se = std::abs(ll1 - ll2) / std::sqrt(2.0) / std::sqrt(2.0);
  EXPECT_NEAR(*r.perplexity_stderr, *r.perplexity * nll_se, 1e-9 * *r.perplexity_stderr);
  const nlohmann::json j = r.to_json();
  EXPECT_EQ(j["protocol"]["prefix_token"], nullptr);
  EXPECT_EQ(benchmark_summary(j),
            fmt::format("lambada: acc 0.5000 ± 0.5000  perplexity {:.2f} ± {:.2f}  (2 passages)",
                        *r.perplexity, *r.perplexity_stderr));
}

TEST(BenchmarkScoring, ArcEasyAccAndLengthNormalisedAcc) {
  test::TempDir dir;
  // Q1: the one-byte "?" has the larger total log-likelihood (acc picks it, wrong), but
  // "bcde" has the larger per-character one (acc_norm picks it, right).
  // Q2: numeric labels; "abc" wins both ways.
  const std::string data =
      R"({"question":{"stem":"Q","choices":[{"text":"?","label":"A"},{"text":"bcde","label":"B"}]},"answerKey":"B"})"
      "\n"
      R"({"question":{"stem":"R","choices":[{"text":"?!","label":"1"},{"text":"zq?","label":"2"},{"text":"abc","label":"3"}]},"answerKey":"3"})"
      "\n";
  BigramScorer scorer;
  const std::vector<Example> ex = load_benchmark(Benchmark::arc_easy, dir.file("a.jsonl", data));
  const BenchmarkResult r = evaluate_benchmark(Benchmark::arc_easy, ex, ByteTokenizer{}, scorer);
  EXPECT_EQ(scorer.calls, 2) << "one call per question: its choices share the context";
  ASSERT_EQ(r.examples(), 2);
  EXPECT_EQ(ex[0].requests[1].context, "Question: Q\nAnswer:");
  EXPECT_EQ(ex[0].requests[1].continuation, " bcde");
  EXPECT_EQ(ex[0].gold, 1);
  EXPECT_EQ(ex[1].gold, 2);
  const std::vector<std::vector<std::string>> choices = {{"?", "bcde"}, {"?!", "zq?", "abc"}};
  for (size_t q = 0; q < 2; ++q)
    for (size_t c = 0; c < choices[q].size(); ++c)
      EXPECT_NEAR(r.outcomes[q].scores[c].loglikelihood,
                  text_loglikelihood(":", " " + choices[q][c]), 1e-12)
          << q << "," << c;
  const double s = std::log(4.0 / 513);  // ' ' after ':'
  const double q1_a = s + std::log(1.0 / 513);
  const double q1_b = s + std::log(10.0 / 513) + 3 * std::log(30.0 / 513);
  ASSERT_GT(q1_a, q1_b);          // by total: "?"
  ASSERT_LT(q1_a / 1, q1_b / 4);  // by total / characters: "bcde"
  EXPECT_EQ(r.outcomes[0].predicted, 0);
  EXPECT_EQ(r.outcomes[0].predicted_norm, 1);
  EXPECT_EQ(r.outcomes[1].predicted, 2);
  EXPECT_EQ(r.outcomes[1].predicted_norm, 2);
  EXPECT_EQ(r.acc, 0.5);
  ASSERT_TRUE(r.acc_norm.has_value());
  EXPECT_EQ(*r.acc_norm, 1.0);
  EXPECT_EQ(benchmark_summary(r.to_json()),
            "arc-easy: acc 0.5000 ± 0.5000  acc_norm 1.0000 ± 0.0000  (2 questions)");
}

TEST(BenchmarkScoring, PiqaWithItsLabelsFile) {
  test::TempDir dir;
  // Q1 (label 0): "abc" wins both ways. Q2 (label 0): "?" wins by total (right) but
  // "bcde" per character (wrong): acc and acc_norm disagree the other way round.
  const std::string data = R"({"goal":"G","sol1":"abc","sol2":"?!"})"
                           "\n"
                           R"({"goal":"H","sol1":"?","sol2":"bcde"})"
                           "\n";
  const std::string path = dir.file("p.jsonl", data).string();
  dir.file("p_labels.lst", "0\n0\n");
  const BenchmarkResult r = score_file(Benchmark::piqa, path);  // labels by default name
  ASSERT_EQ(r.examples(), 2);
  EXPECT_NEAR(r.outcomes[1].scores[1].loglikelihood, text_loglikelihood(":", " bcde"), 1e-12);
  EXPECT_EQ(r.outcomes[0].predicted, 0);
  EXPECT_EQ(r.outcomes[0].predicted_norm, 0);
  EXPECT_EQ(r.outcomes[1].predicted, 0);
  EXPECT_EQ(r.outcomes[1].predicted_norm, 1);
  EXPECT_EQ(r.acc, 1.0);
  EXPECT_EQ(*r.acc_norm, 0.5);
  // An explicit labels file wins over the default one.
  const std::string other = dir.file("other.lst", "1\n1\n").string();
  const BenchmarkResult r2 = score_file(Benchmark::piqa, path, other);
  EXPECT_EQ(r2.acc, 0.0);
  EXPECT_EQ(*r2.acc_norm, 0.5);
}

TEST(BenchmarkScoring, WinograndePartialScoring) {
  test::TempDir dir;
  // S1: option1 "zz" wins only by partial scoring: 'z' predicts the following ' ' far
  // better than 'a' does, while "zz" itself is less likely than "a" after "X ", so
  // scoring the whole sentence would pick option2. S2: option1 wins, the answer is 2.
  const std::string data = R"({"sentence":"X _ b.","option1":"zz","option2":"a","answer":"1"})"
                           "\n"
                           R"({"sentence":"Y _  c ","option1":"z","option2":"r","answer":"2"})"
                           "\n";
  BigramScorer scorer;
  const std::vector<Example> ex =
      load_benchmark(Benchmark::winogrande, dir.file("w.jsonl", data).string());
  const BenchmarkResult r = evaluate_benchmark(Benchmark::winogrande, ex, ByteTokenizer{}, scorer);
  EXPECT_EQ(scorer.calls, 4) << "the two options are two contexts";
  ASSERT_EQ(r.examples(), 2);
  EXPECT_EQ(ex[0].requests[0].context, "X zz");
  EXPECT_EQ(ex[0].requests[1].context, "X a");
  EXPECT_EQ(ex[0].requests[1].continuation, " b.");
  EXPECT_EQ(ex[1].requests[0].continuation, " c") << "the rest of the sentence, stripped";
  const double rest = std::log(10.0 / 513) + std::log(1.0 / 513);  // "b." after ' '
  const double p1 = std::log(30.0 / 519) + rest, p2 = std::log(4.0 / 513) + rest;
  EXPECT_NEAR(r.outcomes[0].scores[0].loglikelihood, p1, 1e-12);
  EXPECT_NEAR(r.outcomes[0].scores[1].loglikelihood, p2, 1e-12);
  const double full1 = text_loglikelihood("X ", "zz b."), full2 = text_loglikelihood("X ", "a b.");
  ASSERT_LT(full1, full2) << "whole-sentence scoring would pick option2";
  EXPECT_EQ(r.outcomes[0].predicted, 0);
  EXPECT_EQ(r.outcomes[1].predicted, 0);
  EXPECT_EQ(r.outcomes[1].predicted_norm, -1);
  EXPECT_EQ(r.acc, 0.5);
  EXPECT_FALSE(r.acc_norm.has_value());
  EXPECT_FALSE(r.perplexity.has_value());
  EXPECT_EQ(benchmark_summary(r.to_json()), "winogrande: acc 0.5000 ± 0.5000  (2 sentences)");
}

// ---- The model scorer against plain full forwards ---------------------------------

// Counts the token steps a model runs, to show the context is not recomputed per choice.
template <class M>
struct CountingModel {
  using S = typename M::S;
  M& model;
  index_t steps = 0;
  auto initial_state(index_t B) const { return model.initial_state(B); }
  template <class State>
  void forward(const std::int32_t* tokens, const std::int32_t* targets, index_t T, index_t B,
               const StepContext& ctx, State* state) {
    steps += T * B;
    model.forward(tokens, targets, T, B, ctx, state);
  }
  CView<S> logits() const { return model.logits(); }
};

// Σ log softmax over positions |context|−1 .. of one full forward of context +
// continuation from the zero state, and whether each was the argmax.
template <class M>
ContinuationScore full_forward_score(M& model, const std::vector<std::int32_t>& context,
                                     const std::vector<std::int32_t>& cont) {
  std::vector<std::int32_t> seq = context;
  seq.insert(seq.end(), cont.begin(), cont.end());
  model.forward(seq.data(), nullptr, index_t(seq.size()), 1, StepContext{});
  const auto logits = model.logits();  // (T,1,V)
  const index_t V = logits.dim(2);
  ContinuationScore s{0, true};
  for (size_t i = 0; i < cont.size(); ++i) {
    const auto* row = logits.data + (context.size() - 1 + i) * V;
    double m = -INFINITY, z = 0;
    index_t arg = 0;
    for (index_t v = 0; v < V; ++v) {
      m = std::max(m, double(row[v]));
      if (row[v] > row[arg]) arg = v;
    }
    for (index_t v = 0; v < V; ++v) z += std::exp(double(row[v]) - m);
    s.loglikelihood += double(row[cont[i]]) - m - std::log(z);
    s.greedy = s.greedy && arg == cont[i];
  }
  return s;
}

class ModelScoring : public testing::TestWithParam<const char*> {};

TEST_P(ModelScoring, StateReuseEqualsFullForwardFromScratch) {
  test::TempDir dir;
  const std::string checkpoint = test::train_tiny_text_model(dir, GetParam(), 15);
  const Checkpoint ck = read_checkpoint(checkpoint);

  const ByteTokenizer tok;
  const std::vector<std::vector<std::int32_t>> conts = {
      tok.encode(" mat."), tok.encode(" t"), tok.encode(" on the mat. the"), tok.encode("!")};
  // A context longer than the chunk (3) with a partial last chunk, and one of length 1
  // (no context forward at all).
  for (const std::string& context_text : {std::string("the cat sat on"), std::string("t")}) {
    const std::vector<std::int32_t> context = tok.encode(context_text);
    // In double, so that the comparison sees the algorithm, not float rounding.
    with_mixer<double>(ck.config.cell, ck.config.aggregator, [&]<class Mixer>() {
      auto model = build_model<Mixer>(ck.config, 256);
      for (const ParamInfo& info : model.params().infos()) {
        const std::vector<double> v = ck.file.at(info.name).to<double>(info.name);
        ASSERT_EQ(index_t(v.size()), info.shape.numel());
        std::copy(v.begin(), v.end(), model.params().values() + info.offset);
      }
      model.params().mark_all_set();
      CountingModel<decltype(model)> counting{model};
      ModelScorer scorer(counting, /*chunk=*/3);
      const std::vector<ContinuationScore> got = scorer.score(context, conts);
      EXPECT_EQ(counting.steps, index_t(context.size() - 1 + conts.size() * conts[2].size()))
          << "the context runs once; the 4 continuations as 4 streams of the longest length";
      ASSERT_EQ(got.size(), conts.size());
      for (size_t i = 0; i < conts.size(); ++i) {
        const ContinuationScore want = full_forward_score(model, context, conts[i]);
        EXPECT_NEAR(got[i].loglikelihood, want.loglikelihood, 1e-9 * std::abs(want.loglikelihood))
            << context_text << " + continuation " << i;
        EXPECT_EQ(got[i].greedy, want.greedy) << i;
        EXPECT_LT(want.loglikelihood, 0);
      }
    });
  }
  // The float model the CLI uses, through the checkpoint, with the default chunk: the
  // same up to float rounding (GEMMs over different row counts may round differently).
  with_checkpoint_model(ck, [&](auto& model) {
    ModelScorer scorer(model);
    const std::vector<std::int32_t> context = tok.encode("the cat sat on");
    const std::vector<ContinuationScore> got = scorer.score(context, conts);
    for (size_t i = 0; i < conts.size(); ++i) {
      const ContinuationScore want = full_forward_score(model, context, conts[i]);
      EXPECT_NEAR(got[i].loglikelihood, want.loglikelihood, 1e-5 * std::abs(want.loglikelihood));
    }
    return 0;
  });
}
INSTANTIATE_TEST_SUITE_P(AllCells, ModelScoring, testing::Values("gru", "lstm", "rwkv", "ssm"));

// ---- Strict parsing ------------------------------------------------------------------

struct Malformed {
  const char* name;
  Benchmark benchmark;
  std::string data;
  std::string labels;  // piqa: written to data's default labels file when not empty
  std::string where;   // "<file>:<line>" suffix expected, e.g. "d:2"
  std::string problem;
};

void PrintTo(const Malformed& m, std::ostream* os) {
  *os << m.name;
}

class BenchmarkParsing : public testing::TestWithParam<Malformed> {};

TEST_P(BenchmarkParsing, MalformedInputIsAnErrorNamingFileAndLine) {
  const Malformed& m = GetParam();
  test::TempDir dir;
  const std::string data = dir.file("d.jsonl", m.data).string();
  if (!m.labels.empty()) dir.file("d_labels.lst", m.labels);
  const std::string file = m.where.substr(0, m.where.find(':'));
  const std::string where = (dir.path() / file).string() + m.where.substr(file.size());
  try {
    load_benchmark(m.benchmark, data);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(where), std::string::npos) << msg << "\n(expected " << where << ")";
    EXPECT_NE(msg.find(m.problem), std::string::npos) << msg;
  }
}

const std::string kArc1 =
    R"({"question":{"stem":"Q","choices":[{"text":"a","label":"A"},{"text":"b","label":"B"}]},"answerKey":"A"})";
const std::string kPiqa1 = R"({"goal":"G","sol1":"a","sol2":"b"})";
const std::string kWino1 = R"({"sentence":"A _ b.","option1":"x","option2":"y","answer":"1"})";

INSTANTIATE_TEST_SUITE_P(
    Files, BenchmarkParsing,
    testing::Values(
        Malformed{"lambada_empty", Benchmark::lambada, "", "", "d.jsonl", "empty"},
        Malformed{"lambada_one_word", Benchmark::lambada, "a b\nword\n", "", "d.jsonl:2",
                  "no space"},
        Malformed{"lambada_blank_line", Benchmark::lambada, "a b\n\nc d\n", "", "d.jsonl:2",
                  "empty line"},
        Malformed{"lambada_trailing_space", Benchmark::lambada, "a b \n", "", "d.jsonl:1",
                  "ends with a space"},
        Malformed{"lambada_no_context", Benchmark::lambada, "a b\n  word\n", "", "d.jsonl:2",
                  "no context"},
        Malformed{"arc_empty", Benchmark::arc_easy, "", "", "d.jsonl", "empty"},
        Malformed{"arc_bad_json", Benchmark::arc_easy, kArc1 + "\n{\"question\":\n", "",
                  "d.jsonl:2", "malformed JSON"},
        Malformed{"arc_not_object", Benchmark::arc_easy, "[1,2]\n", "", "d.jsonl:1",
                  "expected a JSON object"},
        Malformed{"arc_no_stem", Benchmark::arc_easy,
                  R"({"question":{"choices":[{"text":"a","label":"A"}]},"answerKey":"A"})", "",
                  "d.jsonl:1", "missing field 'question.stem'"},
        Malformed{
            "arc_no_answer", Benchmark::arc_easy,
            kArc1 + "\n" + R"({"question":{"stem":"Q","choices":[{"text":"a","label":"A"}]}})", "",
            "d.jsonl:2", "missing field 'answerKey'"},
        Malformed{"arc_choice_without_text", Benchmark::arc_easy,
                  R"({"question":{"stem":"Q","choices":[{"label":"A"}]},"answerKey":"A"})", "",
                  "d.jsonl:1", "missing field 'question.choices[0].text'"},
        Malformed{"arc_choices_not_array", Benchmark::arc_easy,
                  R"({"question":{"stem":"Q","choices":"A"},"answerKey":"A"})", "", "d.jsonl:1",
                  "field 'question.choices' is string, expected array"},
        Malformed{
            "arc_unknown_answer", Benchmark::arc_easy,
            R"({"question":{"stem":"Q","choices":[{"text":"a","label":"A"}]},"answerKey":"E"})", "",
            "d.jsonl:1", "unknown answerKey 'E'"},
        Malformed{"piqa_no_labels_file", Benchmark::piqa, kPiqa1 + "\n", "", "d_labels.lst",
                  "--labels"},
        Malformed{"piqa_too_few_labels", Benchmark::piqa, kPiqa1 + "\n" + kPiqa1 + "\n", "1\n",
                  "d.jsonl:2", "no label"},
        Malformed{"piqa_too_many_labels", Benchmark::piqa, kPiqa1 + "\n", "1\n0\n",
                  "d_labels.lst:2", "a label beyond"},
        Malformed{"piqa_bad_label", Benchmark::piqa, kPiqa1 + "\n" + kPiqa1 + "\n", "1\n2\n",
                  "d_labels.lst:2", "label '2' is not 0 or 1"},
        Malformed{"piqa_missing_sol2", Benchmark::piqa, R"({"goal":"G","sol1":"a"})", "0\n",
                  "d.jsonl:1", "missing field 'sol2'"},
        Malformed{"piqa_empty_labels", Benchmark::piqa, kPiqa1 + "\n", "\n", "d_labels.lst:1",
                  "not 0 or 1"},
        Malformed{"winogrande_empty", Benchmark::winogrande, "", "", "d.jsonl", "empty"},
        Malformed{"winogrande_no_blank", Benchmark::winogrande,
                  R"({"sentence":"A b.","option1":"x","option2":"y","answer":"1"})", "",
                  "d.jsonl:1", "no '_'"},
        Malformed{
            "winogrande_bad_answer", Benchmark::winogrande,
            kWino1 + "\n" + R"({"sentence":"A _ b.","option1":"x","option2":"y","answer":"3"})", "",
            "d.jsonl:2", "unknown answer '3'"},
        Malformed{"winogrande_answer_not_string", Benchmark::winogrande,
                  R"({"sentence":"A _ b.","option1":"x","option2":"y","answer":1})", "",
                  "d.jsonl:1", "field 'answer' is number, expected string"},
        Malformed{"winogrande_missing_option", Benchmark::winogrande,
                  R"({"sentence":"A _ b.","option1":"x","answer":"1"})", "", "d.jsonl:1",
                  "missing field 'option2'"}),
    [](const testing::TestParamInfo<Malformed>& i) { return std::string(i.param.name); });

TEST(BenchmarkParsing, AccNormCountsCharactersOfTheChoiceAsLmEval) {
  test::TempDir dir;
  // len(choice) in Python: code points, without the space before the choice.
  const std::string data =
      R"({"question":{"stem":"Q","choices":[{"text":"caf\u00e9","label":"A"},{"text":"ab","label":"B"}]},"answerKey":"A"})";
  const std::vector<Example> ex =
      load_benchmark(Benchmark::arc_easy, dir.file("a.jsonl", data).string());
  EXPECT_EQ(ex[0].requests[0].continuation, " caf\xc3\xa9");
  EXPECT_EQ(ex[0].choice_chars, (std::vector<double>{4, 2}));
}

// LAMBADA-OpenAI: JSON lines whose text may hold newlines; split at the last space.
TEST(BenchmarkParsing, LambadaOpenaiSplitsAtTheLastSpace) {
  test::TempDir dir;
  const auto ex =
      load_benchmark(Benchmark::lambada_openai,
                     dir.file("l.jsonl", R"({"text": "He said:\n\"go home\" and left Anna"})"
                                         "\n")
                         .string());
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0].requests[0].context, "He said:\n\"go home\" and left");
  EXPECT_EQ(ex[0].requests[0].continuation, " Anna");
  for (const auto& [bad, why] : std::vector<std::pair<std::string, std::string>>{
           {R"({"text": "word"})", "no space"},
           {R"({"text": "a b "})", "the passage ends with a space"},
           {R"({"text": " b"})", "no context"},
           {R"({"txt": "a b"})", "missing field 'text'"},
           {"a b", "malformed JSON"}}) {
    try {
      load_benchmark(Benchmark::lambada_openai, dir.file("bad.jsonl", bad).string());
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("bad.jsonl:1: " + why), std::string::npos) << e.what();
    }
  }
}

// HellaSwag, lm-eval's format and preprocessing. The expected strings are Python's, from
// lm-eval's hellaswag preprocess (strip, " [title]" → ". ", drop "[...]", "  " → " "),
// ctx_b.capitalize() and len(choice).
TEST(BenchmarkParsing, HellaswagAsLmEvalPreprocessesIt) {
  test::TempDir dir;
  const std::string line =
      R"({"activity_label": "Home and Garden", "ctx_a": "[header] How to  clean a [title] grill", )"
      R"("ctx_b": "sCRUB the GRATES.  [step] Use a brush", "endings": ["[substeps] Rinse   well.", )"
      R"(" scrape it", "Ümlaut ÉTÉ [x]y", "a]b[c"], "label": 2})";
  const auto ex = load_benchmark(Benchmark::hellaswag, dir.file("h.jsonl", line + "\n").string());
  ASSERT_EQ(ex.size(), 1u);
  ASSERT_EQ(ex[0].requests.size(), 4u);
  EXPECT_EQ(ex[0].gold, 2);
  const std::string query = "Home and Garden: How to clean a. grill Scrub the grates.  use a brush";
  const std::vector<std::string> choices = {" Rinse  well.", "scrape it",
                                            "\u00dcmlaut \u00c9T\u00c9 y", "a]b[c"};
  const std::vector<double> chars = {13, 9, 12, 5};
  for (size_t c = 0; c < 4; ++c) {
    EXPECT_EQ(ex[0].requests[c].context, query);
    EXPECT_EQ(ex[0].requests[c].continuation, " " + choices[c]);
    EXPECT_EQ(ex[0].choice_chars[c], chars[c]);
  }
  // A label given as text; malformed lines name the problem.
  const std::string as_text =
      R"({"activity_label": "A", "ctx_a": "b", "ctx_b": "c", "endings": ["d", "e"], "label": "1"})";
  EXPECT_EQ(load_benchmark(Benchmark::hellaswag, dir.file("t.jsonl", as_text).string())[0].gold, 1);
  for (
      const auto& [bad, why] : std::vector<std::pair<std::string, std::string>>{
          {R"({"activity_label": "A", "ctx_a": "b", "ctx_b": "c", "endings": ["d", "e"], "label": 2})",
           "label 2 is not one of the 2 endings"},
          {R"({"activity_label": "A", "ctx_a": "b", "ctx_b": "c", "endings": ["d"], "label": 0})",
           "1 endings"},
          {R"({"activity_label": "A", "ctx_a": "b", "ctx_b": "c", "endings": ["d", 3], "label": 0})",
           "'endings[1]' is not a string"},
          {R"({"activity_label": "A", "ctx_a": "b", "endings": ["d", "e"], "label": 0})", "ctx_b"},
          {R"({"activity_label": "A", "ctx_a": "b", "ctx_b": "c", "endings": ["d", "e"], "label": "x"})",
           "not an ending's index"}}) {
    try {
      load_benchmark(Benchmark::hellaswag, dir.file("bad.jsonl", bad).string());
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("bad.jsonl:1: "), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  }
}

// Known answers under the bigram model, after the query "x: xy": the short ending ("zz",
// "q") has the larger summed log-likelihood (−12.7, −8.8 against −27.6 for " abcdefgh"),
// but "abcdefgh" continues the alphabet and wins per character (−3.4 against −6.4, −8.8).
// So acc picks ending 0 and acc_norm ending 1 in both, each right once.
TEST(BenchmarkScoring, HellaswagAccAndAccNormWithStandardErrors) {
  test::TempDir dir;
  const std::string line1 =
      R"({"activity_label": "x", "ctx_a": "xy", "ctx_b": "", "endings": ["zz", "abcdefgh"], "label": 1})";
  const std::string line2 =
      R"({"activity_label": "x", "ctx_a": "xy", "ctx_b": "", "endings": ["q", "abcdefgh"], "label": 0})";
  const auto path = dir.file("h.jsonl", line1 + "\n" + line2 + "\n").string();
  const BenchmarkResult r = score_file(Benchmark::hellaswag, path);
  ASSERT_EQ(r.examples(), 2);
  for (const ExampleOutcome& o : r.outcomes) EXPECT_EQ(o.predicted, 0);
  EXPECT_EQ(r.acc, 0.5);
  EXPECT_NEAR(r.acc_stderr, 0.5, 1e-15);
  ASSERT_TRUE(r.acc_norm.has_value());
  EXPECT_NEAR(*r.acc_norm_stderr, 0.5, 1e-15);
  EXPECT_EQ(r.outcomes[0].predicted_norm, 1);
  EXPECT_EQ(r.outcomes[1].predicted_norm, 1);
  EXPECT_EQ(*r.acc_norm, 0.5);
  EXPECT_FALSE(r.perplexity.has_value());
}

TEST(BenchmarkParsing, LabelsApplyToPiqaOnly) {
  test::TempDir dir;
  const std::string data = dir.file("w.jsonl", kWino1 + "\n").string();
  EXPECT_THROW(load_benchmark(Benchmark::winogrande, data, data), UsageError);
  EXPECT_THROW(parse_benchmark("hellaswag-v2"), UsageError);
  EXPECT_EQ(parse_benchmark("hellaswag"), Benchmark::hellaswag);
  EXPECT_EQ(parse_benchmark("lambada-openai"), Benchmark::lambada_openai);
  EXPECT_EQ(parse_benchmark("arc-easy"), Benchmark::arc_easy);
}

}  // namespace
}  // namespace mtp::exp
