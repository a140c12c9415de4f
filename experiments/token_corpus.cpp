#include "mtp/experiments/token_corpus.hpp"

#include <fmt/format.h>

#include <bit>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "mtp/core/error.hpp"
#include "mtp/core/sha256.hpp"
#include "mtp/experiments/json_file.hpp"
#include "mtp/experiments/run_folder.hpp"

namespace mtp::exp {

static_assert(std::endian::native == std::endian::little, "the token cache is little-endian");

std::string default_token_cache() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/mtp/tokens";
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] == '/') return std::string(home) + "/.cache/mtp/tokens";
  usage_fail("--token-cache is needed: neither XDG_CACHE_HOME nor HOME names a folder");
}

TokenCorpus::TokenCorpus(const std::string& path, const Tokenizer& tok,
                         const std::string& cache_dir, int threads, const std::string& what)
    : tok_(tok) {
  if (tok.describe().at("type") == "bytes") {
    bytes_ = read_file_bytes(path, what);
    data_ = bytes_.data();
    size_ = text_bytes_ = bytes_.size();
    return;
  }
  tokenizer_sha256_ = tok.describe().at("sha256").get<std::string>();
  const std::string dir = cache_dir.empty() ? default_token_cache() : cache_dir;
  {
    // The corpus, hashed through a mapping: its pages are not kept.
    const MappedFile text(path, what);
    text_bytes_ = text.size();
    sha256_ = sha256_hex(text.data(), text.size());
  }
  cache_path_ =
      dir + "/" + sha256_.substr(0, 16) + "-" + tokenizer_sha256_.substr(0, 16) + ".safetensors";
  std::string why;
  if (map_cache(why)) return;
  // One build at a time per cache file; whoever waited finds it built.
  const FolderLock lock =
      FolderLock::wait(dir, "--token-cache " + dir,
                       std::filesystem::path(cache_path_).filename().string() + ".lock");
  if (map_cache(why)) return;
  if (why != "absent")
    fmt::print(stderr, "mtp-exp: token cache {} {}: rebuilding it\n", cache_path_, why);
  const auto t0 = std::chrono::steady_clock::now();
  open_cache(path, what, threads);
  MTP_CHECK(map_cache(why), "{}: the token cache just written does not read back ({})", cache_path_,
            why);
  built_ = true;
  // Once per corpus and tokenizer: say where the tokens went (later runs map them).
  fmt::print(stderr, "mtp-exp: tokenized {} ({} tokens, {:.1f} s) into {}\n", path, size_,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
             cache_path_);
}

TokenCorpus::TokenCorpus(TokenCorpus&&) noexcept = default;
TokenCorpus::~TokenCorpus() = default;

const std::string& TokenCorpus::sha256() const {
  if (sha256_.empty()) sha256_ = sha256_hex(bytes_.data(), bytes_.size());
  return sha256_;
}

std::uint64_t TokenCorpus::decoded_bytes(size_t begin, size_t end) const {
  if (width_ == 1 && bytes_.data() == data_) return end - begin;
  std::uint64_t n = 0;
  for (size_t i = begin; i < end; ++i) n += tok_.token_bytes((*this)[i]).size();
  return n;
}

void TokenCorpus::open_cache(const std::string& path, const std::string& what, int threads) {
  const MappedFile text(path, what);
  MTP_CHECK(sha256_hex(text.data(), text.size()) == sha256_,
            "{} {}: the file changed while it was being read", what, path);
  std::vector<std::int32_t> ids;
  try {
    ids = tok_.encode_large(text.text(), threads);
  } catch (const Error& e) {
    fail("{} {}: {}", what, path, e.what());
  }
  const index_t V = tok_.vocab_size();
  const int width = V <= 65536 ? 2 : 4;
  nlohmann::json header = {{"__metadata__",
                            {{"format", kTokenCacheFormat},
                             {"corpus", path},
                             {"corpus_sha256", sha256_},
                             {"corpus_bytes", std::to_string(text_bytes_)},
                             {"tokenizer", tok_.describe().at("file").get<std::string>()},
                             {"tokenizer_sha256", tokenizer_sha256_},
                             {"vocab", std::to_string(V)}}},
                           {"tokens",
                            {{"dtype", width == 2 ? "U16" : "I32"},
                             {"shape", {ids.size()}},
                             {"data_offsets", {0, ids.size() * size_t(width)}}}}};
  std::string h = header.dump();
  h.resize((h.size() + 7) / 8 * 8, ' ');
  std::vector<std::uint8_t> out(8 + h.size() + ids.size() * size_t(width));
  const std::uint64_t hlen = h.size();
  std::memcpy(out.data(), &hlen, 8);
  std::memcpy(out.data() + 8, h.data(), h.size());
  std::uint8_t* p = out.data() + 8 + h.size();
  for (const std::int32_t id : ids) {
    std::memcpy(p, &id, size_t(width));  // little-endian: the low bytes
    p += width;
  }
  std::filesystem::create_directories(std::filesystem::path(cache_path_).parent_path());
  write_file_atomic(cache_path_, out.data(), out.size());
}

bool TokenCorpus::map_cache(std::string& why) {
  std::error_code ec;
  if (!std::filesystem::exists(cache_path_, ec)) {
    why = "absent";
    return false;
  }
  try {
    auto map = std::make_unique<MappedFile>(cache_path_, "--token-cache");
    const size_t size = map->size();
    std::uint64_t hlen = 0;
    if (size < 8) throw Error("is shorter than its header");
    std::memcpy(&hlen, map->data(), 8);
    if (hlen > size - 8) throw Error("has a header longer than the file");
    const nlohmann::json h = parse_json(
        std::string_view(reinterpret_cast<const char*>(map->data()) + 8, hlen), cache_path_);
    const nlohmann::json& meta = json_member(h, "__metadata__", cache_path_);
    const nlohmann::json& t = json_member(h, "tokens", cache_path_);
    auto meta_is = [&](const char* key, const std::string& want) {
      if (json_field<std::string>(meta, key, cache_path_) != want)
        throw Error(fmt::format("has another {}", key));
    };
    meta_is("format", kTokenCacheFormat);
    meta_is("corpus_sha256", sha256_);
    meta_is("corpus_bytes", std::to_string(text_bytes_));
    meta_is("tokenizer_sha256", tokenizer_sha256_);
    const auto dtype = json_field<std::string>(t, "dtype", cache_path_);
    const int width = dtype == "U16" ? 2 : dtype == "I32" ? 4 : 0;
    if (width == 0) throw Error("has tokens of dtype " + dtype);
    const auto shape = json_field<std::vector<std::uint64_t>>(t, "shape", cache_path_);
    const auto offsets = json_field<std::vector<std::uint64_t>>(t, "data_offsets", cache_path_);
    if (shape.size() != 1 || offsets.size() != 2 || offsets[0] != 0 ||
        shape[0] > (size - 8 - hlen) / std::uint64_t(width) ||
        offsets[1] != shape[0] * std::uint64_t(width) || 8 + hlen + offsets[1] != size)
      throw Error("has sizes that do not fit the file");
    map_ = std::move(map);
    data_ = map_->data() + 8 + hlen;
    width_ = width;
    size_ = shape[0];
    // Every id inside the vocabulary: a model indexes its embedding with them.
    const std::int32_t V = std::int32_t(tok_.vocab_size());
    for (size_t i = 0; i < size_; ++i) {
      const std::int32_t id = (*this)[i];
      if (id < 0 || id >= V)
        throw Error(fmt::format("has id {} at {}, past the vocabulary", id, i));
    }
    return true;
  } catch (const Error& e) {
    map_.reset();
    data_ = nullptr;
    size_ = 0;
    why = e.what();
    return false;
  }
}

}  // namespace mtp::exp
