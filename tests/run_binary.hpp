// Runs the real mtp-exp binary from a test: MTP_EXP_PATH, set by CMake, or the
// environment's MTP_EXP where the binary has moved (bench/gpu_bundle.sh).
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "temp_dir.hpp"

#ifndef MTP_EXP_PATH
#error "MTP_EXP_PATH must name the mtp-exp binary"
#endif

namespace mtp::test {

// The mtp-exp binary the tests run.
inline std::string mtp_exp_path() {
  const char* moved = std::getenv("MTP_EXP");
  return moved && *moved ? moved : MTP_EXP_PATH;
}

// Appends ` 'word'` to a shell command, quoting any single quotes in the word.
inline void append_shell_word(std::string& cmd, const std::string& word) {
  cmd += " '";
  for (char c : word) cmd += c == '\'' ? std::string("'\\''") : std::string(1, c);
  cmd += '\'';
}

// `cmd` through the shell; the exit status, or -1 when it did not exit normally.
inline int shell_status(const std::string& cmd) {
  const int raw = std::system(cmd.c_str());
  return raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
}

// Runs mtp-exp with `args`, stdout and stderr into `log`; returns its exit status.
inline int run_mtp_exp(const std::vector<std::string>& args, const std::filesystem::path& log) {
  std::string cmd = "exec";
  append_shell_word(cmd, mtp_exp_path());
  for (const std::string& a : args) append_shell_word(cmd, a);
  cmd += " >";
  append_shell_word(cmd, log.string());
  cmd += " 2>&1";
  return shell_status(cmd);
}

struct Result {
  int status = -1;  // exit status, or -1 if it did not exit normally
  std::string out, err;
  std::string describe() const {
    return "exit " + std::to_string(status) + "\n--- stdout\n" + out + "--- stderr\n" + err;
  }
};

// Runs mtp-exp with `args` and no stdin, in the working directory `cwd` (empty: this
// one), capturing stdout and stderr apart through two files in `scratch` that are
// removed afterwards.
inline Result run_mtp_exp_captured(const std::vector<std::string>& args,
                                   const std::filesystem::path& scratch,
                                   const std::filesystem::path& cwd = {}) {
  const std::filesystem::path out = scratch / "stdout.txt", err = scratch / "stderr.txt";
  std::string cmd;
  if (!cwd.empty()) {
    cmd = "cd";
    append_shell_word(cmd, cwd.string());
    cmd += " && ";
  }
  cmd += "exec";
  append_shell_word(cmd, mtp_exp_path());
  for (const std::string& a : args) append_shell_word(cmd, a);
  cmd += " </dev/null >";
  append_shell_word(cmd, out.string());
  cmd += " 2>";
  append_shell_word(cmd, err.string());
  Result r;
  r.status = shell_status(cmd);
  r.out = read_file(out);
  r.err = read_file(err);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}

}  // namespace mtp::test
