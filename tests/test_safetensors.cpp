// safetensors IO (docs/contract.md §11.1, docs/reliability.md): round trips of every dtype the
// library writes, half-precision decoding against known bit patterns, the 8-byte data alignment, a
// corpus of malformed files that must each be rejected with a one-line mtp::Error
// naming the file, and atomic saving.
#include <gtest/gtest.h>

#include <unistd.h>
#include "temp_dir.hpp"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <typeinfo>
#include <vector>

#include "mtp/core/error.hpp"
#include "mtp/core/safetensors.hpp"

namespace mtp {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

std::vector<std::uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::uint64_t header_length(const std::vector<std::uint8_t>& bytes) {
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  return n;
}

template <class T>
std::vector<T> decode(const StoredTensor& t) {
  EXPECT_EQ(t.bytes.size(), size_t(t.numel()) * sizeof(T));
  std::vector<T> v(t.bytes.size() / sizeof(T));
  std::memcpy(v.data(), t.bytes.data(), t.bytes.size());
  return v;
}

// A file with three dtypes, a scalar, a zero-size tensor and metadata.
SafeTensors sample() {
  SafeTensors st;
  const std::vector<float> f32 = {1.5f, -2.25f, 0.0f, 3.0e-30f, -1.0e30f, 7.0f};
  const std::vector<double> f64 = {3.141592653589793, -1.0e-300, 2.0};
  const std::vector<std::int32_t> i32 = {0, -1, 2147483647, -2147483647 - 1};
  const double scalar = -0.125;
  st.put("layer.weight", {2, 3}, f32.data());
  st.put("layer.decay", {3}, f64.data());
  st.put_i32("tokens", {2, 2}, i32.data());
  st.put("scalar", {}, &scalar);
  const float unused = 0;
  st.put("empty", {0, 4}, &unused);
  st.metadata["format"] = "test";
  st.metadata["config"] = R"({"a": [1, 2], "b": "x\ny"})";
  st.metadata["unicode"] = "σ·λ — ok";
  st.metadata["empty"] = "";
  return st;
}

void expect_same(const SafeTensors& a, const SafeTensors& b) {
  EXPECT_EQ(a.metadata, b.metadata);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    ASSERT_TRUE(b.has(name)) << name;
    const StoredTensor& u = b.at(name);
    EXPECT_EQ(t.dtype, u.dtype) << name;
    EXPECT_EQ(t.shape, u.shape) << name;
    EXPECT_EQ(t.bytes, u.bytes) << name;
  }
}

TEST(SafeTensors, SerializeParseRoundTrip) {
  const SafeTensors st = sample();
  const std::vector<std::uint8_t> bytes = st.serialize();
  const SafeTensors back = SafeTensors::parse(bytes.data(), bytes.size(), "mem");
  expect_same(st, back);

  EXPECT_EQ(back.at("layer.weight").dtype, DType::F32);
  EXPECT_EQ(back.at("layer.decay").dtype, DType::F64);
  EXPECT_EQ(back.at("tokens").dtype, DType::I32);
  EXPECT_EQ(decode<float>(back.at("layer.weight")),
            (std::vector<float>{1.5f, -2.25f, 0.0f, 3.0e-30f, -1.0e30f, 7.0f}));
  EXPECT_EQ(decode<double>(back.at("layer.decay")),
            (std::vector<double>{3.141592653589793, -1.0e-300, 2.0}));
  EXPECT_EQ(decode<std::int32_t>(back.at("tokens")),
            (std::vector<std::int32_t>{0, -1, 2147483647, -2147483647 - 1}));
  // Serialising what was parsed gives the same bytes.
  EXPECT_EQ(back.serialize(), bytes);
}

TEST(SafeTensors, ScalarAndZeroSizeTensors) {
  const SafeTensors st = sample();
  const std::vector<std::uint8_t> bytes = st.serialize();
  const SafeTensors back = SafeTensors::parse(bytes.data(), bytes.size(), "mem");

  const StoredTensor& s = back.at("scalar");
  EXPECT_TRUE(s.shape.empty());
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.to<double>("scalar"), std::vector<double>{-0.125});
  EXPECT_EQ(s.to<float>("scalar"), std::vector<float>{-0.125f});

  const StoredTensor& e = back.at("empty");
  EXPECT_EQ(e.shape, (std::vector<index_t>{0, 4}));
  EXPECT_EQ(e.numel(), 0);
  EXPECT_TRUE(e.bytes.empty());
  EXPECT_TRUE(e.to<float>("empty").empty());
}

TEST(SafeTensors, EmptyFileRoundTrip) {
  const SafeTensors st;
  const std::vector<std::uint8_t> bytes = st.serialize();
  const SafeTensors back = SafeTensors::parse(bytes.data(), bytes.size(), "mem");
  EXPECT_TRUE(back.tensors.empty());
  EXPECT_TRUE(back.metadata.empty());
}

TEST(SafeTensors, ConversionBetweenFloatTypes) {
  SafeTensors st;
  const std::vector<float> f = {0.1f, -3.0f};
  const std::vector<double> d = {0.1, -3.0};
  st.put("f", {2}, f.data());
  st.put("d", {2}, d.data());
  EXPECT_EQ(st.at("f").to<double>("f"), (std::vector<double>{double(0.1f), -3.0}));
  EXPECT_EQ(st.at("d").to<float>("d"), (std::vector<float>{0.1f, -3.0f}));

  const std::int32_t i[2] = {1, 2};
  st.put_i32("i", {2}, i);
  try {
    st.at("i").to<float>("weights.safetensors: tensor 'i'");
    FAIL() << "converting I32 to float must throw";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("weights.safetensors: tensor 'i'"), std::string::npos)
        << err.what();
    EXPECT_NE(std::string(err.what()).find("I32"), std::string::npos) << err.what();
  }
  EXPECT_THROW(st.at("missing"), Error);
}

// Builds a file around a 16-bit tensor and decodes it through parse + to<>.
std::vector<double> decode16(const char* dtype, const std::vector<std::uint16_t>& bits) {
  SafeTensors st;
  StoredTensor t;
  t.dtype = std::string(dtype) == "F16" ? DType::F16 : DType::BF16;
  t.shape = {index_t(bits.size())};
  t.bytes.resize(bits.size() * 2);
  std::memcpy(t.bytes.data(), bits.data(), t.bytes.size());
  st.tensors["h"] = t;
  const std::vector<std::uint8_t> bytes = st.serialize();
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + header_length(bytes));
  EXPECT_NE(header.find(std::string("\"") + dtype + "\""), std::string::npos) << header;
  const SafeTensors back = SafeTensors::parse(bytes.data(), bytes.size(), "mem");
  EXPECT_EQ(back.at("h").dtype, t.dtype);
  const std::vector<double> d = back.at("h").decode<double>("h");
  const std::vector<float> f = back.at("h").decode<float>("h");
  for (size_t i = 0; i < d.size(); ++i)
    if (!std::isnan(d[i])) {
      EXPECT_EQ(double(f[i]), d[i]) << "element " << i;
    }
  return d;
}

TEST(SafeTensors, DecodesF16BitPatterns) {
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<std::uint16_t> bits = {
      0x3C00,  // 1.0
      0xC100,  // -2.5
      0x0001,  // smallest subnormal 2^-24
      0x03FF,  // largest subnormal 1023·2^-24
      0x8001,  // -2^-24
      0x0400,  // smallest normal 2^-14
      0x7BFF,  // largest normal 65504
      0x7C00,  // +inf
      0xFC00,  // -inf
      0x0000,  // +0
      0x8000,  // -0
      0x7E00,  // NaN
      0x3555,  // 0.333251953125
  };
  const std::vector<double> d = decode16("F16", bits);
  ASSERT_EQ(d.size(), 13u);
  EXPECT_EQ(d[0], 1.0);
  EXPECT_EQ(d[1], -2.5);
  EXPECT_EQ(d[2], std::ldexp(1.0, -24));
  EXPECT_EQ(d[3], 1023 * std::ldexp(1.0, -24));
  EXPECT_EQ(d[4], -std::ldexp(1.0, -24));
  EXPECT_EQ(d[5], std::ldexp(1.0, -14));
  EXPECT_EQ(d[6], 65504.0);
  EXPECT_EQ(d[7], inf);
  EXPECT_EQ(d[8], -inf);
  EXPECT_EQ(d[9], 0.0);
  EXPECT_FALSE(std::signbit(d[9]));
  EXPECT_EQ(d[10], 0.0);
  EXPECT_TRUE(std::signbit(d[10]));
  EXPECT_TRUE(std::isnan(d[11]));
  EXPECT_EQ(d[12], 0.333251953125);
}

TEST(SafeTensors, DecodesBF16BitPatterns) {
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<std::uint16_t> bits = {
      0x3F80,  // 1.0
      0xC020,  // -2.5
      0x0001,  // smallest subnormal 2^-133
      0x0080,  // smallest normal 2^-126
      0x7F80,  // +inf
      0xFF80,  // -inf
      0x8000,  // -0
      0x7FC0,  // NaN
      0x3EAB,  // 0.333984375
  };
  const std::vector<double> d = decode16("BF16", bits);
  ASSERT_EQ(d.size(), 9u);
  EXPECT_EQ(d[0], 1.0);
  EXPECT_EQ(d[1], -2.5);
  EXPECT_EQ(d[2], std::ldexp(1.0, -133));
  EXPECT_EQ(d[3], std::ldexp(1.0, -126));
  EXPECT_EQ(d[4], inf);
  EXPECT_EQ(d[5], -inf);
  EXPECT_EQ(d[6], 0.0);
  EXPECT_TRUE(std::signbit(d[6]));
  EXPECT_TRUE(std::isnan(d[7]));
  EXPECT_EQ(d[8], 0.333984375);
}

TEST(SafeTensors, DataOffsetIsEightByteAligned) {
  // Names of every length mod 8 move the unpadded header end through all residues.
  for (int len = 1; len <= 16; ++len) {
    SafeTensors st;
    const float v = 1.0f;
    st.put(std::string(size_t(len), 'n'), {1}, &v);
    if (len % 2) st.metadata["k"] = std::string(size_t(len), 'm');
    const std::vector<std::uint8_t> bytes = st.serialize();
    const std::uint64_t n = header_length(bytes);
    EXPECT_EQ((8 + n) % 8, 0u) << "name length " << len;
    ASSERT_EQ(bytes.size(), 8 + n + 4) << "name length " << len;
    float back = 0;
    std::memcpy(&back, bytes.data() + 8 + n, 4);
    EXPECT_EQ(back, 1.0f);
    // The padding is whitespace a JSON parser ignores.
    const SafeTensors parsed = SafeTensors::parse(bytes.data(), bytes.size(), "mem");
    EXPECT_EQ(parsed.at(std::string(size_t(len), 'n')).to<float>("n")[0], 1.0f);
  }
}

// ------------------------------------------------------------------ malformed files

// 8-byte little-endian length + header + `body` zero bytes.
std::vector<std::uint8_t> file_with(const std::string& header, size_t body = 0) {
  std::vector<std::uint8_t> out(8 + header.size() + body, 0);
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

std::vector<std::uint8_t> with_length(std::uint64_t claimed, size_t total) {
  std::vector<std::uint8_t> out(total, '{');
  std::memcpy(out.data(), &claimed, 8);
  return out;
}

struct Malformed {
  const char* name;
  std::vector<std::uint8_t> bytes;
  const char* expect;  // a fragment the message must contain
};

std::vector<Malformed> malformed_corpus() {
  const std::string f32_ok = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";
  return {
      {"empty", {}, "0 bytes"},
      {"shorter_than_8_bytes", {1, 0, 0, 0, 0}, "5 bytes"},
      {"header_length_past_end", with_length(100, 20), "header length"},
      {"header_length_huge", with_length(~std::uint64_t(0), 16), "header length"},
      {"header_length_2^63", with_length(std::uint64_t(1) << 63, 64), "header length"},
      {"header_empty", file_with(""), "JSON"},
      {"header_not_json", file_with("{\"a\": {\"dtype\": "), "JSON"},
      {"header_trailing_garbage", file_with("{} xyz"), "JSON"},
      {"header_is_array", file_with("[1, 2, 3]"), "not a JSON object"},
      {"header_is_string", file_with("\"tensor\""), "not a JSON object"},
      {"tensor_entry_not_object", file_with(R"({"a": 5})", 8), "'a'"},
      {"missing_dtype", file_with(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8), "dtype"},
      {"missing_shape", file_with(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", 8), "shape"},
      {"missing_data_offsets", file_with(R"({"a":{"dtype":"F32","shape":[2]}})", 8),
       "data_offsets"},
      {"unknown_dtype", file_with(R"({"a":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}})", 2),
       "F8"},
      {"dtype_not_string", file_with(R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8),
       "dtype"},
      {"dtype_lowercase", file_with(R"({"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", 8),
       "f32"},
      {"shape_not_list", file_with(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8),
       "shape"},
      {"negative_dim", file_with(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
       "-2"},
      {"non_integer_dim",
       file_with(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8), "2.5"},
      {"string_dim", file_with(R"({"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", 8),
       "'a'"},
      {"dims_overflow",
       file_with(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})",
                 8),
       "'a'"},
      {"offsets_reversed",
       file_with(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "'a'"},
      {"offsets_past_end",
       file_with(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 8), "'a'"},
      {"offsets_negative",
       file_with(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8), "'a'"},
      {"offsets_three", file_with(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})", 8),
       "'a'"},
      {"offsets_not_integer",
       file_with(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}})", 8), "'a'"},
      {"length_not_shape_times_dtype",
       file_with(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 12), "'a'"},
      {"length_short_for_f64",
       file_with(R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}})", 8), "'a'"},
      {"overlapping_tensors",
       file_with(
           R"({"a":{)" + f32_ok + R"(},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
           12),
       "overlap"},
      {"identical_ranges", file_with(R"({"a":{)" + f32_ok + R"(},"b":{)" + f32_ok + "}}", 8),
       "overlap"},
      {"gap_between_tensors",
       file_with(
           R"({"a":{)" + f32_ok + R"(},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})",
           16),
       "unreferenced"},
      {"bytes_after_last_tensor", file_with(R"({"a":{)" + f32_ok + "}}", 12), "unreferenced"},
      {"data_without_tensors", file_with("{}", 4), "unreferenced"},
      {"metadata_non_string_value", file_with(R"({"__metadata__":{"step":3}})"), "step"},
      {"metadata_null_value", file_with(R"({"__metadata__":{"k":null}})"), "'k'"},
      {"metadata_not_object", file_with(R"({"__metadata__":"x"})"), "__metadata__"},
  };
}

class MalformedFile : public testing::TestWithParam<Malformed> {};

TEST_P(MalformedFile, RejectedWithOneLineErrorNamingTheFile) {
  const Malformed& m = GetParam();
  const std::string what = "/data/corrupt-" + std::string(m.name) + ".safetensors";
  try {
    const SafeTensors st = SafeTensors::parse(m.bytes.data(), m.bytes.size(), what);
    FAIL() << m.name << ": accepted, with " << st.tensors.size() << " tensors";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(what, 0), 0u) << "message must start with the file name: " << msg;
    EXPECT_NE(msg.find(m.expect), std::string::npos) << "expected '" << m.expect << "' in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message must be one line: " << msg;
  } catch (const std::exception& e) {
    FAIL() << m.name << ": threw a " << typeid(e).name() << " instead of mtp::Error: " << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Corpus, MalformedFile, testing::ValuesIn(malformed_corpus()),
                         [](const testing::TestParamInfo<Malformed>& info) {
                           std::string n = info.param.name;
                           for (char& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

// Every truncation of a valid file is rejected cleanly (or, at the full length, accepted).
TEST(SafeTensors, EveryTruncationRejected) {
  const std::vector<std::uint8_t> bytes = sample().serialize();
  for (size_t n = 0; n < bytes.size(); ++n) {
    // A copy of exactly n bytes, so reading past it would be caught by sanitizers.
    const std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + std::ptrdiff_t(n));
    EXPECT_THROW(SafeTensors::parse(cut.data(), cut.size(), "cut"), Error) << n << " bytes";
  }
  EXPECT_NO_THROW(SafeTensors::parse(bytes.data(), bytes.size(), "full"));
}

// ---------------------------------------------------------------------- save / load

TEST(SafeTensors, SaveLoadRoundTrip) {
  TempDir dir;
  const fs::path p = dir.path() / "weights.safetensors";
  const SafeTensors st = sample();
  st.save(p.string());
  expect_same(st, SafeTensors::load(p.string()));
  EXPECT_EQ(read_bytes(p), st.serialize());
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"weights.safetensors"})
      << "save() must leave no temporary file";
}

// Loading (to<S>) refuses what decoding lets through: a NaN or infinite weight, or a
// double beyond float's range, named with its index.
TEST(SafeTensors, LoadingRefusesNonFiniteValuesNamingTheIndex) {
  for (const double bad : {std::nan(""), std::numeric_limits<double>::infinity(), 1e300}) {
    const std::vector<double> v = {0.5, -1.0, bad, 2.0};
    SafeTensors st;
    st.put("w", {4}, v.data());
    const std::vector<std::uint8_t> bytes = st.serialize();
    const SafeTensors back = SafeTensors::parse(bytes.data(), bytes.size(), "m.safetensors");
    if (std::isfinite(bad)) {
      EXPECT_EQ(back.at("w").to<double>("w")[2], bad);
    } else {
      try {
        back.at("w").to<double>("m.safetensors: tensor 'w'");
        ADD_FAILURE() << "accepted " << bad;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("m.safetensors: tensor 'w' holds a non-finite value"),
                  std::string::npos)
            << e.what();
        EXPECT_NE(std::string(e.what()).find("at flat index 2"), std::string::npos) << e.what();
      }
    }
    EXPECT_THROW(back.at("w").to<float>("w"), Error) << bad << " does not fit a float";
  }
}

// A zero-sized dimension is an empty tensor with no bytes, whatever its other
// dimensions: valid, as the reference implementation has it.
TEST(SafeTensors, ZeroSizedDimensionIsAnEmptyTensor) {
  for (const std::string shape : {"[0]", "[3,0]", "[0,5,7]", "[1000000,0]"}) {
    const std::string header =
        R"({"e":{"dtype":"F32","shape":)" + shape + R"(,"data_offsets":[0,0]}})";
    std::vector<std::uint8_t> bytes(8);
    const std::uint64_t n = header.size();
    std::memcpy(bytes.data(), &n, 8);
    bytes.insert(bytes.end(), header.begin(), header.end());
    const SafeTensors st = SafeTensors::parse(bytes.data(), bytes.size(), "empty.safetensors");
    EXPECT_EQ(st.at("e").numel(), 0) << shape;
    EXPECT_TRUE(st.at("e").to<float>("e").empty()) << shape;
  }
  // Nonzero dimensions whose product overflows are still refused.
  const std::string header =
      R"({"e":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})";
  std::vector<std::uint8_t> bytes(8);
  const std::uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  bytes.insert(bytes.end(), header.begin(), header.end());
  EXPECT_THROW(SafeTensors::parse(bytes.data(), bytes.size(), "huge"), Error);
}

TEST(SafeTensors, SaveReplacesAnExistingFileAtomically) {
  TempDir dir;
  const fs::path p = dir.path() / "model.safetensors";
  SafeTensors first;
  const std::vector<float> a(64, 1.0f);
  first.put("w", {64}, a.data());
  first.save(p.string());
  const std::vector<std::uint8_t> first_bytes = read_bytes(p);

  // A reader that opened the old file keeps seeing the complete old contents: the new
  // file is renamed over the old one, never written into it.
  std::ifstream reader(p, std::ios::binary);
  ASSERT_TRUE(reader);

  SafeTensors second;
  const std::vector<double> b = {2.0, 3.0};
  second.put("v", {2}, b.data());
  second.metadata["step"] = "2";
  second.save(p.string());

  const std::vector<std::uint8_t> old_view{std::istreambuf_iterator<char>(reader),
                                           std::istreambuf_iterator<char>()};
  EXPECT_EQ(old_view, first_bytes);
  expect_same(second, SafeTensors::load(p.string()));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.safetensors"});
}

TEST(SafeTensors, SaveIntoMissingFolderThrowsNamingThePath) {
  TempDir dir;
  const fs::path p = dir.path() / "no-such-folder" / "x.safetensors";
  try {
    sample().save(p.string());
    FAIL() << "saving into a missing folder must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
  }
  EXPECT_TRUE(dir.entries().empty());
}

TEST(SafeTensors, LoadMissingFileThrowsNamingThePath) {
  TempDir dir;
  const std::string p = (dir.path() / "missing.safetensors").string();
  try {
    SafeTensors::load(p);
    FAIL() << "loading a missing file must throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(p), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(SafeTensors, LoadCorruptFileThrowsNamingThePath) {
  TempDir dir;
  const fs::path p = dir.path() / "junk.safetensors";
  {
    std::ofstream out(p, std::ios::binary);
    out << "this is not a safetensors file at all";
  }
  try {
    SafeTensors::load(p.string());
    FAIL() << "a text file must not load";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
  }
}

// Library bug (reported, not fixed here): load() of a folder lets the
// std::ios_base::failure of basic_filebuf escape ("basic_filebuf::underflow error
// reading the file: Is a directory"), which neither is an mtp::Error nor names the path.
// Enable once SafeTensors::load checks for a regular file.
TEST(SafeTensors, LoadFolderThrowsErrorNamingThePath) {
  TempDir dir;
  try {
    SafeTensors::load(dir.path().string());
    FAIL() << "loading a folder must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path().string()), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    FAIL() << "threw " << typeid(e).name() << " instead of mtp::Error: " << e.what();
  }
}

}  // namespace
}  // namespace mtp
