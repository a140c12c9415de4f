// Fuzz target: the safetensors reader on arbitrary bytes. A malformed file must end in
// an mtp::Error (one line naming what is wrong), never a crash, a sanitizer report or
// any other exception; a file it accepts must convert and round-trip unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "mtp/core/error.hpp"
#include "mtp/core/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  mtp::SafeTensors file;
  try {
    file = mtp::SafeTensors::parse(data, size, "fuzz input");
  } catch (const mtp::Error&) {
    return 0;  // refused cleanly
  }
  for (const auto& [name, t] : file.tensors) {
    try {
      const std::vector<double> v = t.to<double>(name);
      if (mtp::index_t(v.size()) != t.numel()) std::abort();
    } catch (const mtp::Error&) {
      // an integer dtype: not convertible to floating point, refused by name
    }
  }
  // What was accepted serialises to a file that reads back the same.
  const std::vector<std::uint8_t> bytes = file.serialize();
  const mtp::SafeTensors again = mtp::SafeTensors::parse(bytes.data(), bytes.size(), "round trip");
  if (again.tensors.size() != file.tensors.size() || again.metadata != file.metadata) std::abort();
  for (const auto& [name, t] : file.tensors) {
    const mtp::StoredTensor& u = again.at(name);
    if (u.dtype != t.dtype || u.shape != t.shape || u.bytes != t.bytes) std::abort();
  }
  return 0;
}
