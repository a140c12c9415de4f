// The tokenizers (experiments/tokenizer.hpp): the GPT-NeoX BPE against the ids of an
// independent implementation (tests/tokenizer/neox_reference.json, from tokenizers.js;
// make_reference.sh regenerates it), the BPE algorithm on a hand-made vocabulary whose
// answers are worked out by hand, pieces cut for large corpora, every refusal, the
// token cache of corpora, the token-level text task, and `mtp-exp tokenize`.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "mtp/core/error.hpp"
#include "mtp/experiments/tasks.hpp"
#include "mtp/experiments/token_corpus.hpp"
#include "mtp/experiments/tokenizer.hpp"
#include "run_binary.hpp"
#include "temp_dir.hpp"

using mtp::exp::BpeTokenizer;
using mtp::exp::ByteTokenizer;
using mtp::exp::TokenCorpus;
using Ids = std::vector<std::int32_t>;

namespace {

const std::string kNeox = std::string(MTP_SHARED_DATA) + "/tokenizers/gpt-neox-20b_tokenizer.json";
const std::string kReference = std::string(MTP_TOKENIZER_DIR) + "/neox_reference.json";

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The GPT-NeoX tokenizer, loaded once (2.4 MB of JSON); skips when the shared data is
// not there.
const BpeTokenizer* neox() {
  static const std::unique_ptr<BpeTokenizer> tok =
      std::filesystem::exists(kNeox) ? std::make_unique<BpeTokenizer>(kNeox) : nullptr;
  return tok.get();
}
#define NEOX_OR_SKIP(name)           \
  const BpeTokenizer* name = neox(); \
  if (name == nullptr) GTEST_SKIP() << kNeox << " is not there (../shared/data)";

TEST(NeoxTokenizer, EqualsTheReferenceIdsOnEveryText) {
  NEOX_OR_SKIP(tok);
  const auto ref = nlohmann::json::parse(slurp(kReference));
  EXPECT_EQ(tok->sha256(), ref.at("tokenizer_sha256").get<std::string>())
      << "the reference was made with another tokenizer file";
  EXPECT_EQ(tok->vocab_size(), 50277);
  ASSERT_GE(ref.at("cases").size(), 20u);
  for (const auto& c : ref.at("cases")) {
    const auto text = c.at("text").get<std::string>();
    const auto want = c.at("ids").get<Ids>();
    const Ids got = tok->encode(text);
    EXPECT_EQ(got, want) << c.at("name");
    // decode(encode(x)) = x up to NFC: the reference's decoding, which equals the text
    // except where NFC composes.
    EXPECT_EQ(tok->decode(got), c.at("decoded").get<std::string>()) << c.at("name");
  }
}

TEST(NeoxTokenizer, RoundTripsAndComposes) {
  NEOX_OR_SKIP(tok);
  for (const std::string s : {"", "x", "  ", "\n\n\n", "caf\xc3\xa9 \xf0\x9f\xa4\x97 <|endoftext|>",
                              "tab\there   and\r\nthere"})
    EXPECT_EQ(tok->decode(tok->encode(s)), s);
  // e + combining acute (NFD) encodes as é (NFC).
  EXPECT_EQ(tok->encode("cafe\xcc\x81"), tok->encode("caf\xc3\xa9"));
  EXPECT_EQ(tok->decode(tok->encode("cafe\xcc\x81")), "caf\xc3\xa9");
  // Special-token text is the special token; 23 spaces is an added token of its own.
  EXPECT_EQ(tok->encode("<|endoftext|>"), Ids{0});
  EXPECT_EQ(tok->encode(std::string(24, ' ')), Ids{50254});
}

TEST(NeoxTokenizer, LargeTextInPiecesEqualsTheWhole) {
  NEOX_OR_SKIP(tok);
  const std::string corpus = slurp(std::string(MTP_SHARED_DATA) + "/text/tinyshakespeare.txt");
  const std::string text = corpus.substr(0, 200000);
  const Ids whole = tok->encode(text);
  const auto cuts = tok->cut_points(text, 1000);
  EXPECT_GT(cuts.size(), 150u);
  EXPECT_EQ(tok->encode_pieces(text, 2, 1000), whole);
  // Every cut, on every reference text: the pieces' ids are the whole's.
  const auto ref = nlohmann::json::parse(slurp(kReference));
  for (const auto& c : ref.at("cases")) {
    const auto s = c.at("text").get<std::string>();
    Ids pieces;
    size_t from = 0;
    for (const size_t p : tok->cut_points(s, 1)) {
      const Ids part = tok->encode(s.substr(from, p - from));
      pieces.insert(pieces.end(), part.begin(), part.end());
      from = p;
    }
    const Ids last = tok->encode(s.substr(from));
    pieces.insert(pieces.end(), last.begin(), last.end());
    EXPECT_EQ(pieces, tok->encode(s)) << c.at("name");
  }
}

TEST(NeoxTokenizer, RefusesInvalidUtf8AndUnknownIds) {
  NEOX_OR_SKIP(tok);
  for (const auto& [bad, at] : std::vector<std::pair<std::string, std::string>>{
           {"ab\xff", "byte 2"},
           {"\xc0\xaf", "byte 0"},          // overlong '/'
           {"x\xed\xa0\x80", "byte 1"},     // a surrogate
           {"\xf4\x90\x80\x80", "byte 0"},  // past U+10FFFF
           {"caf\xc3", "byte 3"}}) {        // cut short
    try {
      tok->encode(bad);
      ADD_FAILURE() << "accepted invalid UTF-8";
    } catch (const mtp::Error& e) {
      EXPECT_NE(std::string(e.what()).find("not valid UTF-8 at " + at), std::string::npos)
          << e.what();
    }
  }
  EXPECT_THROW(tok->token_bytes(50277), mtp::Error);
  EXPECT_THROW(tok->token_bytes(-1), mtp::Error);
}

// ---- A hand-made vocabulary -----------------------------------------------------------

// GPT-2's byte-to-unicode map, written out again here from its definition.
std::string byte_symbol(int b) {
  int cp = b;
  if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
    int n = 0;
    for (int x = 0; x < b; ++x)
      if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else {
    s += char(0xC0 | cp >> 6);
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

// Bytes are ids 0..255; then ab=256, bc=257, abc=258, "Ġa"=259, aa=260, aaaa=261, and
// "abcd"=262, which no merge makes.
nlohmann::json tiny_tokenizer() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_symbol(b)] = b;
  const std::string g = byte_symbol(' ');
  vocab["ab"] = 256, vocab["bc"] = 257, vocab["abc"] = 258, vocab[g + "a"] = 259;
  vocab["aa"] = 260, vocab["aaaa"] = 261, vocab["abcd"] = 262;
  return {{"version", "1.0"},
          {"added_tokens",
           nlohmann::json::array(
               {{{"id", 263}, {"content", "<eos>"}, {"special", true}, {"normalized", false}}})},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"vocab", vocab},
            {"merges", {"a b", "b c", "ab c", g + " a", "a a", "aa aa"}}}}};
}

std::string write(const mtp::test::TempDir& dir, const nlohmann::json& j) {
  return dir.file("tokenizer.json", j.dump()).string();
}

TEST(BpeTokenizer, MergesLowestRankFirstLeftmostAmongEquals) {
  mtp::test::TempDir dir;
  const BpeTokenizer tok(write(dir, tiny_tokenizer()));
  EXPECT_EQ(tok.vocab_size(), 264);
  EXPECT_EQ(tok.encode("abc"), (Ids{258}));                  // ab (rank 0), then ab+c
  EXPECT_EQ(tok.encode("abbc"), (Ids{256, 257}));            // ab, then bc
  EXPECT_EQ(tok.encode("bcab"), (Ids{257, 256}));            // both, independently
  EXPECT_EQ(tok.encode("aaa"), (Ids{260, 'a'}));             // leftmost a+a first
  EXPECT_EQ(tok.encode("aaaaa"), (Ids{261, 'a'}));           // aa aa, then aa+aa
  EXPECT_EQ(tok.encode("abcd"), (Ids{258, 'd'}));            // no merge makes abcd
  EXPECT_EQ(tok.encode(" a a"), (Ids{259, 259}));            // words: " a", " a"
  EXPECT_EQ(tok.encode("ab<eos>ab"), (Ids{256, 263, 256}));  // the added token
  EXPECT_EQ(tok.decode(tok.encode("xabc<eos> aaaa")), "xabc<eos> aaaa");
  // Words are split before merging: "ab ab" is two words of two tokens.
  EXPECT_EQ(tok.encode("ab ab"), (Ids{256, ' ', 256}));
}

TEST(BpeTokenizer, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  mtp::test::TempDir dir;
  nlohmann::json j = tiny_tokenizer();
  j["model"]["ignore_merges"] = true;
  const BpeTokenizer tok(write(dir, j));
  EXPECT_EQ(tok.encode("abcd"), (Ids{262}));
  EXPECT_EQ(tok.encode("abcde"), (Ids{258, 'd', 'e'}));
}

TEST(BpeTokenizer, PrefixSpaceAndNoRegex) {
  mtp::test::TempDir dir;
  nlohmann::json j = tiny_tokenizer();
  j["pre_tokenizer"]["add_prefix_space"] = true;
  EXPECT_EQ(BpeTokenizer(write(dir, j)).encode("a"), (Ids{259}));
  EXPECT_TRUE(BpeTokenizer(write(dir, j)).cut_points("ab ab ab ab", 1).empty());
  j["pre_tokenizer"]["add_prefix_space"] = false;
  j["pre_tokenizer"]["use_regex"] = false;
  // One word: the space merges with the a after it across what GPT-2 would split, so
  // such a tokenizer is never cut into pieces.
  const BpeTokenizer whole(write(dir, j));
  EXPECT_EQ(whole.encode("b a"), (Ids{'b', 259}));
  EXPECT_TRUE(whole.cut_points("ab ab ab ab", 1).empty());
  EXPECT_EQ(whole.encode_pieces("ab ab ab ab", 2, 1), whole.encode("ab ab ab ab"));
}

TEST(BpeTokenizer, RefusesWhatItCannotReproduce) {
  mtp::test::TempDir dir;
  const std::vector<std::pair<std::function<void(nlohmann::json&)>, std::string>> cases = {
      {[](auto& j) { j["model"]["type"] = "WordPiece"; }, "reads BPE models only"},
      {[](auto& j) { j["model"]["dropout"] = 0.1; }, "dropout"},
      {[](auto& j) { j["model"]["byte_fallback"] = true; }, "byte_fallback"},
      {[](auto& j) { j["model"]["continuing_subword_prefix"] = "##"; }, "continuing_subword"},
      {[](auto& j) { j["model"].erase("merges"); }, "merges"},
      {[](auto& j) { j["model"]["merges"].push_back("a zz"); }, "merge 6"},
      {[](auto& j) { j["model"]["merges"].push_back("a b c"); }, "is not two tokens"},
      {[](auto& j) { j["model"]["vocab"].erase("d"); }, "byte 0x64 has no token"},
      {[](auto& j) {
         j["normalizer"] = {{"type", "Lowercase"}};
       },
       "Lowercase"},
      {[](auto& j) {
         j["pre_tokenizer"] = {{"type", "Whitespace"}};
       },
       "ByteLevel only"},
      {[](auto& j) {
         j["decoder"] = {{"type", "WordPiece"}};
       },
       "decoder"},
      {[](auto& j) {
         j["post_processor"] = {{"type", "TemplateProcessing"}};
       },
       "adds tokens"},
      {[](auto& j) { j["added_tokens"][0]["lstrip"] = true; }, "lstrip is true"},
      {[](auto& j) { j["added_tokens"][0]["id"] = -3; }, "out of range"},
      {[](auto& j) { j = nlohmann::json::array(); }, "not a tokenizer.json"},
      {[](auto& j) { j["model"]["merges"].push_back("a b"); }, "repeats an earlier one"},
      {[](auto& j) { j["added_tokens"][0]["id"] = 2000000000; }, "out of range"},
      {[](auto& j) { j["pre_tokenizer"] = "ByteLevel"; }, "not a tokenizer.json"},
      {[](auto& j) { j["added_tokens"][0]["content"] = 5; }, "added_tokens[0]"},
  };
  for (const auto& [edit, message] : cases) {
    nlohmann::json j = tiny_tokenizer();
    edit(j);
    try {
      BpeTokenizer tok(write(dir, j));
      ADD_FAILURE() << "accepted: " << message;
    } catch (const mtp::Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(BpeTokenizer(dir.file("broken.json", "{\"model\": ").string()), mtp::Error);
  EXPECT_THROW(BpeTokenizer((dir.path() / "missing.json").string()), mtp::Error);
}

// ---- Token corpora ----------------------------------------------------------------------

TEST(TokenCorpusTest, BuildsTheCacheOnceAndMapsItAfterwards) {
  mtp::test::TempDir dir;
  const BpeTokenizer tok(write(dir, tiny_tokenizer()));
  const std::string text = "abc abbc aaaa<eos>bcab\nabc";
  const auto corpus = dir.file("corpus.txt", text).string();
  const std::string cache = (dir.path() / "cache").string();
  const Ids want = tok.encode(text);
  {
    const TokenCorpus c(corpus, tok, cache);
    EXPECT_TRUE(c.built_cache());
    ASSERT_EQ(c.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(c[i], want[i]);
    EXPECT_EQ(c.decoded_bytes(0, c.size()), text.size());
    EXPECT_EQ(c.text_bytes(), text.size());
  }
  const TokenCorpus again(corpus, tok, cache);
  EXPECT_FALSE(again.built_cache());
  EXPECT_EQ(again.size(), want.size());
  // The cache is a safetensors file: U16 ids after an 8-byte length and a JSON header.
  const std::string bytes = slurp(again.cache_path());
  std::uint64_t hlen = 0;
  std::memcpy(&hlen, bytes.data(), 8);
  const auto header = nlohmann::json::parse(bytes.substr(8, hlen));
  EXPECT_EQ(header["tokens"]["dtype"], "U16");
  EXPECT_EQ(header["__metadata__"]["tokenizer_sha256"], tok.sha256());
  EXPECT_EQ(bytes.size(), 8 + hlen + 2 * want.size());
}

TEST(TokenCorpusTest, RebuildsACacheThatDoesNotMatch) {
  mtp::test::TempDir dir;
  const BpeTokenizer tok(write(dir, tiny_tokenizer()));
  const auto corpus = dir.file("corpus.txt", "abc abc abc").string();
  const std::string cache = (dir.path() / "cache").string();
  const std::string path = TokenCorpus(corpus, tok, cache).cache_path();
  const std::string good = slurp(path);
  // An id past the vocabulary (the last token's low byte), a truncated file, garbage.
  std::string bad_id = good;
  bad_id[bad_id.size() - 1] = char(0x7f);
  for (const std::string& broken : {bad_id, good.substr(0, good.size() - 1), std::string("xx")}) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << broken;
    const TokenCorpus c(corpus, tok, cache);
    EXPECT_TRUE(c.built_cache());
    EXPECT_EQ(slurp(path), good);
  }
  // Another corpus or another tokenizer is another cache file.
  const auto other = dir.file("other.txt", "abc abc abd").string();
  EXPECT_NE(TokenCorpus(other, tok, cache).cache_path(), path);
}

TEST(TokenCorpusTest, NamesTheCorpusInItsErrors) {
  mtp::test::TempDir dir;
  const BpeTokenizer tok(write(dir, tiny_tokenizer()));
  const auto corpus = dir.file("corpus.txt", "abc\xff").string();
  try {
    TokenCorpus c(corpus, tok, (dir.path() / "cache").string());
    ADD_FAILURE() << "tokenized invalid UTF-8";
  } catch (const mtp::Error& e) {
    EXPECT_NE(
        std::string(e.what()).find("--data " + corpus + ": the text is not valid UTF-8 at byte 3"),
        std::string::npos)
        << e.what();
  }
  EXPECT_THROW(TokenCorpus((dir.path() / "missing").string(), tok, (dir.path() / "c").string()),
               mtp::Error);
}

TEST(TextTaskTokens, WindowsOfIdsAndBitsPerByteOfTheirText) {
  NEOX_OR_SKIP(tok);
  mtp::test::TempDir dir;
  const std::string corpus_path = std::string(MTP_SHARED_DATA) + "/text/tinyshakespeare.txt";
  const mtp::exp::TextTask task(corpus_path, kNeox, (dir.path() / "cache").string(), 16, 3, 2, 4);
  EXPECT_EQ(task.vocab(), 50277);
  const Ids all = tok->encode_large(slurp(corpus_path), 2);
  // Every window is a slice of the corpus's ids, targets shifted by one.
  const mtp::exp::Batch b = task.train_batch(5, 4);
  for (mtp::index_t j = 0; j < 4; ++j) {
    std::vector<std::int32_t> col;
    for (mtp::index_t t = 0; t < 16; ++t) col.push_back(b.tokens[t * 4 + j]);
    const auto at = std::search(all.begin(), all.end(), col.begin(), col.end());
    ASSERT_NE(at, all.end());
    EXPECT_EQ(b.targets[15 * 4 + j], *(at + 16));
  }
  // Validation starts at 90% of the ids; bytes per label is its targets' text.
  const size_t split = all.size() * 9 / 10;
  const mtp::exp::Batch& v = task.validation().front();
  EXPECT_EQ(v.tokens[0], all[split]);
  double bytes = 0, n = 0;
  for (const mtp::exp::Batch& vb : task.validation())
    for (const std::int32_t t : vb.targets) bytes += double(tok->token_bytes(t).size()), ++n;
  EXPECT_DOUBLE_EQ(task.bytes_per_label(true), bytes / n);
  EXPECT_GT(task.bytes_per_label(false), 3.0);  // English: ~3.5 bytes per GPT-NeoX token
  EXPECT_EQ(task.data_files().size(), 2u);
}

// ---- mtp-exp tokenize ---------------------------------------------------------------------

TEST(TokenizeCli, PrintsTheIdsAndDecodesThemBack) {
  NEOX_OR_SKIP(tok);
  mtp::test::TempDir dir;
  const std::string text = "Hello  world\n\xf0\x9f\xa4\x97 <|endoftext|>it's";
  const auto in = dir.file("in.txt", text).string();
  const auto r = mtp::test::run_mtp_exp_captured({"tokenize", "--tokenizer", kNeox, "--input", in},
                                                 dir.path());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).get<Ids>(), tok->encode(text));
  const auto ids = dir.file("ids.json", r.out).string();
  const auto back = mtp::test::run_mtp_exp_captured(
      {"tokenize", "--tokenizer", kNeox, "--input", ids, "--decode"}, dir.path());
  ASSERT_EQ(back.status, 0) << back.err;
  EXPECT_EQ(back.out, text);
  // Many strings in one call.
  const auto many = dir.file("many.json", R"(["a b", "", "caf\u00e9"])").string();
  const auto arrays = mtp::test::run_mtp_exp_captured(
      {"tokenize", "--tokenizer", kNeox, "--input", many, "--strings"}, dir.path());
  ASSERT_EQ(arrays.status, 0) << arrays.err;
  EXPECT_EQ(nlohmann::json::parse(arrays.out),
            nlohmann::json({tok->encode("a b"), Ids{}, tok->encode("caf\xc3\xa9")}));
  // Bytes without --tokenizer.
  const auto bytes = mtp::test::run_mtp_exp_captured({"tokenize", "--input", in}, dir.path());
  EXPECT_EQ(nlohmann::json::parse(bytes.out).size(), text.size());
}

TEST(TokenizeCli, RefusalsAreNamedErrors) {
  NEOX_OR_SKIP(tok);
  mtp::test::TempDir dir;
  const auto bad = dir.file("bad.txt", "ok\xfe").string();
  const auto ids = dir.file("ids.json", "[1, 2, 99999]").string();
  const auto not_ids = dir.file("x.json", "{\"a\": 1}").string();
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"tokenize", "--tokenizer", kNeox, "--input", bad}, "not valid UTF-8 at byte 2"},
      {{"tokenize", "--tokenizer", kNeox, "--input", ids, "--decode"}, "token id 99999"},
      {{"tokenize", "--tokenizer", kNeox, "--input", not_ids, "--decode"}, not_ids},
      {{"tokenize", "--tokenizer", bad, "--input", bad}, bad},
      {{"tokenize", "--input", (dir.path() / "none").string()}, "--input"},
      {{"tokenize", "--tokenizer", kNeox}, "--input"},
      {{"tokenize", "--tokenizer", kNeox, "--input", ids, "--strings"}, ids},
      {{"tokenize", "--input", ids, "--strings", "--decode"}, "--strings"},
  };
  for (const auto& [args, message] : cases) {
    const auto r = mtp::test::run_mtp_exp_captured(args, dir.path());
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

// A token-level checkpoint names its tokenizer and corpus by the paths it was trained
// with, and records their hashes: eval and generate from another folder say the path is
// not there; a file changed since training is refused (its numbers would not be the
// model's) unless given deliberately; a checkpoint whose embedding does not fit the
// vocabulary says so.
TEST(TokenCheckpointCli, RecordedFilesMustBeThereAndUnchanged) {
  mtp::test::TempDir dir;
  const auto run = [&](const std::vector<std::string>& args, const std::filesystem::path& cwd) {
    return mtp::test::run_mtp_exp_captured(args, dir.path(), cwd);
  };
  const std::filesystem::path work = dir.path() / "work", elsewhere = dir.path() / "elsewhere";
  std::filesystem::create_directories(work);
  std::filesystem::create_directories(elsewhere);
  std::ofstream(work / "tok.json") << tiny_tokenizer().dump();
  std::string text;
  for (int i = 0; i < 300; ++i) text += "abc aaaa bc ";
  std::ofstream(work / "corpus.txt") << text;
  const auto trained =
      run({"--task",        "text",  "--data",    "corpus.txt", "--tokenizer", "tok.json",
           "--token-cache", "cache", "--steps",   "2",          "--width",     "8",
           "--layers",      "1",     "--batch",   "2",          "--seq-len",   "8",
           "--val-batches", "1",     "--threads", "1",          "--out",       "run"},
          work);
  ASSERT_EQ(trained.status, 0) << trained.err;
  const std::string ck = (work / "run" / "model.safetensors").string();
  // From where it was trained: fine.
  EXPECT_EQ(run({"eval", "--checkpoint", ck, "--threads", "1"}, work).status, 0);
  // From elsewhere the relative paths are not there, and the error says what to pass.
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"eval", "--checkpoint", ck},
           {"generate", "--checkpoint", ck, "--prompt", "ab", "--tokens", "2"}}) {
    const auto r = run(args, elsewhere);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find("records --tokenizer tok.json, which is not there from here (a path "
                         "relative to the folder training ran in?)"),
              std::string::npos)
        << r.err;
  }
  // A changed tokenizer (same vocabulary, merges reordered) is refused; given on purpose,
  // it is used.
  nlohmann::json changed = tiny_tokenizer();
  std::swap(changed["model"]["merges"][0], changed["model"]["merges"][1]);
  std::ofstream(work / "tok.json", std::ios::trunc) << changed.dump();
  std::ofstream(work / "bench.jsonl") << R"({"text": "abc aaaa bc abc"})"
                                      << "\n";
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"eval", "--checkpoint", ck},
           {"eval", "--checkpoint", ck, "--benchmark", "lambada-openai", "--data", "bench.jsonl"},
           {"generate", "--checkpoint", ck, "--prompt", "ab", "--tokens", "2"}}) {
    const auto r = run(args, work);
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_NE(r.err.find("--tokenizer tok.json of"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("changed since training"), std::string::npos) << r.err;
  }
  // Given on purpose, under another path or the recorded one, it is used.
  std::filesystem::copy_file(work / "tok.json", work / "mine.json");
  EXPECT_EQ(run({"eval", "--checkpoint", ck, "--tokenizer", "mine.json"}, work).status, 0);
  EXPECT_EQ(run({"eval", "--checkpoint", ck, "--tokenizer", "tok.json"}, work).status, 0);
  EXPECT_EQ(run({"generate", "--checkpoint", ck, "--tokenizer", "tok.json", "--prompt", "ab",
                 "--tokens", "2"},
                work)
                .status,
            0);
  // A changed corpus, likewise.
  std::ofstream(work / "tok.json", std::ios::trunc) << tiny_tokenizer().dump();
  std::ofstream(work / "corpus.txt", std::ios::app) << "more";
  const auto corpus = run({"eval", "--checkpoint", ck}, work);
  EXPECT_NE(corpus.err.find("--data corpus.txt of"), std::string::npos) << corpus.err;
  EXPECT_EQ(run({"eval", "--checkpoint", ck, "--data", "corpus.txt"}, work).status, 0);
  // A tokenizer of another vocabulary does not fit the model's 264 rows: said as such.
  nlohmann::json bigger = tiny_tokenizer();
  bigger["model"]["vocab"]["bb"] = 264;
  std::ofstream(work / "bigger.json") << bigger.dump();
  const auto misfit = run({"eval", "--checkpoint", ck, "--tokenizer", "bigger.json", "--benchmark",
                           "lambada-openai", "--data", "bench.jsonl"},
                          work);
  EXPECT_EQ(misfit.status, 1);
  EXPECT_NE(misfit.err.find("its embedding has 264 rows, the tokenizer bigger.json has 265"),
            std::string::npos)
      << misfit.err;
  // A byte model given a tokenizer: told it has none.
  const auto bytes =
      run({"--task",    "text", "--data",  "corpus.txt", "--steps",   "1", "--width",       "8",
           "--layers",  "1",    "--batch", "2",          "--seq-len", "8", "--val-batches", "1",
           "--threads", "1",    "--out",   "bytes"},
          work);
  ASSERT_EQ(bytes.status, 0) << bytes.err;
  const auto byte_misfit =
      run({"eval", "--checkpoint", (work / "bytes" / "model.safetensors").string(), "--tokenizer",
           "tok.json", "--benchmark", "lambada-openai", "--data", "bench.jsonl"},
          work);
  EXPECT_NE(byte_misfit.err.find("it was trained on bytes (256 rows)"), std::string::npos)
      << byte_misfit.err;
}

TEST(ByteTokenizerTest, IsTheBytes) {
  const ByteTokenizer tok;
  EXPECT_EQ(tok.encode("a\xff "), (Ids{'a', 255, ' '}));
  EXPECT_EQ(tok.decode(Ids{'h', 'i', 0xc3, 0xa9}), "hi\xc3\xa9");
  EXPECT_EQ(tok.vocab_size(), 256);
  EXPECT_THROW(tok.token_bytes(256), mtp::Error);
}

}  // namespace
