// The tokenizers (experiments/tokenizer.hpp): the GPT-NeoX BPE against the ids of an
// independent implementation (tests/tokenizer/neox_reference.json, from tokenizers.js;
// make_reference.sh regenerates it), the BPE algorithm on a hand-made vocabulary whose
// answers are worked out by hand, pieces cut for large corpora, and every refusal.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "mtp/core/error.hpp"
#include "mtp/experiments/tokenizer.hpp"
#include "temp_dir.hpp"

using mtp::exp::BpeTokenizer;
using mtp::exp::ByteTokenizer;
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
  // One word: the space merges with the a after it across what GPT-2 would split.
  EXPECT_EQ(BpeTokenizer(write(dir, j)).encode("b a"), (Ids{'b', 259}));
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

TEST(ByteTokenizerTest, IsTheBytes) {
  const ByteTokenizer tok;
  EXPECT_EQ(tok.encode("a\xff "), (Ids{'a', 255, ' '}));
  EXPECT_EQ(tok.decode(Ids{'h', 'i', 0xc3, 0xa9}), "hi\xc3\xa9");
  EXPECT_EQ(tok.vocab_size(), 256);
  EXPECT_THROW(tok.token_bytes(256), mtp::Error);
}

}  // namespace
