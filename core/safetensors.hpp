// safetensors files (docs/contract.md §11.1): an 8-byte little-endian header length, a JSON header
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
// then the raw little-endian tensor bytes. Reading checks every field against the
// file (lengths, offsets, overlap, dtype sizes) and names the file and tensor in its
// error; writing goes to a temporary file that is renamed into place, so a reader
// never sees a half-written file.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mtp/core/file_io.hpp"
#include "mtp/core/tensor.hpp"

namespace mtp {

enum class DType { F64, F32, F16, BF16, I64, I32, U8 };

const char* dtype_name(DType d);
index_t dtype_size(DType d);

struct StoredTensor {
  DType dtype = DType::F32;
  std::vector<index_t> shape;
  std::vector<std::uint8_t> bytes;  // little-endian, row-major

  index_t numel() const;
  // Converted to S (F64/F32/F16/BF16 only; throws naming `what` otherwise) and checked
  // finite: a NaN or infinite value (or one beyond S's range) is an error naming `what`
  // and the value's index. Every tensor mtp loads goes through this.
  template <class S>
  std::vector<S> to(const std::string& what) const;
  // The same conversion, bit for bit, without the check (NaN and ±inf pass through).
  template <class S>
  std::vector<S> decode(const std::string& what) const;
};

class SafeTensors {
 public:
  std::map<std::string, StoredTensor> tensors;
  std::map<std::string, std::string> metadata;

  bool has(const std::string& name) const { return tensors.count(name) != 0; }
  const StoredTensor& at(const std::string& name) const;

  template <class S>
  void put(const std::string& name, const std::vector<index_t>& shape, const S* data);
  void put_i32(const std::string& name, const std::vector<index_t>& shape,
               const std::int32_t* data);

  // Reads and validates `path`. Throws mtp::Error naming the file and the problem.
  static SafeTensors load(const std::string& path);
  static SafeTensors parse(const std::uint8_t* data, size_t size, const std::string& what);
  // Writes atomically (write_file_atomic: a temporary file, fsync, rename).
  void save(const std::string& path, const WriteOptions& options = {}) const;
  std::vector<std::uint8_t> serialize() const;
};

}  // namespace mtp
