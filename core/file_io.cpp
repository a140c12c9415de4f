#include "mtp/core/file_io.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "mtp/core/error.hpp"

namespace mtp {

std::vector<std::uint8_t> read_file_bytes(const std::string& path, const std::string& what) {
  const std::string name = what.empty() ? path : what + " " + path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("{}: is a folder, not a file", name);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open ({})", name, std::strerror(errno));
  std::vector<std::uint8_t> bytes;
  try {
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (const std::exception& e) {
    fail("{}: read error ({})", name, e.what());
  }
  if (in.bad()) fail("{}: read error", name);
  return bytes;
}

}  // namespace mtp
