// Child processes without a shell: an argument vector goes to exec as it is, so no
// file name, grid value or title is ever parsed by /bin/sh (sweep runs, gnuplot).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace mtp::exp {

struct ProcessOptions {
  std::string cwd;          // where the child starts (empty: here)
  std::string output_file;  // its stdout and stderr (empty: ours); relative to our cwd
  bool append_output = false;
  bool die_with_parent = false;  // killed (SIGKILL) when this process dies, even by SIGKILL
  int keep_fd = -1;              // a descriptor the child inherits (all others close on exec)
  std::vector<std::string> env;  // "NAME=value" added to (or replacing in) our environment
};

// Starts `program` (a path, or a name looked up in PATH) with argv = `args` (args[0] is
// the name the child sees). Throws mtp::Error naming the program when it cannot start
// (not found, not executable, the output file cannot be opened).
pid_t spawn_process(const std::string& program, const std::vector<std::string>& args,
                    const ProcessOptions& options = {});

// Waits for `pid`: its exit status, or 128 + the signal that ended it.
int wait_process(pid_t pid);

// `s` in single quotes, safe to paste into a POSIX shell (the Slurm script, the
// commands a sweep and a lock record for a user to rerun).
std::string shell_quote(const std::string& s);
// `s` as is when the shell would read it unchanged, else shell_quote(s).
std::string shell_word(const std::string& s);

// spawn_process then wait_process.
int run_process(const std::string& program, const std::vector<std::string>& args,
                const ProcessOptions& options = {});

}  // namespace mtp::exp
