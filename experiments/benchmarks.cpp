#include "mtp/experiments/benchmarks.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <filesystem>

#include "mtp/core/file_io.hpp"
#include "mtp/experiments/trainer.hpp"

namespace mtp::exp {
namespace {

using nlohmann::json;

// A line of a file, for error messages "file:line: problem".
struct Where {
  const std::string& file;
  int line;
};

template <class... Args>
[[noreturn]] void fail_at(const Where& w, fmt::format_string<Args...> f, Args&&... args) {
  fail("{}:{}: {}", w.file, w.line, fmt::format(f, std::forward<Args>(args)...));
}

// The lines of a file without their "\n" (or "\r\n"); a final newline ends the last
// line rather than starting an empty one. An empty file is an error.
std::vector<std::string> read_lines(const std::string& path, const char* flag) {
  const std::vector<std::uint8_t> bytes = read_file_bytes(path, flag);
  MTP_CHECK(!bytes.empty(), "{} {}: the file is empty", flag, path);
  std::vector<std::string> lines;
  std::string cur;
  for (std::uint8_t b : bytes) {
    if (b != '\n') {
      cur += char(b);
      continue;
    }
    if (!cur.empty() && cur.back() == '\r') cur.pop_back();
    lines.push_back(std::move(cur));
    cur.clear();
  }
  if (!cur.empty()) lines.push_back(std::move(cur));
  return lines;
}

json parse_object(const std::string& line, const Where& w) {
  if (line.empty()) fail_at(w, "empty line (expected a JSON object)");
  json j;
  try {
    j = json::parse(line);
  } catch (const json::exception& e) {
    fail_at(w, "malformed JSON ({})", e.what());
  }
  if (!j.is_object()) fail_at(w, "expected a JSON object, got {}", j.type_name());
  return j;
}

// obj[key] of the given type; `name` is its dotted path for the message.
const json& field(const json& obj, const char* key, json::value_t type, std::string_view name,
                  const Where& w) {
  const auto it = obj.find(key);
  if (it == obj.end()) fail_at(w, "missing field '{}'", name);
  if (it->type() != type)
    fail_at(w, "field '{}' is {}, expected {}", name, it->type_name(), json(type).type_name());
  return *it;
}
const std::string& text_field(const json& obj, const char* key, std::string_view name,
                              const Where& w) {
  return field(obj, key, json::value_t::string, name, w).get_ref<const std::string&>();
}
const std::string& nonempty_text(const json& obj, const char* key, std::string_view name,
                                 const Where& w) {
  const std::string& s = text_field(obj, key, name, w);
  if (s.empty()) fail_at(w, "field '{}' is empty", name);
  return s;
}

// Unicode code points of UTF-8 text: Python's len(str), which lm-eval-harness uses.
double code_points(std::string_view s) {
  return double(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

constexpr std::string_view kSpaces = " \t\n\r\f\v";
std::string strip(std::string_view s) {
  const size_t b = s.find_first_not_of(kSpaces);
  if (b == std::string_view::npos) return "";
  return std::string(s.substr(b, s.find_last_not_of(kSpaces) - b + 1));
}
bool blank(std::string_view s) {
  return s.find_first_not_of(' ') == std::string_view::npos;
}

// lm-eval's multiple-choice prompt: "Question: {q}\nAnswer:" and " {choice}" per choice.
Example question_example(int line, const std::string& question,
                         const std::vector<std::string>& choices, int gold) {
  Example ex{line, {}, gold, {}};
  for (const std::string& c : choices) {
    ex.requests.push_back({"Question: " + question + "\nAnswer:", " " + c});
    ex.choice_chars.push_back(code_points(c));
  }
  return ex;
}

// LAMBADA: context = the passage up to the space before its last word, continuation =
// " " + the last word (lm-eval's lambada_openai).
std::vector<Example> load_lambada(const std::string& path) {
  const std::vector<std::string> lines = read_lines(path, "--data");
  std::vector<Example> out;
  for (size_t i = 0; i < lines.size(); ++i) {
    const Where w{path, int(i + 1)};
    const std::string& s = lines[i];
    if (s.empty()) fail_at(w, "empty line (expected a passage)");
    const size_t sp = s.rfind(' ');
    if (sp == std::string::npos) fail_at(w, "no space before the last word");
    if (sp + 1 == s.size()) fail_at(w, "the passage ends with a space, not a word");
    if (blank(s.substr(0, sp))) fail_at(w, "no context before the last word");
    out.push_back({int(i + 1), {{s.substr(0, sp), s.substr(sp)}}, 0, {}});
  }
  return out;
}

std::vector<Example> load_arc(const std::string& path) {
  const std::vector<std::string> lines = read_lines(path, "--data");
  std::vector<Example> out;
  for (size_t i = 0; i < lines.size(); ++i) {
    const Where w{path, int(i + 1)};
    const json j = parse_object(lines[i], w);
    const json& q = field(j, "question", json::value_t::object, "question", w);
    const std::string& stem = nonempty_text(q, "stem", "question.stem", w);
    const json& choices = field(q, "choices", json::value_t::array, "question.choices", w);
    if (choices.empty()) fail_at(w, "field 'question.choices' is empty");
    const std::string& key = text_field(j, "answerKey", "answerKey", w);
    std::vector<std::string> texts, labels;
    for (size_t c = 0; c < choices.size(); ++c) {
      const std::string name = fmt::format("question.choices[{}]", c);
      if (!choices[c].is_object()) fail_at(w, "'{}' is not an object", name);
      texts.push_back(nonempty_text(choices[c], "text", name + ".text", w));
      labels.push_back(text_field(choices[c], "label", name + ".label", w));
      if (std::count(labels.begin(), labels.end(), labels.back()) > 1)
        fail_at(w, "choice label '{}' appears twice", labels.back());
    }
    const auto gold = std::find(labels.begin(), labels.end(), key);
    if (gold == labels.end())
      fail_at(w, "unknown answerKey '{}' (the choice labels are {})", key, fmt::join(labels, ", "));
    out.push_back(question_example(int(i + 1), stem, texts, int(gold - labels.begin())));
  }
  return out;
}

std::vector<Example> load_piqa(const std::string& path, std::string labels_path) {
  if (labels_path.empty()) {
    const std::string ext = ".jsonl";
    const bool jsonl = path.size() > ext.size() && path.ends_with(ext);
    labels_path = (jsonl ? path.substr(0, path.size() - ext.size()) : path) + "_labels.lst";
    if (!std::filesystem::exists(labels_path))
      fail("piqa needs the labels of {}: give --labels FILE (no {})", path, labels_path);
  }
  const std::vector<std::string> lines = read_lines(path, "--data");
  const std::vector<std::string> labels = read_lines(labels_path, "--labels");
  if (labels.size() > lines.size())
    fail("{}:{}: a label beyond the {} questions of {}", labels_path, lines.size() + 1,
         lines.size(), path);
  if (labels.size() < lines.size())
    fail("{}:{}: no label for this question ({} has {} labels)", path, labels.size() + 1,
         labels_path, labels.size());
  std::vector<Example> out;
  for (size_t i = 0; i < lines.size(); ++i) {
    const Where w{path, int(i + 1)};
    const json j = parse_object(lines[i], w);
    const std::string& goal = nonempty_text(j, "goal", "goal", w);
    std::vector<std::string> sols = {nonempty_text(j, "sol1", "sol1", w),
                                     nonempty_text(j, "sol2", "sol2", w)};
    if (labels[i] != "0" && labels[i] != "1")
      fail_at(Where{labels_path, int(i + 1)}, "label '{}' is not 0 or 1", labels[i]);
    out.push_back(question_example(int(i + 1), goal, sols, labels[i] == "1"));
  }
  return out;
}

// WinoGrande, lm-eval's partial scoring: option k fills the blank in the context
// (sentence up to "_" + option k); both score the same continuation, " " + the stripped
// rest of the sentence, so only how well each option predicts the rest counts.
std::vector<Example> load_winogrande(const std::string& path) {
  const std::vector<std::string> lines = read_lines(path, "--data");
  std::vector<Example> out;
  for (size_t i = 0; i < lines.size(); ++i) {
    const Where w{path, int(i + 1)};
    const json j = parse_object(lines[i], w);
    const std::string& sentence = text_field(j, "sentence", "sentence", w);
    const std::string& option1 = nonempty_text(j, "option1", "option1", w);
    const std::string& option2 = nonempty_text(j, "option2", "option2", w);
    const std::string& answer = text_field(j, "answer", "answer", w);
    const size_t blank_at = sentence.find('_');
    if (blank_at == std::string::npos) fail_at(w, "no '_' in the sentence");
    if (answer != "1" && answer != "2")
      fail_at(w, "unknown answer '{}' (expected \"1\" or \"2\")", answer);
    const std::string head = sentence.substr(0, blank_at);
    std::string rest = " ";  // (not " " + strip(..): GCC 12 warns falsely, -Wrestrict)
    rest += strip(std::string_view(sentence).substr(blank_at + 1));
    Example ex{int(i + 1), {{head + option1, rest}, {head + option2, rest}}, answer == "2", {}};
    for (const Request& r : ex.requests)
      if (blank(r.context)) fail_at(w, "empty context before the blank");
    out.push_back(std::move(ex));
  }
  return out;
}

template <class F>
int argmax(size_t n, F&& value) {
  size_t best = 0;
  for (size_t i = 1; i < n; ++i)
    if (value(i) > value(best)) best = i;
  return int(best);
}

}  // namespace

Benchmark parse_benchmark(std::string_view name) {
  if (name == "lambada") return Benchmark::lambada;
  if (name == "arc-easy") return Benchmark::arc_easy;
  if (name == "piqa") return Benchmark::piqa;
  if (name == "winogrande") return Benchmark::winogrande;
  usage_fail("--benchmark '{}' is not one of {}", name, kBenchmarkNames);
}

const char* benchmark_name(Benchmark b) {
  switch (b) {
    case Benchmark::lambada:
      return "lambada";
    case Benchmark::arc_easy:
      return "arc-easy";
    case Benchmark::piqa:
      return "piqa";
    case Benchmark::winogrande:
      return "winogrande";
  }
  return "?";
}

std::vector<Example> load_benchmark(Benchmark b, const std::string& data,
                                    const std::string& labels) {
  if (!labels.empty() && b != Benchmark::piqa)
    usage_fail("--labels applies to piqa only ({} files carry their answers)", benchmark_name(b));
  switch (b) {
    case Benchmark::lambada:
      return load_lambada(data);
    case Benchmark::arc_easy:
      return load_arc(data);
    case Benchmark::piqa:
      return load_piqa(data, labels);
    case Benchmark::winogrande:
      return load_winogrande(data);
  }
  return {};
}

EncodedRequest encode_request(const Tokenizer& tok, const Request& r) {
  const size_t keep = r.context.find_last_not_of(kSpaces) + 1;  // npos + 1 = 0: all spaces
  const std::string context = r.context.substr(0, keep);
  EncodedRequest e{tok.encode(context),
                   tok.encode(context + r.context.substr(keep) + r.continuation)};
  // The whole text's tokens after the context's (lm-eval: whole_enc[len(context_enc):]).
  e.continuation.erase(e.continuation.begin(),
                       e.continuation.begin() + std::min(e.context.size(), e.continuation.size()));
  return e;
}

BenchmarkResult evaluate_benchmark(Benchmark b, const std::vector<Example>& examples,
                                   const Tokenizer& tok, Scorer& scorer) {
  MTP_CHECK(!examples.empty(), "no examples to evaluate");
  BenchmarkResult r;
  r.benchmark = b;
  double ll_sum = 0;
  index_t hits = 0, hits_norm = 0;
  for (const Example& ex : examples) {
    const size_t n = ex.requests.size();
    std::vector<EncodedRequest> enc;
    for (const Request& q : ex.requests) {
      enc.push_back(encode_request(tok, q));
      MTP_CHECK(!enc.back().context.empty() && !enc.back().continuation.empty(),
                "line {}: the context or a continuation has no tokens", ex.line);
    }
    ExampleOutcome o;
    // Consecutive requests with the same context (every choice of a question) are
    // scored in one call, so the scorer runs the context once.
    for (size_t i = 0; i < n;) {
      size_t j = i + 1;
      while (j < n && enc[j].context == enc[i].context) ++j;
      std::vector<std::vector<std::int32_t>> conts;
      for (size_t k = i; k < j; ++k) conts.push_back(std::move(enc[k].continuation));
      const std::vector<ContinuationScore> s = scorer.score(enc[i].context, conts);
      MTP_CHECK(s.size() == j - i, "the scorer returned {} scores for {} continuations", s.size(),
                j - i);
      o.scores.insert(o.scores.end(), s.begin(), s.end());
      i = j;
    }
    o.predicted = argmax(n, [&](size_t i) { return o.scores[i].loglikelihood; });
    o.predicted_norm = ex.choice_chars.empty() ? -1 : argmax(n, [&](size_t i) {
      return o.scores[i].loglikelihood / ex.choice_chars[i];
    });
    if (b == Benchmark::lambada) {
      hits += o.scores[0].greedy;
      ll_sum += o.scores[0].loglikelihood;
    } else {
      hits += o.predicted == ex.gold;
      hits_norm += o.predicted_norm == ex.gold;
    }
    r.outcomes.push_back(std::move(o));
  }
  const double n = double(examples.size());
  r.acc = double(hits) / n;
  if (b == Benchmark::lambada) r.perplexity = std::exp(-ll_sum / n);
  if (b == Benchmark::arc_easy || b == Benchmark::piqa) r.acc_norm = double(hits_norm) / n;
  return r;
}

nlohmann::json BenchmarkResult::to_json() const {
  json j = {{"benchmark", benchmark_name(benchmark)}, {"examples", examples()}, {"acc", acc}};
  if (acc_norm) j["acc_norm"] = *acc_norm;
  if (perplexity) j["perplexity"] = *perplexity;
  return j;
}

std::string benchmark_summary(const nlohmann::json& r) {
  const std::string name = r.at("benchmark").get<std::string>();
  std::string s = fmt::format("{}: acc {:.4f}", name, r.at("acc").get<double>());
  if (r.contains("acc_norm")) s += fmt::format("  acc_norm {:.4f}", r["acc_norm"].get<double>());
  if (r.contains("perplexity"))
    s += fmt::format("  perplexity {:.2f}", r["perplexity"].get<double>());
  const char* unit = name == "lambada"      ? "passages"
                     : name == "winogrande" ? "sentences"
                                            : "questions";
  return s + fmt::format("  ({} {})", r.at("examples").get<long long>(), unit);
}

nlohmann::json run_benchmark(const BenchmarkArgs& a) {
  const Benchmark b = parse_benchmark(a.benchmark);
  if (a.data.empty()) usage_fail("--benchmark needs --data FILE (the benchmark's file)");
  if (a.limit < 0) usage_fail("--limit must be >= 1, got {}", a.limit);
  set_threads(a.threads);
  Checkpoint ck = read_checkpoint(a.checkpoint);
  if (ck.config.task != "text")
    fail("{}: benchmarks score text models; this checkpoint was trained on {}", a.checkpoint,
         ck.config.task);
  override_tokenizer(ck, a.tokenizer);
  const std::unique_ptr<Tokenizer> tok = load_tokenizer(ck.config.tokenizer);
  std::vector<Example> examples = load_benchmark(b, a.data, a.labels);
  if (a.limit > 0 && size_t(a.limit) < examples.size()) examples.resize(size_t(a.limit));
  const auto t0 = std::chrono::steady_clock::now();
  const BenchmarkResult r = with_checkpoint_model(ck, [&](auto& model) {
    ModelScorer scorer(model);
    return evaluate_benchmark(b, examples, *tok, scorer);
  });
  json j = r.to_json();
  j["checkpoint"] = a.checkpoint;
  j["data"] = a.data;
  j["tokenizer"] = tok->describe();
  j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return j;
}

}  // namespace mtp::exp
