#include "mtp/core/safetensors.hpp"

#include "mtp/core/file_io.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

namespace mtp {

static_assert(std::endian::native == std::endian::little, "safetensors IO assumes little-endian");

namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;
  index_t size;
};
constexpr DTypeInfo kDTypes[] = {{DType::F64, "F64", 8}, {DType::F32, "F32", 4},
                                 {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
                                 {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
                                 {DType::U8, "U8", 1}};

// The header of a file this size is never legitimately above this (the reference
// implementation uses 100 MB); a larger claim means a corrupt or hostile file.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000) << 16;
  std::uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

// A double as S: beyond S's range it becomes ±infinity, which the conversion itself
// leaves undefined.
template <class S>
S narrow(double v) {
  if constexpr (std::is_same_v<S, float>) {
    if (v > double(std::numeric_limits<float>::max()))
      return std::numeric_limits<float>::infinity();
    if (v < -double(std::numeric_limits<float>::max()))
      return -std::numeric_limits<float>::infinity();
  }
  return S(v);
}

template <class U>
U load(const std::uint8_t* p, index_t i) {
  U v;
  std::memcpy(&v, p + i * sizeof(U), sizeof(U));
  return v;
}

}  // namespace

const char* dtype_name(DType d) {
  for (const auto& i : kDTypes)
    if (i.dtype == d) return i.name;
  return "?";
}
index_t dtype_size(DType d) {
  for (const auto& i : kDTypes)
    if (i.dtype == d) return i.size;
  return 0;
}

index_t StoredTensor::numel() const {
  index_t n = 1;
  for (index_t d : shape) n *= d;
  return n;
}

template <class S>
std::vector<S> StoredTensor::decode(const std::string& what) const {
  const index_t n = numel();
  std::vector<S> out(n);
  const std::uint8_t* p = bytes.data();
  switch (dtype) {
    case DType::F64:
      for (index_t i = 0; i < n; ++i)
        out[i] = narrow<S>(std::bit_cast<double>(load<std::uint64_t>(p, i)));
      break;
    case DType::F32:
      for (index_t i = 0; i < n; ++i) out[i] = S(std::bit_cast<float>(load<std::uint32_t>(p, i)));
      break;
    case DType::F16:
      for (index_t i = 0; i < n; ++i) out[i] = S(half_to_float(load<std::uint16_t>(p, i)));
      break;
    case DType::BF16:
      for (index_t i = 0; i < n; ++i)
        out[i] = S(std::bit_cast<float>(std::uint32_t(load<std::uint16_t>(p, i)) << 16));
      break;
    default:
      fail("{} has dtype {}, expected a floating-point tensor", what, dtype_name(dtype));
  }
  return out;
}

template <class S>
std::vector<S> StoredTensor::to(const std::string& what) const {
  std::vector<S> out = decode<S>(what);
  // A NaN or infinite weight (or one beyond S's range) poisons everything computed from
  // it without any error: refuse it where it enters.
  for (size_t i = 0; i < out.size(); ++i)
    if (!std::isfinite(out[i]))
      fail("{} holds a non-finite value ({} at flat index {})", what, double(out[i]), i);
  return out;
}
template std::vector<float> StoredTensor::to<float>(const std::string&) const;
template std::vector<double> StoredTensor::to<double>(const std::string&) const;
template std::vector<float> StoredTensor::decode<float>(const std::string&) const;
template std::vector<double> StoredTensor::decode<double>(const std::string&) const;

const StoredTensor& SafeTensors::at(const std::string& name) const {
  auto it = tensors.find(name);
  MTP_CHECK(it != tensors.end(), "missing tensor '{}'", name);
  return it->second;
}

template <class S>
void SafeTensors::put(const std::string& name, const std::vector<index_t>& shape, const S* data) {
  StoredTensor t;
  t.dtype = std::is_same_v<S, double> ? DType::F64 : DType::F32;
  t.shape = shape;
  t.bytes.resize(t.numel() * sizeof(S));
  if (!t.bytes.empty()) std::memcpy(t.bytes.data(), data, t.bytes.size());
  tensors[name] = std::move(t);
}
template void SafeTensors::put<float>(const std::string&, const std::vector<index_t>&,
                                      const float*);
template void SafeTensors::put<double>(const std::string&, const std::vector<index_t>&,
                                       const double*);

void SafeTensors::put_i32(const std::string& name, const std::vector<index_t>& shape,
                          const std::int32_t* data) {
  StoredTensor t;
  t.dtype = DType::I32;
  t.shape = shape;
  t.bytes.resize(t.numel() * 4);
  if (!t.bytes.empty()) std::memcpy(t.bytes.data(), data, t.bytes.size());
  tensors[name] = std::move(t);
}

SafeTensors SafeTensors::parse(const std::uint8_t* data, size_t size, const std::string& what) {
  using nlohmann::json;
  MTP_CHECK(size >= 8, "{}: not a safetensors file (only {} bytes)", what, size);
  std::uint64_t header_len = 0;
  std::memcpy(&header_len, data, 8);
  MTP_CHECK(header_len <= kMaxHeaderBytes && header_len <= size - 8,
            "{}: safetensors header length {} exceeds the file ({} bytes)", what, header_len, size);
  json header;
  try {
    header = json::parse(data + 8, data + 8 + header_len);
  } catch (const json::exception& e) {
    fail("{}: safetensors header is not valid JSON ({})", what, json_error_text(e));
  }
  MTP_CHECK(header.is_object(), "{}: safetensors header is not a JSON object", what);
  const std::uint8_t* body = data + 8 + header_len;
  const std::uint64_t body_len = size - 8 - header_len;

  SafeTensors st;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      MTP_CHECK(entry.is_object(), "{}: __metadata__ is not an object", what);
      for (auto& [k, v] : entry.items()) {
        MTP_CHECK(v.is_string(), "{}: __metadata__ value '{}' is not a string", what, k);
        st.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    MTP_CHECK(entry.is_object() && entry.contains("dtype") && entry.contains("shape") &&
                  entry.contains("data_offsets"),
              "{}: tensor '{}' needs dtype, shape and data_offsets", what, name);
    const json& jd = entry["dtype"];
    const json& js = entry["shape"];
    const json& jo = entry["data_offsets"];
    MTP_CHECK(jd.is_string(), "{}: tensor '{}' dtype is not a string", what, name);
    StoredTensor t;
    bool known = false;
    for (const auto& i : kDTypes)
      if (jd.get<std::string>() == i.name) {
        t.dtype = i.dtype;
        known = true;
      }
    MTP_CHECK(known, "{}: tensor '{}' has unsupported dtype {}", what, name, jd.dump());
    MTP_CHECK(js.is_array() && js.size() <= 8, "{}: tensor '{}' shape is not a list of ≤ 8 dims",
              what, name);
    // The element count, with a zero dimension making it 0 (a valid, empty tensor);
    // the nonzero dimensions' product must still be representable.
    std::uint64_t nonzero = 1;
    bool empty = false;
    for (const json& d : js) {
      MTP_CHECK(d.is_number_unsigned(), "{}: tensor '{}' has a bad dimension {}", what, name,
                d.dump());
      const std::uint64_t v = d.get<std::uint64_t>();
      MTP_CHECK(v <= std::uint64_t(std::numeric_limits<index_t>::max()) &&
                    (v == 0 || (!__builtin_mul_overflow(nonzero, v, &nonzero) &&
                                nonzero <= std::uint64_t(std::numeric_limits<index_t>::max()))),
                "{}: tensor '{}' shape {} is too large", what, name, js.dump());
      empty |= v == 0;
      t.shape.push_back(static_cast<index_t>(v));
    }
    const std::uint64_t numel = empty ? 0 : nonzero;
    std::uint64_t nbytes = 0;
    MTP_CHECK(!__builtin_mul_overflow(numel, std::uint64_t(dtype_size(t.dtype)), &nbytes) &&
                  nbytes <= body_len,
              "{}: tensor '{}' shape {} exceeds the file", what, name, js.dump());
    MTP_CHECK(
        jo.is_array() && jo.size() == 2 && jo[0].is_number_unsigned() && jo[1].is_number_unsigned(),
        "{}: tensor '{}' data_offsets must be two non-negative integers", what, name);
    const std::uint64_t b = jo[0].get<std::uint64_t>(), e = jo[1].get<std::uint64_t>();
    MTP_CHECK(b <= e && e <= body_len,
              "{}: tensor '{}' offsets [{}, {}) outside the data ({} bytes)", what, name, b, e,
              body_len);
    MTP_CHECK(e - b == nbytes, "{}: tensor '{}' has {} bytes, but {} {} needs {}", what, name,
              e - b, js.dump(), jd.get<std::string>(), nbytes);
    t.bytes.assign(body + b, body + e);
    ranges.emplace_back(b, e);
    st.tensors.emplace(name, std::move(t));
  }
  // As the reference implementation: the tensors tile the data exactly, no overlap,
  // no gap, nothing after the last one.
  std::sort(ranges.begin(), ranges.end());
  std::uint64_t covered = 0;
  for (const auto& [b, e] : ranges) {
    MTP_CHECK(b >= covered, "{}: tensors overlap in the data", what);
    MTP_CHECK(b == covered, "{}: {} unreferenced bytes in the data at offset {}", what, b - covered,
              covered);
    covered = e;
  }
  MTP_CHECK(covered == body_len, "{}: {} unreferenced bytes after the last tensor", what,
            body_len - covered);
  return st;
}

SafeTensors SafeTensors::load(const std::string& path) {
  const std::vector<std::uint8_t> data = read_file_bytes(path);
  return parse(data.data(), data.size(), path);
}

std::vector<std::uint8_t> SafeTensors::serialize() const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    header[name] = {{"dtype", dtype_name(t.dtype)},
                    {"shape", t.shape},
                    {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // align the data to 8 bytes, as the reference does
  std::vector<std::uint8_t> out(8 + h.size());
  const std::uint64_t len = h.size();
  std::memcpy(out.data(), &len, 8);
  std::memcpy(out.data() + 8, h.data(), h.size());
  out.reserve(out.size() + offset);
  for (const auto& [name, t] : tensors) out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  return out;
}

void SafeTensors::save(const std::string& path, const WriteOptions& options) const {
  const std::vector<std::uint8_t> bytes = serialize();
  write_file_atomic(path, bytes.data(), bytes.size(), options);
}

}  // namespace mtp
