// Errors raised at the public boundary. Hot loops never throw: inputs are checked
// once, where they enter (CLI flags, files, layer shapes), and the loops trust them.
#pragma once

#include <fmt/format.h>

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

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
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
