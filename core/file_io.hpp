// Reading whole files with errors that name the file: missing, a folder, unreadable.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mtp {

// The bytes of a regular file. Throws mtp::Error "<what> <path>: <problem>"; `what`
// is how the caller's user knows the file (a flag such as "--data", or empty).
std::vector<std::uint8_t> read_file_bytes(const std::string& path, const std::string& what = "");

}  // namespace mtp
