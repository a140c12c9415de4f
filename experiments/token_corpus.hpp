// A text corpus as token ids, for `--task text`:
//   bytes (no --tokenizer)  the file's bytes, read into memory; V = 256, pipes work;
//   BPE (--tokenizer FILE)  the ids from a cache file built once per (corpus, tokenizer)
//                           and memory-mapped afterwards, so that a run neither
//                           re-tokenizes nor holds the text in memory.
// The cache file is DIR/<corpus sha256[:16]>-<tokenizer sha256[:16]>.safetensors (DIR:
// --token-cache, else $XDG_CACHE_HOME/mtp/tokens, else ~/.cache/mtp/tokens): a
// safetensors file (numpy and safetensors read it) with one tensor "tokens" (N) of U16
// (vocabularies up to 65 536) or I32, and __metadata__ {"format": "mtp-tokens-1",
// "corpus_sha256", "corpus_bytes", "tokenizer_sha256", "vocab", "corpus", "tokenizer"}.
// It is built under a lock (runs that start together wait for one build) and written
// atomically; one that does not match its corpus and tokenizer (hashes, sizes, an id
// past the vocabulary) is rebuilt, with a note on stderr.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "mtp/core/file_io.hpp"
#include "mtp/experiments/tokenizer.hpp"

namespace mtp::exp {

inline constexpr const char* kTokenCacheFormat = "mtp-tokens-1";

// --token-cache's default: $XDG_CACHE_HOME/mtp/tokens or ~/.cache/mtp/tokens.
std::string default_token_cache();

class TokenCorpus {
 public:
  // `what` names the corpus for errors ("--data"). `threads`: the build's (0: all).
  TokenCorpus(const std::string& path, const Tokenizer& tok, const std::string& cache_dir,
              int threads = 0, const std::string& what = "--data");
  TokenCorpus(TokenCorpus&&) noexcept;
  ~TokenCorpus();

  size_t size() const { return size_; }
  std::int32_t operator[](size_t i) const {
    switch (width_) {
      case 1:
        return data_[i];
      case 2:
        return std::int32_t(data_[2 * i] | data_[2 * i + 1] << 8);
      default: {
        std::int32_t v;
        std::memcpy(&v, data_ + 4 * i, 4);
        return v;
      }
    }
  }
  std::uint64_t text_bytes() const { return text_bytes_; }
  const std::string& sha256() const;  // the corpus file's (computed when first asked for bytes)
  // The bytes of text that ids [begin, end) stand for.
  std::uint64_t decoded_bytes(size_t begin, size_t end) const;
  const std::string& cache_path() const { return cache_path_; }  // empty for bytes
  bool built_cache() const { return built_; }  // whether this call tokenized the corpus

 private:
  void open_cache(const std::string& path, const std::string& what, int threads);
  // The cache file's ids when it matches; false (with `why`) otherwise.
  bool map_cache(std::string& why);

  const Tokenizer& tok_;
  std::vector<std::uint8_t> bytes_;  // bytes: the corpus
  std::unique_ptr<MappedFile> map_;  // BPE: the cache file
  const std::uint8_t* data_ = nullptr;
  int width_ = 1;
  size_t size_ = 0;
  std::uint64_t text_bytes_ = 0;
  mutable std::string sha256_;
  std::string tokenizer_sha256_, cache_path_;
  bool built_ = false;
};

}  // namespace mtp::exp
