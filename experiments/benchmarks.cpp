#include "mtp/experiments/benchmarks.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <filesystem>

#include "mtp/core/file_io.hpp"
#include "mtp/experiments/stats.hpp"
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

// A LAMBADA passage as lm-eval splits it: context = the passage up to the space before
// its last word (text.split(' ')[:-1] joined), continuation = " " + the last word.
Example last_word_example(const std::string& s, const Where& w) {
  const size_t sp = s.rfind(' ');
  if (sp == std::string::npos) fail_at(w, "no space before the last word");
  if (sp + 1 == s.size()) fail_at(w, "the passage ends with a space, not a word");
  if (blank(s.substr(0, sp))) fail_at(w, "no context before the last word");
  return {w.line, {{s.substr(0, sp), s.substr(sp)}}, 0, {}};
}

// One example per line of a JSON-lines file: make(object, where) builds it.
template <class Make>
std::vector<Example> load_json_lines(const std::string& path, Make&& make) {
  const std::vector<std::string> lines = read_lines(path, "--data");
  std::vector<Example> out;
  out.reserve(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    const Where w{path, int(i + 1)};
    const json j = parse_object(lines[i], w);
    out.push_back(make(j, w));
  }
  return out;
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
    out.push_back(last_word_example(s, w));
  }
  return out;
}

// LAMBADA as OpenAI released it: {"text": passage} per line, split as lm-eval's
// lambada_openai: context = text.split(' ')[:-1] joined, target = " " + the last word.
std::vector<Example> load_lambada_openai(const std::string& path) {
  return load_json_lines(path, [](const json& j, const Where& w) {
    return last_word_example(nonempty_text(j, "text", "text", w), w);
  });
}

// Python's str.isspace, for strip().
bool python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// The code points of valid UTF-8 and back (HellaSwag's preprocessing works on them).
std::u32string code_points_of(std::string_view s, const Where& w) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    UChar32 c = 0;
    const auto n = int32_t(std::min<size_t>(s.size() - i, INT32_MAX));
    int32_t k = 0;
    U8_NEXT(reinterpret_cast<const std::uint8_t*>(s.data() + i), k, n, c);
    if (c < 0) fail_at(w, "the text is not valid UTF-8 at byte {}", i);
    out.push_back(char32_t(c));
    i += size_t(k);
  }
  return out;
}
std::string utf8_of(std::u32string_view s) {
  std::string out;
  for (const char32_t c : s) {
    std::uint8_t buf[4];
    int32_t n = 0;
    [[maybe_unused]] UBool error = false;  // the code points came from valid UTF-8
    U8_APPEND(buf, n, 4, UChar32(c), error);
    out.append(reinterpret_cast<const char*>(buf), size_t(n));
  }
  return out;
}

// Python's str.strip() and str.capitalize() (first character to title case, the rest to
// lower case, by Unicode's simple case mappings).
std::u32string python_strip(std::u32string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && python_space(s[b])) ++b;
  while (e > b && python_space(s[e - 1])) --e;
  return std::u32string(s.substr(b, e - b));
}
std::u32string python_capitalize(std::u32string_view s) {
  std::u32string out(s);
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = char32_t(i == 0 ? u_totitle(UChar32(out[i])) : u_tolower(UChar32(out[i])));
  return out;
}

// lm-eval's hellaswag preprocess: strip; " [title]" → ". "; drop "[...]" (shortest, not
// across lines); then "  " → " " once, left to right.
std::u32string hellaswag_preprocess(std::u32string_view text) {
  std::u32string s = python_strip(text), t;
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, 8, U" [title]") == 0) {
      t += U". ";
      i += 8;
    } else {
      t += s[i++];
    }
  }
  s.clear();
  for (size_t i = 0; i < t.size();) {
    if (t[i] == U'[') {
      size_t j = i + 1;
      while (j < t.size() && t[j] != U']' && t[j] != U'\n') ++j;
      if (j < t.size() && t[j] == U']') {
        i = j + 1;
        continue;
      }
    }
    s += t[i++];
  }
  t.clear();
  for (size_t i = 0; i < s.size();) {
    if (s[i] == U' ' && i + 1 < s.size() && s[i + 1] == U' ') {
      t += U' ';
      i += 2;
    } else {
      t += s[i++];
    }
  }
  return t;
}

// HellaSwag as lm-eval's hellaswag task: query = preprocess(activity_label + ": " +
// ctx_a + " " + ctx_b.capitalize()), choices = preprocess(ending) for the 4 endings, each
// scored as " " + choice; label the correct ending (a number or its text).
std::vector<Example> load_hellaswag(const std::string& path) {
  return load_json_lines(path, [](const json& j, const Where& w) {
    const auto text = [&](const char* key) {
      return code_points_of(text_field(j, key, key, w), w);
    };
    const std::u32string query = hellaswag_preprocess(
        text("activity_label") + U": " + text("ctx_a") + U" " + python_capitalize(text("ctx_b")));
    const json& endings = field(j, "endings", json::value_t::array, "endings", w);
    if (endings.size() < 2)
      fail_at(w, "field 'endings' has {} endings, not at least 2", endings.size());
    std::vector<std::string> choices;
    for (size_t c = 0; c < endings.size(); ++c) {
      if (!endings[c].is_string()) fail_at(w, "'endings[{}]' is not a string", c);
      choices.push_back(
          utf8_of(hellaswag_preprocess(code_points_of(endings[c].get<std::string>(), w))));
    }
    const auto it = j.find("label");
    if (it == j.end()) fail_at(w, "missing field 'label'");
    long long label = -1;
    const std::string digits = it->is_string() ? it->get<std::string>() : "";
    if (it->is_number_integer()) {
      label = it->get<long long>();
    } else if (!digits.empty() && digits.size() < 4 &&
               std::all_of(digits.begin(), digits.end(),
                           [](char c) { return c >= '0' && c <= '9'; })) {
      label = std::stoll(digits);
    } else {
      fail_at(w, "field 'label' is {}, not an ending's index", it->dump());
    }
    if (label < 0 || size_t(label) >= choices.size())
      fail_at(w, "label {} is not one of the {} endings", label, choices.size());
    Example ex{w.line, {}, int(label), {}};
    const std::string q = utf8_of(query);
    for (const std::string& c : choices) {
      ex.requests.push_back({q, " " + c});
      ex.choice_chars.push_back(code_points(c));
    }
    if (blank(q)) fail_at(w, "empty context");
    return ex;
  });
}

std::vector<Example> load_arc(const std::string& path) {
  return load_json_lines(path, [](const json& j, const Where& w) {
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
    return question_example(w.line, stem, texts, int(gold - labels.begin()));
  });
}

std::vector<Example> load_piqa(const std::string& path, std::string labels_path) {
  if (labels_path.empty()) {
    const std::string ext = ".jsonl";
    const bool jsonl = path.size() > ext.size() && path.ends_with(ext);
    labels_path = (jsonl ? path.substr(0, path.size() - ext.size()) : path) + "_labels.lst";
    if (!std::filesystem::exists(labels_path))
      fail("piqa needs the labels of {}: give --labels FILE (no {})", path, labels_path);
  }
  const std::vector<std::string> labels = read_lines(labels_path, "--labels");
  std::vector<Example> out = load_json_lines(path, [&](const json& j, const Where& w) {
    const std::string& goal = nonempty_text(j, "goal", "goal", w);
    std::vector<std::string> sols = {nonempty_text(j, "sol1", "sol1", w),
                                     nonempty_text(j, "sol2", "sol2", w)};
    if (size_t(w.line) > labels.size())
      fail_at(w, "no label for this question ({} has {} labels)", labels_path, labels.size());
    const std::string& label = labels[size_t(w.line - 1)];
    if (label != "0" && label != "1")
      fail_at(Where{labels_path, w.line}, "label '{}' is not 0 or 1", label);
    return question_example(w.line, goal, sols, label == "1");
  });
  if (labels.size() > out.size())
    fail("{}:{}: a label beyond the {} questions of {}", labels_path, out.size() + 1, out.size(),
         path);
  return out;
}

// WinoGrande, lm-eval's partial scoring: option k fills the blank in the context
// (sentence up to "_" + option k); both score the same continuation, " " + the stripped
// rest of the sentence, so only how well each option predicts the rest counts.
std::vector<Example> load_winogrande(const std::string& path) {
  return load_json_lines(path, [](const json& j, const Where& w) {
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
    Example ex{w.line, {{head + option1, rest}, {head + option2, rest}}, answer == "2", {}};
    for (const Request& r : ex.requests)
      if (blank(r.context)) fail_at(w, "empty context before the blank");
    return ex;
  });
}

template <class F>
int argmax(size_t n, F&& value) {
  size_t best = 0;
  for (size_t i = 1; i < n; ++i)
    if (value(i) > value(best)) best = i;
  return int(best);
}

}  // namespace

namespace {

struct BenchmarkInfo {
  Benchmark benchmark;
  const char* name;
  const char* unit;  // what an example is
  bool last_word;    // LAMBADA's greedy last word and perplexity; else multiple choice
  bool acc_norm;     // lm-eval reports acc_norm
  std::vector<Example> (*load)(const std::string& data, const std::string& labels);
};

const BenchmarkInfo kBenchmarks[] = {
    {Benchmark::lambada, "lambada", "passages", true, false,
     [](const std::string& d, const std::string&) { return load_lambada(d); }},
    {Benchmark::lambada_openai, "lambada-openai", "passages", true, false,
     [](const std::string& d, const std::string&) { return load_lambada_openai(d); }},
    {Benchmark::arc_easy, "arc-easy", "questions", false, true,
     [](const std::string& d, const std::string&) { return load_arc(d); }},
    {Benchmark::piqa, "piqa", "questions", false, true,
     [](const std::string& d, const std::string& l) { return load_piqa(d, l); }},
    {Benchmark::winogrande, "winogrande", "sentences", false, false,
     [](const std::string& d, const std::string&) { return load_winogrande(d); }},
    {Benchmark::hellaswag, "hellaswag", "contexts", false, true,
     [](const std::string& d, const std::string&) { return load_hellaswag(d); }},
};

const BenchmarkInfo& info(Benchmark b) {
  for (const BenchmarkInfo& i : kBenchmarks)
    if (i.benchmark == b) return i;
  fail("unknown benchmark {}", int(b));
}

// lm-eval's mean_stderr: the sample standard deviation over √n (0 for one example).
double mean_stderr(const std::vector<double>& v) {
  return sample_sd(v) / std::sqrt(double(v.size()));
}

}  // namespace

Benchmark parse_benchmark(std::string_view name) {
  for (const BenchmarkInfo& i : kBenchmarks)
    if (name == i.name) return i.benchmark;
  usage_fail("--benchmark '{}' is not one of {}", name, benchmark_names());
}

const char* benchmark_name(Benchmark b) {
  return info(b).name;
}

std::string benchmark_names() {
  std::string names;
  for (const BenchmarkInfo& i : kBenchmarks)
    names += (names.empty() ? "" : ", ") + std::string(i.name);
  return names;
}

std::vector<Example> load_benchmark(Benchmark b, const std::string& data,
                                    const std::string& labels) {
  if (!labels.empty() && b != Benchmark::piqa)
    usage_fail("--labels applies to piqa only ({} files carry their answers)", benchmark_name(b));
  return info(b).load(data, labels);
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
                                   const Tokenizer& tok, Scorer& scorer,
                                   const BenchmarkProtocol& protocol) {
  MTP_CHECK(!examples.empty(), "no examples to evaluate");
  if (protocol.prefix_token)
    MTP_CHECK(*protocol.prefix_token >= 0 && *protocol.prefix_token < tok.vocab_size(),
              "--prefix-token {} is not in the tokenizer's vocabulary (0..{})",
              *protocol.prefix_token, tok.vocab_size() - 1);
  const BenchmarkInfo& about = info(b);
  BenchmarkResult r;
  r.benchmark = b;
  r.protocol = protocol;
  std::vector<double> hit, hit_norm, nll;  // per example
  for (const Example& ex : examples) {
    const size_t n = ex.requests.size();
    std::vector<EncodedRequest> enc;
    for (const Request& q : ex.requests) {
      enc.push_back(encode_request(tok, q));
      if (protocol.prefix_token)
        enc.back().context.insert(enc.back().context.begin(), *protocol.prefix_token);
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
    if (about.last_word) {
      hit.push_back(o.scores[0].greedy);
      nll.push_back(-o.scores[0].loglikelihood);
    } else {
      hit.push_back(o.predicted == ex.gold);
      hit_norm.push_back(o.predicted_norm == ex.gold);
    }
    r.outcomes.push_back(std::move(o));
  }
  r.acc = mean(hit);
  r.acc_stderr = mean_stderr(hit);
  if (about.last_word) {
    r.perplexity = std::exp(mean(nll));
    r.perplexity_stderr = *r.perplexity * mean_stderr(nll);
  }
  if (about.acc_norm) {
    r.acc_norm = mean(hit_norm);
    r.acc_norm_stderr = mean_stderr(hit_norm);
  }
  return r;
}

nlohmann::json BenchmarkResult::to_json() const {
  json j = {{"benchmark", benchmark_name(benchmark)},
            {"examples", examples()},
            {"acc", acc},
            {"acc_stderr", acc_stderr}};
  if (acc_norm) j["acc_norm"] = *acc_norm, j["acc_norm_stderr"] = *acc_norm_stderr;
  if (perplexity) j["perplexity"] = *perplexity, j["perplexity_stderr"] = *perplexity_stderr;
  const bool last_word = info(benchmark).last_word;
  j["protocol"] = {
      {"prefix_token", protocol.prefix_token ? json(*protocol.prefix_token) : json(nullptr)},
      {"requests",
       "lm-eval: context's trailing spaces move to the continuation; the continuation is the "
       "whole text's tokens after the context's"},
      {"acc", last_word ? "every target token is the greedy choice"
                        : "argmax of the choices' summed log-likelihoods"},
      {"stderr", "sample standard deviation over sqrt(n)"}};
  if (acc_norm) j["protocol"]["acc_norm"] = "argmax of log-likelihood / characters of the choice";
  if (perplexity)
    j["protocol"]["perplexity"] =
        "exp of the mean per-example negative log-likelihood; stderr by the delta method";
  return j;
}

std::string benchmark_summary(const nlohmann::json& r) {
  const std::string name = r.at("benchmark").get<std::string>();
  std::string s = fmt::format("{}: acc {:.4f} ± {:.4f}", name, r.at("acc").get<double>(),
                              r.at("acc_stderr").get<double>());
  if (r.contains("acc_norm"))
    s += fmt::format("  acc_norm {:.4f} ± {:.4f}", r["acc_norm"].get<double>(),
                     r["acc_norm_stderr"].get<double>());
  if (r.contains("perplexity"))
    s += fmt::format("  perplexity {:.2f} ± {:.2f}", r["perplexity"].get<double>(),
                     r["perplexity_stderr"].get<double>());
  return s + fmt::format("  ({} {})", r.at("examples").get<long long>(),
                         info(parse_benchmark(name)).unit);
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
  const std::unique_ptr<Tokenizer> tok = checkpoint_tokenizer(ck, a.tokenizer);
  std::vector<Example> examples = load_benchmark(b, a.data, a.labels);
  if (a.limit > 0 && size_t(a.limit) < examples.size()) examples.resize(size_t(a.limit));
  const auto t0 = std::chrono::steady_clock::now();
  BenchmarkProtocol protocol;
  if (a.prefix_token >= 0)
    protocol.prefix_token = std::int32_t(std::min<long long>(a.prefix_token, INT32_MAX));
  const BenchmarkResult r = with_checkpoint_model(ck, [&](auto& model) {
    ModelScorer scorer(model);
    return evaluate_benchmark(b, examples, *tok, scorer, protocol);
  });
  if (!a.examples_out.empty()) {
    std::string lines;
    for (size_t i = 0; i < examples.size(); ++i) {
      const ExampleOutcome& o = r.outcomes[i];
      json e = {{"line", examples[i].line}, {"gold", examples[i].gold}, {"predicted", o.predicted}};
      if (r.acc_norm) e["predicted_norm"] = o.predicted_norm;
      json ll = json::array(), greedy = json::array();
      for (const ContinuationScore& s : o.scores) {
        ll.push_back(s.loglikelihood);
        greedy.push_back(s.greedy);
      }
      e["loglikelihoods"] = std::move(ll);
      e["greedy"] = std::move(greedy);
      lines += e.dump() + "\n";
    }
    write_file_atomic(a.examples_out, lines, WriteOptions::user_named());
  }
  json j = r.to_json();
  j["checkpoint"] = a.checkpoint;
  j["data"] = a.data;
  j["tokenizer"] = tok->describe();
  j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return j;
}

}  // namespace mtp::exp
