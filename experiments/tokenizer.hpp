// Text ↔ token ids. Two tokenizers behind one interface:
//   ByteTokenizer  token = byte value, V = 256: the default of `--task text`, eval and
//                  generate, for any bytes at all;
//   BpeTokenizer   byte-level BPE read from a Hugging Face tokenizer.json (GPT-2,
//                  GPT-NeoX-20B: the tokenizer of the RWKV-4 Pile models), giving the ids
//                  Hugging Face's tokenizers give, without Python or node.
//
// BpeTokenizer's encoding, in Hugging Face's order:
//   1. added tokens that are not normalized (<|endoftext|>) are cut out of the raw text,
//      leftmost-longest;
//   2. each remaining piece is normalized (NFC for GPT-NeoX), and the added tokens that
//      are normalized (GPT-NeoX's runs of 2–24 spaces) are cut out of it;
//   3. each remaining piece is split by GPT-2's pre-tokenizer pattern
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      (written out by hand over Unicode's categories from ICU; \s is White_Space);
//   4. each word's bytes become the byte symbols of the vocabulary (GPT-2's byte-to-
//      unicode map), merged pair by pair in the order of the merges' ranks.
// Decoding concatenates the tokens' bytes, so decode(encode(x)) = NFC(x).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mtp/core/tensor.hpp"

namespace mtp::exp {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Text → ids. BPE reads UTF-8: invalid UTF-8 is an mtp::Error naming the byte offset.
  virtual std::vector<std::int32_t> encode(std::string_view text) const = 0;
  // encode(text) of a large text (a corpus), on `threads` threads (0: all).
  virtual std::vector<std::int32_t> encode_large(std::string_view text, int threads) const {
    (void)threads;
    return encode(text);
  }
  // The bytes of one token; an id outside the vocabulary is an mtp::Error. A token may
  // hold part of a UTF-8 character, so a stream prints bytes, not characters.
  virtual std::string_view token_bytes(std::int32_t id) const = 0;
  std::string decode(std::span<const std::int32_t> ids) const;
  // The model's vocabulary: one more than the largest id.
  virtual index_t vocab_size() const = 0;
  // What a run records of it: {"type": "bytes"} or {"type": "bpe", "file", "bytes",
  // "sha256", "vocab", "normalizer"}. A model trained with one is used with the same one.
  virtual nlohmann::json describe() const = 0;
};

class ByteTokenizer final : public Tokenizer {
 public:
  ByteTokenizer();
  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string_view token_bytes(std::int32_t id) const override;
  index_t vocab_size() const override { return 256; }
  nlohmann::json describe() const override { return {{"type", "bytes"}}; }

 private:
  std::array<char, 256> bytes_;
};

class BpeTokenizer final : public Tokenizer {
 public:
  // Reads a tokenizer.json. What it cannot reproduce exactly (another model type or
  // pre-tokenizer, BPE dropout, byte fallback, added tokens that strip spaces, ...) is
  // an mtp::Error naming the field, never a tokenization that silently differs.
  explicit BpeTokenizer(const std::string& path);
  ~BpeTokenizer() override;
  BpeTokenizer(const BpeTokenizer&) = delete;
  BpeTokenizer& operator=(const BpeTokenizer&) = delete;

  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string_view token_bytes(std::int32_t id) const override;
  index_t vocab_size() const override { return index_t(token_bytes_.size()); }
  nlohmann::json describe() const override;
  const std::string& sha256() const { return sha256_; }

  // Offsets where `text` may be cut so that encoding the pieces gives exactly the ids of
  // encoding the whole: between a non-space ASCII character and a single space before
  // one, or after a single newline between two (no added token crossing the cut). The
  // cuts are about `block` bytes apart (further where text offers none); a large
  // corpus is encoded piece by piece, in parallel, with bounded memory.
  std::vector<size_t> cut_points(std::string_view text, size_t block) const;
  // encode(text) computed piece by piece at cut_points, on `threads` threads (0: all).
  std::vector<std::int32_t> encode_pieces(std::string_view text, int threads, size_t block) const;
  std::vector<std::int32_t> encode_large(std::string_view text, int threads) const override {
    return encode_pieces(text, threads, size_t(1) << 20);
  }

 private:
  struct AddedToken {
    std::string content;  // as matched: normalized when `normalized`
    std::int32_t id = 0;
  };
  // Leftmost-longest matching of added tokens (a byte trie).
  struct Trie {
    struct Node {
      std::vector<std::pair<std::uint8_t, std::int32_t>> children;  // (byte, node)
      std::int32_t token = -1;
    };
    std::vector<Node> nodes{Node{}};
    void add(std::string_view s, std::int32_t id);
    // The id and length of the longest token at text[pos...], or length 0.
    std::pair<std::int32_t, size_t> longest(std::string_view text, size_t pos) const;
    bool empty() const { return nodes.size() == 1; }
  };
  struct Merge {
    std::int32_t rank, id;
  };
  class Encoder;

  static std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
    return std::uint64_t(std::uint32_t(a)) << 32 | std::uint32_t(b);
  }
  void load(const std::string& path);  // the constructor's work
  bool crosses_added_token(std::string_view text, size_t pos) const;

  std::string path_, sha256_;
  std::uint64_t file_bytes_ = 0;
  std::vector<std::string> token_bytes_;  // by id; ids not in use are absent
  std::vector<bool> in_use_;
  std::array<std::int32_t, 256> byte_token_{};  // the symbol of each byte
  std::unordered_map<std::uint64_t, Merge> merges_;
  std::unordered_map<std::string, std::int32_t> id_of_bytes_;  // for ignore_merges
  bool ignore_merges_ = false;
  bool add_prefix_space_ = false;
  bool use_regex_ = true;
  const void* normalizer_ = nullptr;  // ICU's UNormalizer2, or none
  std::string normalizer_name_ = "none";
  Trie raw_added_, normalized_added_;
  std::vector<AddedToken> added_;
};

// --tokenizer FILE, or bytes when the path is empty.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

}  // namespace mtp::exp
