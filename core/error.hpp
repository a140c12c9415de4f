// Errors raised at the public boundary. Hot loops never throw: inputs are checked
// once, where they enter (CLI flags, files, layer shapes), and the loops trust them.
#pragma once

#include <fmt/format.h>

#include <new>
#include <stdexcept>
#include <string>

namespace mtp {

// Something the caller got wrong in how they asked (flags, their combination).
// mtp-exp exits with status 2 on these.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Anything else that stops a run: unreadable or malformed files, shape mismatches,
// numerical failure. mtp-exp exits with status 1 on these.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The text of an exception for a user: ours as they are, and "out of memory" for
// std::bad_alloc, whose own text says nothing.
inline std::string error_message(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr) return "out of memory";
  return e.what();
}

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// nlohmann::json's message without its "[json.exception.parse_error.101] " tag: the
// part a user can act on ("parse error at line 1, column 7: syntax error ...").
inline std::string json_error_text(const std::exception& e) {
  std::string s = e.what();
  if (s.rfind("[json.exception.", 0) == 0) {
    const size_t end = s.find("] ");
    if (end != std::string::npos) s.erase(0, end + 2);
  }
  return s;
}

template <class... Args>
[[noreturn]] void usage_fail(fmt::format_string<Args...> f, Args&&... args) {
  throw UsageError(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace mtp

// Boundary check: MTP_CHECK(cond, "format {}", args...) throws mtp::Error.
#define MTP_CHECK(cond, ...)               \
  do {                                     \
    if (!(cond)) ::mtp::fail(__VA_ARGS__); \
  } while (0)
