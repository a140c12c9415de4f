#include "mtp/experiments/tokenizer.hpp"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utypes.h>

#include <omp.h>

#include <algorithm>
#include <exception>
#include <queue>

#include "mtp/core/error.hpp"
#include "mtp/core/file_io.hpp"
#include "mtp/core/sha256.hpp"
#include "mtp/experiments/json_file.hpp"

namespace mtp::exp {

std::string Tokenizer::decode(std::span<const std::int32_t> ids) const {
  std::string out;
  for (const std::int32_t id : ids) out += token_bytes(id);
  return out;
}

// ---- Bytes --------------------------------------------------------------------------

ByteTokenizer::ByteTokenizer() {
  for (int b = 0; b < 256; ++b) bytes_[b] = char(b);
}

std::vector<std::int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<std::int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = std::uint8_t(text[i]);
  return ids;
}

std::string_view ByteTokenizer::token_bytes(std::int32_t id) const {
  MTP_CHECK(id >= 0 && id < 256, "token id {} is not a byte (the vocabulary is 0..255)", id);
  return {&bytes_[id], 1};
}

// ---- Unicode ------------------------------------------------------------------------

namespace {

// The code point at s[i] and its length in bytes, or length 0 when s[i] does not start
// well-formed UTF-8 (overlong forms, surrogates and values past U+10FFFF are not).
int utf8_at(std::string_view s, size_t i, char32_t& cp) {
  const auto byte = [&](size_t k) { return std::uint8_t(s[k]); };
  const std::uint8_t b0 = byte(i);
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  int len = 0;
  char32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + size_t(len) > s.size()) return 0;
  for (int k = 1; k < len; ++k) {
    const std::uint8_t b = byte(i + size_t(k));
    if ((b & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

void check_utf8(std::string_view s) {
  char32_t cp = 0;
  for (size_t i = 0; i < s.size();) {
    if (std::uint8_t(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const int len = utf8_at(s, i, cp);
    MTP_CHECK(len > 0, "the text is not valid UTF-8 at byte {} (0x{:02x})", i, std::uint8_t(s[i]));
    i += size_t(len);
  }
}

// The pre-tokenizer's character classes: \p{L}, \p{N}, \s (White_Space), the rest.
enum class CharClass : std::uint8_t { letter, number, space, other };

CharClass char_class(char32_t c) {
  if (c < 0x80) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return CharClass::letter;
    if (c >= '0' && c <= '9') return CharClass::number;
    if (c == ' ' || (c >= '\t' && c <= '\r')) return CharClass::space;
    return CharClass::other;
  }
  if (u_isUWhiteSpace(UChar32(c))) return CharClass::space;
  const std::uint32_t mask = U_GET_GC_MASK(UChar32(c));
  if (mask & U_GC_L_MASK) return CharClass::letter;
  if (mask & U_GC_N_MASK) return CharClass::number;
  return CharClass::other;
}

bool ascii_non_space(char ch) {
  const auto b = std::uint8_t(ch);
  return b < 0x80 && char_class(b) != CharClass::space;
}

// Calls word(piece) for each match of GPT-2's pattern in `s` (valid UTF-8), in order;
// the matches tile `s`.
template <class F>
void split_gpt2(std::string_view s, F&& word) {
  char32_t cp = 0, next = 0;
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const int len0 = utf8_at(s, i, cp);
    const CharClass c0 = char_class(cp);
    // 's 't 're 've 'm 'll 'd
    if (cp == '\'' && i + 1 < n) {
      const char a = s[i + 1], b = i + 2 < n ? s[i + 2] : '\0';
      size_t len = 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd')
        len = 2;
      else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        len = 3;
      if (len) {
        word(s.substr(i, len));
        i += len;
        continue;
      }
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one
    // class other than space.
    size_t j = i;
    CharClass run = c0;
    if (cp == ' ' && i + 1 < n && utf8_at(s, i + 1, next) > 0 &&
        char_class(next) != CharClass::space) {
      run = char_class(next);
      j = i + 1;
    }
    if (run != CharClass::space) {
      while (j < n) {
        const int len = utf8_at(s, j, next);
        if (char_class(next) != run) break;
        j += size_t(len);
      }
      word(s.substr(i, j - i));
      i = j;
      continue;
    }
    // `\s+(?!\S)|\s+`: a run of spaces to its end or, before a non-space, all of it but
    // its last character (which then starts the next match), unless that leaves nothing.
    size_t last = i;
    j = i + size_t(len0);
    while (j < n) {
      const int len = utf8_at(s, j, next);
      if (char_class(next) != CharClass::space) break;
      last = j;
      j += size_t(len);
    }
    if (j < n && last > i) j = last;
    word(s.substr(i, j - i));
    i = j;
  }
}

const UNormalizer2* icu_normalizer(const std::string& name) {
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* n = nullptr;
  if (name == "NFC") n = unorm2_getNFCInstance(&err);
  if (name == "NFD") n = unorm2_getNFDInstance(&err);
  if (name == "NFKC") n = unorm2_getNFKCInstance(&err);
  if (name == "NFKD") n = unorm2_getNFKDInstance(&err);
  MTP_CHECK(n != nullptr && U_SUCCESS(err), "ICU has no {} normalizer ({})", name,
            u_errorName(err));
  return n;
}

// `s` (valid UTF-8) in the normal form, into `out`; false (and `out` untouched) when `s`
// is in it already, as ASCII always is.
bool normalize(const UNormalizer2* norm, std::string_view s, std::string& out) {
  if (std::all_of(s.begin(), s.end(), [](char ch) { return std::uint8_t(ch) < 0x80; }))
    return false;
  auto check = [](UErrorCode err) {
    MTP_CHECK(U_SUCCESS(err) || err == U_BUFFER_OVERFLOW_ERROR, "Unicode normalization failed ({})",
              u_errorName(err));
  };
  // UTF-8 → UTF-16, as ICU's normalizers take it.
  UErrorCode err = U_ZERO_ERROR;
  int32_t units = 0;
  MTP_CHECK(s.size() < size_t(INT32_MAX / 2), "a piece of {} bytes is too long to normalize",
            s.size());
  u_strFromUTF8(nullptr, 0, &units, s.data(), int32_t(s.size()), &err);
  check(err);
  std::u16string src(size_t(units), u'\0');
  err = U_ZERO_ERROR;
  u_strFromUTF8(reinterpret_cast<UChar*>(src.data()), units, nullptr, s.data(), int32_t(s.size()),
                &err);
  check(err);
  err = U_ZERO_ERROR;
  const auto* usrc = reinterpret_cast<const UChar*>(src.data());
  if (unorm2_spanQuickCheckYes(norm, usrc, units, &err) == units && U_SUCCESS(err)) return false;
  err = U_ZERO_ERROR;
  const int32_t need = unorm2_normalize(norm, usrc, units, nullptr, 0, &err);
  check(err);
  std::u16string dst(size_t(need), u'\0');
  err = U_ZERO_ERROR;
  unorm2_normalize(norm, usrc, units, reinterpret_cast<UChar*>(dst.data()), need, &err);
  check(err);
  int32_t bytes = 0;
  err = U_ZERO_ERROR;
  const auto* udst = reinterpret_cast<const UChar*>(dst.data());
  u_strToUTF8(nullptr, 0, &bytes, udst, need, &err);
  check(err);
  out.assign(size_t(bytes), '\0');
  err = U_ZERO_ERROR;
  u_strToUTF8(out.data(), bytes, nullptr, udst, need, &err);
  check(err);
  return true;
}

// GPT-2's map from bytes to printable code points: the printable Latin-1 bytes map to
// themselves, the others to U+0100 onwards in byte order.
std::array<char32_t, 256> byte_to_unicode() {
  std::array<char32_t, 256> map{};
  char32_t shifted = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    map[b] = printable ? char32_t(b) : shifted++;
  }
  return map;
}

std::string utf8_of(char32_t c) {
  std::string s;
  if (c < 0x80) {
    s += char(c);
  } else if (c < 0x800) {
    s += char(0xC0 | c >> 6), s += char(0x80 | (c & 0x3F));
  } else {
    s += char(0xE0 | c >> 12), s += char(0x80 | (c >> 6 & 0x3F)), s += char(0x80 | (c & 0x3F));
  }
  return s;
}

// A field of the model that must be absent or null, or one of the values mtp reproduces.
void require_field(const nlohmann::json& j, std::string_view key,
                   const std::vector<nlohmann::json>& allowed, const std::string& where,
                   const std::string& why) {
  if (!j.contains(key) || j.at(key).is_null()) return;
  const nlohmann::json& v = j.at(key);
  if (std::find(allowed.begin(), allowed.end(), v) != allowed.end()) return;
  fail("{}: model.{} is {}, which mtp's tokenizer does not reproduce ({})", where, key,
       json_excerpt(v), why);
}

bool bool_field(const nlohmann::json& j, std::string_view key, bool fallback,
                const std::string& where) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  return json_to<bool>(j.at(key), where + ": " + std::string(key));
}

// The pieces of a Sequence (or the one component) of a normalizer, pre-tokenizer or
// decoder.
std::vector<nlohmann::json> components(const nlohmann::json& j, std::string_view list) {
  if (j.is_null()) return {};
  if (j.contains("type") && j.at("type") == "Sequence" && j.contains(list))
    return j.at(list).get<std::vector<nlohmann::json>>();
  return {j};
}

}  // namespace

// ---- BPE: loading -------------------------------------------------------------------

void BpeTokenizer::Trie::add(std::string_view s, std::int32_t id) {
  std::int32_t node = 0;
  for (const char ch : s) {
    auto& children = nodes[size_t(node)].children;
    auto it = std::find_if(children.begin(), children.end(),
                           [&](const auto& c) { return c.first == std::uint8_t(ch); });
    if (it == children.end()) {
      nodes.push_back(Node{});
      // `children` may have moved with the push.
      nodes[size_t(node)].children.emplace_back(std::uint8_t(ch), std::int32_t(nodes.size() - 1));
      node = std::int32_t(nodes.size() - 1);
    } else {
      node = it->second;
    }
  }
  nodes[size_t(node)].token = id;
}

std::pair<std::int32_t, size_t> BpeTokenizer::Trie::longest(std::string_view text,
                                                            size_t pos) const {
  std::pair<std::int32_t, size_t> best{-1, 0};
  std::int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto& children = nodes[size_t(node)].children;
    auto it = std::find_if(children.begin(), children.end(),
                           [&](const auto& c) { return c.first == std::uint8_t(text[i]); });
    if (it == children.end()) break;
    node = it->second;
    if (nodes[size_t(node)].token >= 0) best = {nodes[size_t(node)].token, i + 1 - pos};
  }
  return best;
}

BpeTokenizer::BpeTokenizer(const std::string& path) : path_(path) {
  try {
    load(path);
  } catch (const nlohmann::json::exception& e) {  // a field of the wrong JSON type
    fail("{}: not a tokenizer.json this tokenizer reads ({})", path, json_error_text(e));
  }
}

void BpeTokenizer::load(const std::string& path) {
  const std::vector<std::uint8_t> raw = read_file_bytes(path, "--tokenizer", 1u << 30, false);
  sha256_ = sha256_hex(raw.data(), raw.size());
  file_bytes_ = raw.size();
  const nlohmann::json j =
      parse_json(std::string_view(reinterpret_cast<const char*>(raw.data()), raw.size()), path);
  MTP_CHECK(j.is_object(), "{}: not a tokenizer.json (expected an object)", path);
  const nlohmann::json& model = json_member(j, "model", path);
  const std::string type =
      model.contains("type") ? json_field<std::string>(model, "type", path) : std::string("BPE");
  MTP_CHECK(type == "BPE", "{}: model.type is \"{}\"; mtp's tokenizer reads BPE models only", path,
            type);
  require_field(model, "dropout", {0, 0.0}, path, "BPE dropout is for training a tokenizer");
  require_field(model, "byte_fallback", {false}, path, "byte-level BPE needs no fallback");
  require_field(model, "continuing_subword_prefix", {""}, path,
                "byte-level BPE marks no word pieces");
  require_field(model, "end_of_word_suffix", {""}, path, "byte-level BPE marks no word ends");
  ignore_merges_ = bool_field(model, "ignore_merges", false, path);

  // Normalizer: none, or Unicode normal forms.
  for (const nlohmann::json& n :
       components(j.value("normalizer", nlohmann::json()), "normalizers")) {
    const std::string t = json_field<std::string>(n, "type", path + ": normalizer");
    MTP_CHECK(t == "NFC" || t == "NFD" || t == "NFKC" || t == "NFKD",
              "{}: normalizer {} is not one mtp's tokenizer reproduces (NFC, NFD, NFKC, NFKD)",
              path, t);
    MTP_CHECK(normalizer_ == nullptr, "{}: more than one normalizer; mtp applies one", path);
    normalizer_ = icu_normalizer(t);
    normalizer_name_ = t;
  }
  // Pre-tokenizer and decoder: byte-level.
  const auto pre = components(j.value("pre_tokenizer", nlohmann::json()), "pretokenizers");
  MTP_CHECK(pre.size() == 1 && pre[0].value("type", "") == "ByteLevel",
            "{}: the pre-tokenizer is {}; mtp's tokenizer reproduces ByteLevel only", path,
            json_excerpt(j.value("pre_tokenizer", nlohmann::json())));
  add_prefix_space_ = bool_field(pre[0], "add_prefix_space", false, path);
  use_regex_ = bool_field(pre[0], "use_regex", true, path);
  const auto dec = components(j.value("decoder", nlohmann::json()), "decoders");
  MTP_CHECK(dec.size() == 1 && dec[0].value("type", "") == "ByteLevel",
            "{}: the decoder is {}; mtp's tokenizer reproduces ByteLevel only", path,
            json_excerpt(j.value("decoder", nlohmann::json())));
  // Special tokens are never added by encoding (lm-eval's add_special_tokens=False), so
  // the post-processor must be one that adds none.
  const auto post = components(j.value("post_processor", nlohmann::json()), "processors");
  for (const nlohmann::json& p : post)
    MTP_CHECK(p.value("type", "") == "ByteLevel",
              "{}: the post-processor {} adds tokens, which mtp's tokenizer does not", path,
              json_excerpt(p));

  // Vocabulary: each token's bytes through the inverse byte map (Hugging Face's
  // ByteLevel decoder: a token with a character outside the map stands for its own
  // UTF-8 bytes).
  const auto to_byte = byte_to_unicode();
  std::unordered_map<char32_t, std::uint8_t> from_unicode;
  for (int b = 0; b < 256; ++b) from_unicode[to_byte[b]] = std::uint8_t(b);
  auto bytes_of = [&](std::string_view token) {
    std::string out;
    char32_t cp = 0;
    for (size_t i = 0; i < token.size();) {
      const int len = utf8_at(token, i, cp);
      MTP_CHECK(len > 0, "{}: a token is not valid UTF-8", path);
      const auto it = from_unicode.find(cp);
      if (it == from_unicode.end()) return std::string(token);
      out += char(it->second);
      i += size_t(len);
    }
    return out;
  };
  // Ids index a table: one far past the entries would size it at will.
  const std::int64_t max_id =
      std::int64_t(json_member(j, "model", path).value("vocab", nlohmann::json::object()).size() +
                   (j.contains("added_tokens") && j.at("added_tokens").is_array()
                        ? j.at("added_tokens").size()
                        : 0)) *
          2 +
      1024;
  auto set_token = [&](std::int64_t id, std::string_view token) {
    MTP_CHECK(id >= 0 && id < max_id, "{}: token id {} is out of range (the file has {} tokens)",
              path, id, (max_id - 1024) / 2);
    if (size_t(id) >= token_bytes_.size()) {
      token_bytes_.resize(size_t(id) + 1);
      in_use_.resize(size_t(id) + 1);
    }
    token_bytes_[size_t(id)] = bytes_of(token);
    in_use_[size_t(id)] = true;
  };
  const nlohmann::json& vocab = json_member(model, "vocab", path + ": model");
  MTP_CHECK(vocab.is_object() && !vocab.empty(), "{}: model.vocab is not a map of tokens to ids",
            path);
  std::unordered_map<std::string, std::int32_t> id_of;  // the vocabulary's own strings
  for (const auto& [token, id] : vocab.items()) {
    const auto v = json_to<std::int64_t>(id, path + ": model.vocab[" + token + "]");
    set_token(v, token);
    id_of[token] = std::int32_t(v);
  }
  for (const auto& [token, id] : id_of) id_of_bytes_.emplace(token_bytes_[size_t(id)], id);
  // Bytes that valid UTF-8 never holds (C0, C1, F5–FF) may lack a symbol: GPT-NeoX's do.
  for (int b = 0; b < 256; ++b) {
    const auto it = id_of.find(utf8_of(to_byte[b]));
    const bool in_utf8 = b < 0xC0 || (b >= 0xC2 && b <= 0xF4);
    MTP_CHECK(it != id_of.end() || !in_utf8,
              "{}: byte 0x{:02x} has no token; not a byte-level vocabulary", path, b);
    byte_token_[b] = it != id_of.end() ? it->second : -1;
  }

  // Merges, "a b" or ["a", "b"], ranked by position.
  const nlohmann::json& merges = json_member(model, "merges", path + ": model");
  MTP_CHECK(merges.is_array(), "{}: model.merges is not a list", path);
  merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const nlohmann::json& m = merges[r];
    std::string a, b;
    if (m.is_string()) {
      const auto& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      MTP_CHECK(space != std::string::npos && s.find(' ', space + 1) == std::string::npos,
                "{}: merge {} ({}) is not two tokens", path, r, json_excerpt(m));
      a = s.substr(0, space), b = s.substr(space + 1);
    } else {
      MTP_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
                "{}: merge {} ({}) is not two tokens", path, r, json_excerpt(m));
      a = m[0].get<std::string>(), b = m[1].get<std::string>();
    }
    const auto ia = id_of.find(a), ib = id_of.find(b), iab = id_of.find(a + b);
    MTP_CHECK(ia != id_of.end() && ib != id_of.end() && iab != id_of.end(),
              "{}: merge {} ({}) names a token that is not in the vocabulary", path, r,
              json_excerpt(m));
    MTP_CHECK(merges_.emplace(pair_key(ia->second, ib->second), Merge{std::int32_t(r), iab->second})
                  .second,
              "{}: merge {} ({}) repeats an earlier one", path, r, json_excerpt(m));
  }

  // Added tokens.
  if (j.contains("added_tokens") && !j.at("added_tokens").is_null()) {
    const nlohmann::json& added = j.at("added_tokens");
    MTP_CHECK(added.is_array(), "{}: added_tokens is not a list", path);
    for (size_t k = 0; k < added.size(); ++k) {
      const std::string where = fmt::format("{}: added_tokens[{}]", path, k);
      const nlohmann::json& t = added[k];
      const auto id = json_field<std::int64_t>(t, "id", where);
      const auto content = json_field<std::string>(t, "content", where);
      MTP_CHECK(!content.empty(), "{}: empty content", where);
      check_utf8(content);
      for (const char* strip : {"lstrip", "rstrip", "single_word"})
        MTP_CHECK(!bool_field(t, strip, false, where),
                  "{}: {} is true, which mtp's tokenizer does not reproduce", where, strip);
      const bool normalized =
          bool_field(t, "normalized", !bool_field(t, "special", false, where), where);
      set_token(id, content);
      std::string matched = content, tmp;
      if (normalized && normalizer_ != nullptr &&
          normalize(static_cast<const UNormalizer2*>(normalizer_), content, tmp))
        matched = tmp;
      (normalized ? normalized_added_ : raw_added_).add(matched, std::int32_t(id));
      added_.push_back({matched, std::int32_t(id)});
    }
  }
}

BpeTokenizer::~BpeTokenizer() = default;

nlohmann::json BpeTokenizer::describe() const {
  return {{"type", "bpe"},     {"file", path_},         {"bytes", file_bytes_},
          {"sha256", sha256_}, {"vocab", vocab_size()}, {"normalizer", normalizer_name_}};
}

std::string_view BpeTokenizer::token_bytes(std::int32_t id) const {
  MTP_CHECK(id >= 0 && size_t(id) < token_bytes_.size() && in_use_[size_t(id)],
            "token id {} is not in the vocabulary of {}", id, path_);
  return token_bytes_[size_t(id)];
}

// ---- BPE: encoding ------------------------------------------------------------------

// One encoding call's state: the output and a cache of the words seen (prose repeats
// its words; the cache is per call so that encoding is thread-safe).
class BpeTokenizer::Encoder {
 public:
  Encoder(const BpeTokenizer& tok, std::vector<std::int32_t>& out) : tok_(tok), out_(out) {}

  void text(std::string_view s) {
    split_added(tok_.raw_added_, s, [&](std::string_view piece) {
      std::string normalized;
      if (tok_.normalizer_ != nullptr &&
          normalize(static_cast<const UNormalizer2*>(tok_.normalizer_), piece, normalized))
        piece = keep(std::move(normalized));
      split_added(tok_.normalized_added_, piece, [&](std::string_view p) { pre_tokenized(p); });
    });
  }

 private:
  // Calls plain(piece) for the text between added tokens, and emits the tokens.
  template <class F>
  void split_added(const Trie& trie, std::string_view s, F&& plain) {
    if (trie.empty()) {
      if (!s.empty()) plain(s);
      return;
    }
    size_t begin = 0;
    for (size_t i = 0; i < s.size();) {
      const auto [id, len] = trie.longest(s, i);
      if (len == 0) {
        ++i;
        continue;
      }
      if (i > begin) plain(s.substr(begin, i - begin));
      out_.push_back(id);
      i += len;
      begin = i;
    }
    if (begin < s.size()) plain(s.substr(begin));
  }

  void pre_tokenized(std::string_view s) {
    if (tok_.add_prefix_space_ && s.front() != ' ') {
      std::string prefixed(s.size() + 1, ' ');
      s.copy(prefixed.data() + 1, s.size());
      s = keep(std::move(prefixed));
    }
    if (tok_.use_regex_)
      split_gpt2(s, [&](std::string_view w) { word(w); });
    else
      word(s);
  }

  // A normalized piece lives until the call ends: cached words point into it.
  std::string_view keep(std::string s) {
    kept_.push_back(std::make_unique<std::string>(std::move(s)));
    return *kept_.back();
  }

  void word(std::string_view w) {
    if (w.size() == 1) {
      out_.push_back(tok_.byte_token_[std::uint8_t(w[0])]);
      return;
    }
    if (const auto it = cache_.find(w); it != cache_.end()) {
      out_.insert(out_.end(), pool_.begin() + it->second.first,
                  pool_.begin() + it->second.first + it->second.second);
      return;
    }
    const size_t start = out_.size();
    merge(w);
    if (cache_.size() < kCacheWords) {
      cache_.emplace(w, std::pair<size_t, size_t>{pool_.size(), out_.size() - start});
      pool_.insert(pool_.end(), out_.begin() + std::ptrdiff_t(start), out_.end());
    }
  }

  // BPE on one word: its byte symbols, merged lowest rank first (leftmost among equal
  // ranks), as Hugging Face's Word::merge_all, in O(n log n).
  void merge(std::string_view w) {
    MTP_CHECK(w.size() < size_t(1) << 30, "a word of {} bytes is too long to tokenize", w.size());
    if (tok_.ignore_merges_) {
      if (const auto it = tok_.id_of_bytes_.find(std::string(w)); it != tok_.id_of_bytes_.end()) {
        out_.push_back(it->second);
        return;
      }
    }
    const auto n = std::int32_t(w.size());
    symbols_.resize(size_t(n));
    for (std::int32_t i = 0; i < n; ++i)
      symbols_[size_t(i)] = {tok_.byte_token_[std::uint8_t(w[size_t(i)])], i - 1, i + 1};
    symbols_[size_t(n - 1)].next = -1;
    queue_ = {};
    auto push = [&](std::int32_t pos) {
      const Symbol& s = symbols_[size_t(pos)];
      if (s.next < 0) return;
      const auto it = tok_.merges_.find(pair_key(s.id, symbols_[size_t(s.next)].id));
      if (it != tok_.merges_.end()) queue_.push({it->second.rank, pos});
    };
    for (std::int32_t i = 0; i + 1 < n; ++i) push(i);
    while (!queue_.empty()) {
      const Candidate c = queue_.top();
      queue_.pop();
      Symbol& left = symbols_[size_t(c.pos)];
      if (left.id < 0 || left.next < 0) continue;  // merged away, or now last
      Symbol& right = symbols_[size_t(left.next)];
      const auto it = tok_.merges_.find(pair_key(left.id, right.id));
      if (it == tok_.merges_.end() || it->second.rank != c.rank) continue;  // stale
      left.id = it->second.id;
      right.id = -1;
      left.next = right.next;
      if (right.next >= 0) symbols_[size_t(right.next)].prev = c.pos;
      if (left.prev >= 0) push(left.prev);
      push(c.pos);
    }
    for (std::int32_t i = 0; i >= 0; i = symbols_[size_t(i)].next)
      out_.push_back(symbols_[size_t(i)].id);
  }

  struct Symbol {
    std::int32_t id, prev, next;  // id −1: merged into its left neighbour
  };
  struct Candidate {
    std::int32_t rank, pos;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  static constexpr size_t kCacheWords = size_t(1) << 16;

  const BpeTokenizer& tok_;
  std::vector<std::int32_t>& out_;
  std::vector<Symbol> symbols_;
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue_;
  std::unordered_map<std::string_view, std::pair<size_t, size_t>> cache_;  // (pool offset, n)
  std::vector<std::int32_t> pool_;
  std::vector<std::unique_ptr<std::string>> kept_;
};

std::vector<std::int32_t> BpeTokenizer::encode(std::string_view text) const {
  check_utf8(text);
  std::vector<std::int32_t> ids;
  ids.reserve(text.size() / 4);
  Encoder(*this, ids).text(text);
  return ids;
}

bool BpeTokenizer::crosses_added_token(std::string_view text, size_t pos) const {
  for (const AddedToken& t : added_) {
    const size_t n = t.content.size();
    for (size_t s = pos >= n - 1 ? pos - (n - 1) : 0; s < pos; ++s)
      if (text.compare(s, n, t.content) == 0) return true;
  }
  return false;
}

std::vector<size_t> BpeTokenizer::cut_points(std::string_view text, size_t block) const {
  std::vector<size_t> cuts;
  // Cuts at `p` leave the pre-tokenizer's matches and the normal form unchanged: every
  // character next to the cut is ASCII, and no match spans it (letters, digits and other
  // runs end before a space or newline; the space starts the next word; a lone newline
  // between two non-spaces is a match of its own). A prefix space would be added to the
  // second piece, so that tokenizer is never cut.
  // Without the pattern a piece is one word, whose merges may span any cut.
  if (add_prefix_space_ || !use_regex_) return cuts;
  for (size_t p = block; p + 2 < text.size();) {
    const bool space_cut =
        text[p] == ' ' && ascii_non_space(text[p - 1]) && ascii_non_space(text[p + 1]);
    const bool newline_cut =
        p >= 2 && text[p - 1] == '\n' && ascii_non_space(text[p - 2]) && ascii_non_space(text[p]);
    if ((space_cut || newline_cut) && !crosses_added_token(text, p)) {
      cuts.push_back(p);
      p += block;
    } else {
      ++p;
    }
  }
  return cuts;
}

std::vector<std::int32_t> BpeTokenizer::encode_pieces(std::string_view text, int threads,
                                                      size_t block) const {
  check_utf8(text);
  std::vector<size_t> bounds = cut_points(text, std::max<size_t>(block, 1));
  bounds.insert(bounds.begin(), 0);
  bounds.push_back(text.size());
  const auto pieces = std::ptrdiff_t(bounds.size() - 1);
  std::vector<std::vector<std::int32_t>> ids(bounds.size() - 1);
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic) \
    num_threads(threads > 0 ? threads : omp_get_max_threads())
  for (std::ptrdiff_t k = 0; k < pieces; ++k) {
    try {
      Encoder(*this, ids[size_t(k)])
          .text(text.substr(bounds[size_t(k)], bounds[size_t(k) + 1] - bounds[size_t(k)]));
    } catch (...) {
#pragma omp critical
      error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  size_t total = 0;
  for (const auto& v : ids) total += v.size();
  std::vector<std::int32_t> out;
  out.reserve(total);
  for (auto& v : ids) {
    out.insert(out.end(), v.begin(), v.end());
    std::vector<std::int32_t>().swap(v);
  }
  return out;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  if (path.empty()) return std::make_unique<ByteTokenizer>();
  return std::make_unique<BpeTokenizer>(path);
}

}  // namespace mtp::exp
