#include "mtp/experiments/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "mtp/core/error.hpp"

extern char** environ;

namespace mtp::exp {
namespace {

// What the child reports through the exec pipe when it cannot start: the step that
// failed and its errno.
struct ChildFailure {
  int step;  // 0: chdir, 1: open the output file, 2: exec
  int err;
};

std::vector<std::string> environment_with(const std::vector<std::string>& add) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const std::string& a : add) replaced |= a.substr(0, a.find('=')) == name;
    if (!replaced) env.push_back(entry);
  }
  env.insert(env.end(), add.begin(), add.end());
  return env;
}

// Where `program` may be: itself when it names a path, else each folder of PATH.
std::vector<std::string> executable_candidates(const std::string& program) {
  if (program.find('/') != std::string::npos) return {program};
  const char* path = std::getenv("PATH");
  std::string folders = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
  std::vector<std::string> out;
  size_t at = 0;
  for (;;) {
    const size_t colon = folders.find(':', at);
    const std::string folder = folders.substr(at, colon - at);
    out.push_back((folder.empty() ? "." : folder) + "/" + program);
    if (colon == std::string::npos) return out;
    at = colon + 1;
  }
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (std::string& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

pid_t spawn_process(const std::string& program, const std::vector<std::string>& args,
                    const ProcessOptions& o) {
  MTP_CHECK(!args.empty(), "{}: no arguments (argv[0] is required)", program);
  // Everything the child needs is built before fork: after it, only async-signal-safe
  // calls are allowed.
  std::vector<std::string> argv_storage = args, env_storage = environment_with(o.env);
  std::vector<char*> argv = c_strings(argv_storage), envp = c_strings(env_storage);
  const std::vector<std::string> candidates = executable_candidates(program);
  int report[2];
  MTP_CHECK(::pipe2(report, O_CLOEXEC) == 0, "{}: cannot start ({})", program,
            std::strerror(errno));
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(report[0]);
    ::close(report[1]);
    fail("{}: cannot start ({})", program, std::strerror(err));
  }
  if (pid == 0) {
    ::close(report[0]);
    auto give_up = [&](int step) {
      const ChildFailure f{step, errno};
      [[maybe_unused]] ssize_t n = ::write(report[1], &f, sizeof f);
      ::_exit(127);
    };
    if (o.die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
    }
    if (!o.output_file.empty()) {
      // A regular file only: a FIFO planted there must not block the child, and a device
      // must not receive its output. (O_NONBLOCK, then checked: nothing waits before.)
      const int fd = ::open(o.output_file.c_str(),
                            O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
                                (o.append_output ? O_APPEND : 0),
                            0644);
      if (fd < 0) give_up(1);
      struct stat st {};
      if (::fstat(fd, &st) != 0) give_up(1);
      if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        give_up(1);
      }
      if (!o.append_output && ::ftruncate(fd, 0) != 0) give_up(1);
      ::fcntl(fd, F_SETFL, o.append_output ? O_APPEND : 0);
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      if (fd > STDERR_FILENO) ::close(fd);
    }
    // After the output file, whose path is relative to where we are.
    if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) != 0) give_up(0);
    if (o.keep_fd >= 0) ::fcntl(o.keep_fd, F_SETFD, 0);  // survives exec
    ::signal(SIGPIPE, SIG_DFL);  // mtp-exp ignores it; its children need not
    // execve on each candidate, never execvpe: that would hand a file without a valid
    // header to /bin/sh.
    int exec_errno = ENOENT;
    for (const std::string& candidate : candidates) {
      ::execve(candidate.c_str(), argv.data(), envp.data());
      if (errno != ENOENT && errno != ENOTDIR) exec_errno = errno;
    }
    errno = exec_errno;
    give_up(2);
  }
  ::close(report[1]);
  ChildFailure f{};
  ssize_t n;
  do n = ::read(report[0], &f, sizeof f);
  while (n < 0 && errno == EINTR);
  ::close(report[0]);
  if (n == ssize_t(sizeof f)) {
    ::waitpid(pid, nullptr, 0);
    if (f.step == 0) fail("{}: cannot start in {} ({})", program, o.cwd, std::strerror(f.err));
    if (f.step == 1)
      fail("{}: cannot write its output to {} ({})", program, o.output_file,
           f.err == EINVAL ? "not a regular file" : std::strerror(f.err));
    fail("{}: cannot run ({})", program, std::strerror(f.err));
  }
  return pid;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string shell_word(const std::string& s) {
  const bool plain = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("_-./=,:+@%", c) != nullptr;
  });
  return plain ? s : shell_quote(s);
}

int wait_process(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) fail("waitpid failed ({})", std::strerror(errno));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int run_process(const std::string& program, const std::vector<std::string>& args,
                const ProcessOptions& options) {
  return wait_process(spawn_process(program, args, options));
}

}  // namespace mtp::exp
