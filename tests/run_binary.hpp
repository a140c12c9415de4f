// Runs the real mtp-exp binary from a test: MTP_EXP_PATH, set by CMake, or the
// environment's MTP_EXP where the binary has moved (bench/gpu_bundle.sh). Children are
// started with fork and exec, never through a shell, so any argument (quotes, spaces,
// `;`) reaches mtp-exp as it is.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "temp_dir.hpp"

#ifndef MTP_EXP_PATH
#error "MTP_EXP_PATH must name the mtp-exp binary"
#endif

extern char** environ;

namespace mtp::test {

// The mtp-exp binary the tests run.
inline std::string mtp_exp_path() {
  const char* moved = std::getenv("MTP_EXP");
  return moved && *moved ? moved : MTP_EXP_PATH;
}

struct RunOptions {
  std::filesystem::path cwd;       // where it runs (empty: here)
  std::vector<std::string> env;    // "NAME=value" added to (or replacing in) the environment
  long long file_size_limit = -1;  // RLIMIT_FSIZE: writes past it fail as on a full disk
  std::string stdin_path = "/dev/null";
};

// Starts mtp-exp with `args`, stdout into `out` and stderr into `err` (the same file
// when `err` is empty). Returns the child's pid.
inline pid_t spawn_mtp_exp(const std::vector<std::string>& args, const std::filesystem::path& out,
                           const std::filesystem::path& err = {}, const RunOptions& o = {}) {
  const std::string exe = mtp_exp_path();
  std::vector<std::string> argv_s = {exe};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<std::string> env_s;
  const auto named = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  for (char** e = environ; e && *e; ++e) {
    bool replaced = false;
    for (const std::string& mine : o.env) replaced |= named(mine) == named(*e);
    if (!replaced) env_s.emplace_back(*e);
  }
  env_s.insert(env_s.end(), o.env.begin(), o.env.end());
  std::vector<char*> argv, envp;
  for (std::string& a : argv_s) argv.push_back(a.data());
  for (std::string& e : env_s) envp.push_back(e.data());
  argv.push_back(nullptr);
  envp.push_back(nullptr);
  const std::string out_s = out.string(), err_s = err.string(), cwd_s = o.cwd.string();
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  const int in_fd = ::open(o.stdin_path.c_str(), O_RDONLY);
  const int out_fd = ::open(out_s.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int err_fd =
      err_s.empty() ? out_fd : ::open(err_s.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (in_fd < 0 || out_fd < 0 || err_fd < 0) ::_exit(126);
  ::dup2(in_fd, STDIN_FILENO);
  ::dup2(out_fd, STDOUT_FILENO);
  ::dup2(err_fd, STDERR_FILENO);
  if (!cwd_s.empty() && ::chdir(cwd_s.c_str()) != 0) ::_exit(126);
  if (o.file_size_limit >= 0) {
    ::signal(SIGXFSZ, SIG_IGN);  // a write past the limit fails with EFBIG instead
    const rlimit lim{rlim_t(o.file_size_limit), rlim_t(o.file_size_limit)};
    ::setrlimit(RLIMIT_FSIZE, &lim);
  }
  ::execve(exe.c_str(), argv.data(), envp.data());
  ::_exit(127);
}

// Waits for a child: its exit status, or -1 when a signal ended it.
inline int wait_status(pid_t pid) {
  int raw = 0;
  while (::waitpid(pid, &raw, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
}

// Runs mtp-exp with `args`, stdout and stderr into `log`; returns its exit status.
inline int run_mtp_exp(const std::vector<std::string>& args, const std::filesystem::path& log,
                       const RunOptions& o = {}) {
  return wait_status(spawn_mtp_exp(args, log, {}, o));
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
                                   const std::filesystem::path& cwd = {}, RunOptions o = {}) {
  const std::filesystem::path out = scratch / "stdout.txt", err = scratch / "stderr.txt";
  if (!cwd.empty()) o.cwd = cwd;
  Result r;
  r.status = wait_status(spawn_mtp_exp(args, out, err, o));
  r.out = read_file(out);
  r.err = read_file(err);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}

}  // namespace mtp::test
