// Fuzz target: the BPE tokenizer's encoding of arbitrary bytes, with a small tokenizer
// that has what GPT-NeoX's has (NFC, byte-level merges, a special token matched on the
// raw text and space-run tokens matched after normalization). Invalid UTF-8 must end in
// an mtp::Error; anything else must give ids inside the vocabulary whose decoding is a
// fixed point (decode∘encode is NFC, and NFC(NFC(x)) = NFC(x)), equal to the text when
// it is ASCII, and the same ids when encoded in pieces at cut_points.
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "mtp/core/error.hpp"
#include "mtp/experiments/tokenizer.hpp"

namespace {

// GPT-2's byte-to-unicode map, as UTF-8.
std::string byte_symbol(int b) {
  int cp = b, n = 0;
  auto printable = [](int x) {
    return (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
  };
  if (!printable(b)) {
    for (int x = 0; x < b; ++x) n += !printable(x);
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) return s += char(cp), s;
  s += char(0xC0 | cp >> 6);
  s += char(0x80 | (cp & 0x3F));
  return s;
}

const mtp::exp::BpeTokenizer& tokenizer() {
  static const std::unique_ptr<mtp::exp::BpeTokenizer> tok = [] {
    nlohmann::json vocab = nlohmann::json::object();
    for (int b = 0; b < 256; ++b) vocab[byte_symbol(b)] = b;
    const std::string g = byte_symbol(' '), nl = byte_symbol('\n');
    const std::vector<std::pair<std::string, std::string>> merges = {
        {"e", "r"}, {g, "t"}, {"t", "h"}, {g + "t", "h"}, {"i", "n"}, {g, "a"}, {nl, nl},
        {byte_symbol(0xc3), byte_symbol(0xa9)}, {g, g}, {g + g, g + g}, {"'", "s"}};
    nlohmann::json merge_list = nlohmann::json::array();
    int id = 256;
    for (const auto& [a, b] : merges) {
      if (!vocab.contains(a + b)) vocab[a + b] = id++;
      merge_list.push_back(a + " " + b);
    }
    nlohmann::json added = nlohmann::json::array();
    added.push_back({{"id", id++}, {"content", "<|endoftext|>"}, {"special", true},
                     {"normalized", false}});
    for (int n = 2; n <= 4; ++n)
      added.push_back({{"id", id++}, {"content", std::string(size_t(n), ' ')},
                       {"special", false}, {"normalized", true}});
    const nlohmann::json j = {
        {"added_tokens", added},
        {"normalizer", {{"type", "NFC"}}},
        {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
        {"decoder", {{"type", "ByteLevel"}}},
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
    std::string path = (std::filesystem::temp_directory_path() / "mtp-fuzz-tok-XXXXXX").string();
    const int fd = ::mkstemp(path.data());
    if (fd < 0) std::abort();
    ::close(fd);
    std::ofstream(path) << j.dump();
    auto t = std::make_unique<mtp::exp::BpeTokenizer>(path);
    std::filesystem::remove(path);
    return t;
  }();
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const mtp::exp::BpeTokenizer& tok = tokenizer();
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::int32_t> ids;
  try {
    ids = tok.encode(text);
  } catch (const mtp::Error&) {
    return 0;  // invalid UTF-8
  }
  for (const std::int32_t id : ids)
    if (id < 0 || id >= tok.vocab_size()) std::abort();
  const std::string once = tok.decode(ids);
  if (tok.decode(tok.encode(once)) != once) std::abort();
  bool ascii = true;
  for (const char c : text) ascii = ascii && std::uint8_t(c) < 0x80;
  if (ascii && once != text) std::abort();
  if (tok.encode_pieces(text, 1, 1) != ids) std::abort();
  return 0;
}
