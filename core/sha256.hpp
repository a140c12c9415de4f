// SHA-256 (FIPS 180-4), for fingerprints of data files: a training state records the
// hash of every file it trained on, so that a resume on changed data is refused.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace mtp {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  // The digest of everything updated so far; the object is spent afterwards.
  std::array<std::uint8_t, 32> digest();
  // The digest as 64 lowercase hex digits, as sha256sum prints it.
  std::string hex_digest();

 private:
  void block(const std::uint8_t* p);
  std::array<std::uint32_t, 8> h_;
  std::array<std::uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  std::uint64_t length_ = 0;  // bytes
};

// The hex digest of `size` bytes.
std::string sha256_hex(const void* data, size_t size);

}  // namespace mtp
