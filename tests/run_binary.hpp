// Runs the real mtp-exp binary (MTP_EXP_PATH, set by CMake) from a test.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace mtp::test {

// Runs mtp-exp with `args`, stdout and stderr into `log`; returns its exit status (-1
// when it did not exit normally).
inline int run_mtp_exp(const std::vector<std::string>& args, const std::filesystem::path& log) {
  std::string cmd = MTP_EXP_PATH;
  for (const std::string& a : args) cmd += " '" + a + "'";
  cmd += " > '" + log.string() + "' 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace mtp::test
