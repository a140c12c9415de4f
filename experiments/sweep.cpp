#include "mtp/experiments/sweep.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/ranges.h>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <map>
#include <nlohmann/json.hpp>

#include "mtp/core/error.hpp"
#include "mtp/core/file_io.hpp"
#include "mtp/core/safetensors.hpp"
#include "mtp/experiments/cli.hpp"
#include "mtp/experiments/progress.hpp"

namespace mtp::exp {
namespace fs = std::filesystem;
namespace {

// Flags a grid may not set: the sweep owns each run's folder and thread count.
bool sweep_owned(const std::string& flag) {
  return flag == "out" || flag == "threads";
}

std::string sanitise(const std::string& s) {
  std::string out;
  for (char c : s)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ? c : '_';
  return out;
}

bool is_true(const std::string& v) {
  return v == "1" || v == "true" || v == "yes" || v == "on";
}
bool is_false(const std::string& v) {
  return v == "0" || v == "false" || v == "no" || v == "off";
}

// The headline number of a finished run, for the progress line.
std::string headline(const fs::path& result) {
  try {
    const nlohmann::json j = nlohmann::json::parse(std::ifstream(result));
    const auto& v = j.at("validation");
    if (v.contains("bits_per_byte"))
      return fmt::format("{:.4f} bits/byte", v.at("bits_per_byte").get<double>());
    return fmt::format("accuracy {:.4f}", v.at("accuracy").get<double>());
  } catch (const std::exception&) {
    return "(no result)";
  }
}

void write_text(const fs::path& p, const std::string& s) {
  write_file_atomic(p.string(), s.data(), s.size());
}

// Children die with the sweep (SIGKILL included), so a killed sweep leaves no run
// writing into a folder that the next sweep will redo.
pid_t spawn_run(const std::string& exe, const std::vector<std::string>& args, const fs::path& log,
                bool append_log) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  MTP_CHECK(pid >= 0, "sweep: fork failed ({})", std::strerror(errno));
  if (pid > 0) return pid;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);  // the sweep died before prctl
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | (append_log ? O_APPEND : O_TRUNC), 0644);
  if (fd >= 0) {
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    ::close(fd);
  }
  std::vector<char*> argv{const_cast<char*>("mtp-exp"), const_cast<char*>("train")};
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv(exe.c_str(), argv.data());
  ::_exit(127);
}

std::string self_executable() {
  std::error_code ec;
  const fs::path p = fs::read_symlink("/proc/self/exe", ec);
  MTP_CHECK(!ec, "sweep: cannot find the mtp-exp executable ({})", ec.message());
  return p.string();
}

void emit_slurm(const SweepOptions& opt, const std::vector<SweepRun>& runs) {
  const int tasks = opt.slurm_tasks > 0 ? opt.slurm_tasks : int(runs.size());
  std::string cmd =
      fmt::format("{} sweep --grid {}", shell_quote(self_executable()), shell_quote(opt.grid));
  for (const std::string& a : opt.base_args)
    fmt::format_to(std::back_inserter(cmd), " {}", shell_quote(a));
  fmt::format_to(std::back_inserter(cmd),
                 " --out {} --jobs 1 --threads {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{}\"",
                 shell_quote(fs::absolute(opt.out).string()), opt.slurm_cpus, tasks);
  const std::string script = fmt::format(
      "#!/bin/bash\n"
      "# mtp sweep over {} runs as a Slurm array of {} tasks; task i runs shard i.\n"
      "# Submit with: sbatch {}\n"
      "#SBATCH --job-name=mtp-sweep\n"
      "#SBATCH --array=0-{}\n"
      "#SBATCH --cpus-per-task={}\n"
      "#SBATCH --output={}/slurm-%A_%a.out\n"
      "set -euo pipefail\n"
      "cd {}\n"
      "{}\n",
      runs.size(), tasks, opt.emit_slurm, tasks - 1, opt.slurm_cpus, fs::absolute(opt.out).string(),
      shell_quote(fs::current_path().string()), cmd);
  std::error_code ec;
  fs::create_directories(opt.out, ec);  // Slurm opens --output before a task starts
  MTP_CHECK(!ec, "--out {}: cannot create the folder ({})", opt.out, ec.message());
  write_text(opt.emit_slurm, script);
  ::chmod(opt.emit_slurm.c_str(), 0755);
  fmt::print("wrote {}: {} runs in {} array tasks (sbatch {})\n", opt.emit_slurm, runs.size(),
             tasks, opt.emit_slurm);
}

}  // namespace

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

std::vector<GridAxis> parse_grid(const std::string& grid) {
  std::vector<GridAxis> axes;
  std::stringstream ss(grid);
  std::string part;
  const cli::TrainFlags flags;
  while (std::getline(ss, part, ';')) {
    if (part.find_first_not_of(" ") == std::string::npos) continue;
    const size_t eq = part.find('=');
    if (eq == std::string::npos) usage_fail("--grid: '{}' is not flag=v1,v2,...", part);
    GridAxis axis;
    axis.flag = part.substr(0, eq);
    axis.flag.erase(0, axis.flag.find_first_not_of(" -"));
    axis.flag.erase(axis.flag.find_last_not_of(' ') + 1);
    if (!flags.has(axis.flag) || axis.flag == "help")
      usage_fail("--grid: '{}' is not a train flag", axis.flag);
    if (sweep_owned(axis.flag))
      usage_fail("--grid: '{}' is set by the sweep for each run", axis.flag);
    for (const auto& a : axes)
      if (a.flag == axis.flag) usage_fail("--grid: '{}' appears twice", axis.flag);
    std::stringstream vs(part.substr(eq + 1));
    std::string v;
    while (std::getline(vs, v, ',')) {
      v.erase(0, v.find_first_not_of(' '));
      v.erase(v.find_last_not_of(' ') + 1);
      if (v.empty()) usage_fail("--grid: '{}' has an empty value", axis.flag);
      if (flags.is_switch(axis.flag) && !is_true(v) && !is_false(v))
        usage_fail("--grid: '{}' is a switch; its values are true or false, not '{}'", axis.flag,
                   v);
      axis.values.push_back(v);
    }
    if (axis.values.empty()) usage_fail("--grid: '{}' has no values", axis.flag);
    axes.push_back(std::move(axis));
  }
  if (axes.empty()) usage_fail("--grid is empty (expected flag=v1,v2;flag=...)");
  return axes;
}

std::vector<SweepRun> expand_grid(const std::vector<GridAxis>& axes) {
  std::vector<SweepRun> runs;
  std::vector<size_t> at(axes.size(), 0);
  for (int index = 0;; ++index) {
    SweepRun run;
    run.index = index;
    for (size_t a = 0; a < axes.size(); ++a) {
      run.point.emplace_back(axes[a].flag, axes[a].values[at[a]]);
      if (a) run.id += '_';
      run.id += sanitise(axes[a].flag);
      run.id += '-';
      run.id += sanitise(axes[a].values[at[a]]);
    }
    runs.push_back(std::move(run));
    size_t a = axes.size();
    while (a > 0 && ++at[a - 1] == axes[a - 1].values.size()) at[--a] = 0;
    if (a == 0) return runs;
  }
}

std::vector<std::string> run_arguments(const SweepRun& run, const std::vector<std::string>& base,
                                       const std::string& out, int threads) {
  const cli::TrainFlags flags;
  std::vector<std::string> args = base;
  for (const auto& [flag, value] : run.point) {
    if (flags.is_switch(flag)) {
      if (is_true(value)) args.push_back("--" + flag);
      continue;
    }
    args.push_back("--" + flag);
    args.push_back(value);
  }
  args.insert(args.end(), {"--out", out, "--threads", std::to_string(threads)});
  return args;
}

int run_sweep(const SweepOptions& opt) {
  if (opt.out.empty()) usage_fail("--out DIR is required");
  if (opt.jobs < 1) usage_fail("--jobs must be >= 1, got {}", opt.jobs);
  if (opt.shards < 1 || opt.shard < 0 || opt.shard >= opt.shards)
    usage_fail("--shard {}/{} is not i/n with 0 <= i < n", opt.shard, opt.shards);
  for (const std::string& a : opt.base_args)
    if (a == "--out" || a == "--threads" || a.rfind("--out=", 0) == 0 ||
        a.rfind("--threads=", 0) == 0)
      usage_fail("{} is set by the sweep for each run (use the sweep's --out/--threads)", a);
  const std::vector<GridAxis> axes = parse_grid(opt.grid);
  const std::vector<SweepRun> runs = expand_grid(axes);
  const int threads =
      opt.threads > 0 ? opt.threads : std::max(1, int(::sysconf(_SC_NPROCESSORS_ONLN)) / opt.jobs);
  // Every run's flags must parse and validate before any run starts.
  const fs::path root(opt.out);
  for (const SweepRun& run : runs) {
    try {
      validate(cli::parse_train_args(run_arguments(run, opt.base_args, "x", threads)));
    } catch (const UsageError& e) {
      usage_fail("sweep run {}: {}", run.id, e.what());
    }
  }
  if (!opt.emit_slurm.empty()) {
    emit_slurm(opt, runs);
    return 0;
  }

  // Resuming (or growing the grid, e.g. more seeds) is fine; changing the flags every
  // run shares is not: finished runs would be kept under other settings.
  if (fs::exists(root / "sweep.json")) {
    nlohmann::json before;
    try {
      before = nlohmann::json::parse(read_file_bytes((root / "sweep.json").string()));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not valid JSON ({})", (root / "sweep.json").string(), e.what());
    }
    if (before.value("base_args", std::vector<std::string>{}) != opt.base_args)
      usage_fail(
          "{} holds a sweep run with other shared flags ({}); use the same flags to resume "
          "it, or another --out",
          opt.out, fmt::join(before.value("base_args", std::vector<std::string>{}), " "));
  }
  std::error_code ec;
  fs::create_directories(root / "runs", ec);
  MTP_CHECK(!ec, "--out {}: cannot create the folder ({})", opt.out, ec.message());
  nlohmann::json axes_json = nlohmann::json::array();
  for (const GridAxis& a : axes) axes_json.push_back({{"flag", a.flag}, {"values", a.values}});
  nlohmann::json run_ids = nlohmann::json::array();
  for (const SweepRun& r : runs) run_ids.push_back(r.id);
  write_text(root / "sweep.json", nlohmann::json{{"grid", opt.grid},
                                                 {"axes", axes_json},
                                                 {"base_args", opt.base_args},
                                                 {"command", opt.command_line},
                                                 {"runs", run_ids}}
                                          .dump(2) +
                                      "\n");

  std::vector<const SweepRun*> todo;
  int already = 0, mine = 0;
  for (const SweepRun& r : runs) {
    if (r.index % opt.shards != opt.shard) continue;
    ++mine;
    if (fs::exists(root / "runs" / r.id / "result.json"))
      ++already;
    else
      todo.push_back(&r);
  }
  fmt::print("sweep: {} runs{}; {} already finished, {} to run, {} at a time, {} threads each\n",
             runs.size(),
             opt.shards > 1 ? fmt::format(" (shard {}/{}: {})", opt.shard, opt.shards, mine) : "",
             already, todo.size(), opt.jobs, threads);
  std::fflush(stdout);

  using clock = std::chrono::steady_clock;
  const std::string exe = self_executable();
  const auto t0 = clock::now();
  std::map<pid_t, std::pair<const SweepRun*, clock::time_point>> running;
  size_t next = 0;
  int done = 0, failed = 0;
  while (next < todo.size() || !running.empty()) {
    while (next < todo.size() && int(running.size()) < opt.jobs) {
      const SweepRun* r = todo[next++];
      const fs::path dir = root / "runs" / r->id;
      fs::create_directories(dir, ec);
      MTP_CHECK(!ec, "{}: cannot create the folder ({})", dir.string(), ec.message());
      // A run killed after writing a training state (--checkpoint-every) continues from
      // it rather than starting over.
      const bool resume = fs::exists(dir / "training-state.safetensors");
      const std::vector<std::string> args =
          resume ? std::vector<std::string>{"--resume", dir.string(), "--threads",
                                            std::to_string(threads)}
                 : run_arguments(*r, opt.base_args, dir.string(), threads);
      const pid_t pid = spawn_run(exe, args, dir / "log.txt", resume);
      running[pid] = {r, clock::now()};
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      fail("sweep: waitpid failed ({})", std::strerror(errno));
    }
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const auto [r, started] = it->second;
    running.erase(it);
    ++done;
    const double secs = std::chrono::duration<double>(clock::now() - started).count();
    const fs::path dir = root / "runs" / r->id;
    const bool ok =
        WIFEXITED(status) && WEXITSTATUS(status) == 0 && fs::exists(dir / "result.json");
    failed += !ok;
    const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
    const double eta = elapsed / done * double(todo.size() - size_t(done));
    fmt::print("[{}/{}] {}: {} ({})\n", done, todo.size(), r->id,
               ok ? headline(dir / "result.json")
                  : fmt::format("FAILED (exit {}; see {})",
                                WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
                                (dir / "log.txt").string()),
               format_duration(secs));
    fmt::print("sweep: {}/{} done, {} failed, elapsed {}, eta {}\n", already + done, mine, failed,
               format_duration(elapsed), format_duration(eta));
    std::fflush(stdout);
  }
  fmt::print("sweep: finished{}; summarise with: mtp-exp report {}\n",
             failed ? fmt::format(" with {} failed runs", failed) : "", opt.out);
  return failed;
}

}  // namespace mtp::exp
