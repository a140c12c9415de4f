#include "mtp/experiments/sweep.hpp"

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
#include "mtp/core/sha256.hpp"
#include "mtp/experiments/cli.hpp"
#include "mtp/experiments/json_file.hpp"
#include "mtp/experiments/process.hpp"
#include "mtp/experiments/progress.hpp"
#include "mtp/experiments/run_folder.hpp"

namespace mtp::exp {
namespace fs = std::filesystem;
namespace {

// Flags a grid may not set: the sweep owns each run's folder and thread count.
bool sweep_owned(const std::string& flag) {
  return flag == "out" || flag == "threads";
}

// A grid value as part of a folder name: as it is when it holds only letters, digits,
// '.' and '-' (and is short); otherwise those kept, the rest as '_', and a hash of the
// whole value, so that two values never share a folder ("a b.txt" and "a_b.txt").
std::string folder_word(const std::string& v) {
  const auto plain = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
  };
  if (!v.empty() && v.size() <= 64 && std::all_of(v.begin(), v.end(), plain)) return v;
  std::string out;
  for (char c : v.substr(0, 48)) out += plain(c) ? c : '_';
  return out + "_" + sha256_hex(v.data(), v.size()).substr(0, 8);
}

bool is_true(const std::string& v) {
  return v == "1" || v == "true" || v == "yes" || v == "on";
}
bool is_false(const std::string& v) {
  return v == "0" || v == "false" || v == "no" || v == "off";
}

// The headline number of a finished run (its parsed result.json), for the progress line.
std::string headline(const nlohmann::json& result) {
  try {
    const nlohmann::json& v = json_member(result, "validation", "result");
    if (v.contains("bits_per_byte"))
      return fmt::format("{:.4f} bits/byte", json_field<double>(v, "bits_per_byte", "result"));
    return fmt::format("accuracy {:.4f}", json_field<double>(v, "accuracy", "result"));
  } catch (const Error&) {
    return "(no result)";
  }
}

std::string self_executable() {
  std::error_code ec;
  const fs::path p = fs::read_symlink("/proc/self/exe", ec);
  MTP_CHECK(!ec, "sweep: cannot find the mtp-exp executable ({})", ec.message());
  return p.string();
}

bool has_control_character(const std::string& s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// An absolute path, naming the flag when it cannot be made (the working folder is gone).
std::string absolute_path(const std::string& path, const char* flag) {
  std::error_code ec;
  const fs::path p = fs::absolute(path, ec);
  MTP_CHECK(!ec, "--{} {}: cannot make the path absolute ({})", flag, path, ec.message());
  return p.string();
}

void emit_slurm(const SweepOptions& opt, const std::vector<SweepRun>& runs) {
  const int tasks = opt.slurm_tasks > 0 ? opt.slurm_tasks : int(runs.size());
  // Everything the script names is quoted for bash, but Slurm reads its #SBATCH lines
  // itself (no quoting, % patterns): the output folder must need none, and no name may
  // break a line.
  const std::string out = absolute_path(opt.out, "out");
  if (out.find_first_of(" \t'\"\\%") != std::string::npos || has_control_character(out))
    usage_fail(
        "--out {}: a Slurm script's #SBATCH --output cannot name a folder with spaces, "
        "quotes, '%' or control characters; use another folder",
        out);
  if (has_control_character(opt.emit_slurm))
    usage_fail("--emit-slurm: the file name holds a control character");
  std::error_code ec;
  const fs::path here = fs::current_path(ec);
  MTP_CHECK(!ec, "--emit-slurm: cannot find the working folder ({})", ec.message());
  // A script sent to a descriptor or device (/dev/stdout | sbatch) has no name to submit.
  const bool named_file =
      opt.emit_slurm.rfind("/dev/", 0) != 0 && opt.emit_slurm.rfind("/proc/", 0) != 0;
  std::string cmd =
      fmt::format("{} sweep --grid {}", shell_quote(self_executable()), shell_quote(opt.grid));
  for (const std::string& a : opt.base_args)
    fmt::format_to(std::back_inserter(cmd), " {}", shell_quote(a));
  fmt::format_to(std::back_inserter(cmd),
                 " --out {} --jobs 1 --threads {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{}\"",
                 shell_quote(out), opt.threads > 0 ? opt.threads : opt.slurm_cpus, tasks);
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
      runs.size(), tasks, named_file ? opt.emit_slurm : "<this script>", tasks - 1, opt.slurm_cpus,
      out, shell_quote(here.string()), cmd);
  fs::create_directories(opt.out, ec);  // Slurm opens --output before a task starts
  MTP_CHECK(!ec, "--out {}: cannot create the folder ({})", opt.out, ec.message());
  write_file_atomic(opt.emit_slurm, script, WriteOptions::user_named());
  struct stat st {};
  if (::stat(opt.emit_slurm.c_str(), &st) == 0 && S_ISREG(st.st_mode))
    ::chmod(opt.emit_slurm.c_str(), 0755);
  // On stderr: the script itself may have gone to standard output (/dev/stdout | sbatch).
  fmt::print(stderr, "wrote {}: {} runs in {} array tasks{}\n", opt.emit_slurm, runs.size(), tasks,
             named_file ? fmt::format(" (sbatch {})", opt.emit_slurm) : "");
}

}  // namespace

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
      // A value listed twice is one run, not two runs into one folder.
      if (std::find(axis.values.begin(), axis.values.end(), v) == axis.values.end())
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
      run.id += axes[a].flag;  // a train flag: letters and '-'
      run.id += '-';
      run.id += folder_word(axes[a].values[at[a]]);
    }
    runs.push_back(std::move(run));
    size_t a = axes.size();
    while (a > 0 && ++at[a - 1] == axes[a - 1].values.size()) at[--a] = 0;
    if (a == 0) return runs;
  }
}

std::string expand_placeholders(const std::string& text,
                                const std::vector<std::pair<std::string, std::string>>& point) {
  const cli::TrainFlags flags;
  std::string out;
  size_t at = 0;
  while (at < text.size()) {
    const size_t open = text.find('{', at);
    const size_t close = open == std::string::npos ? open : text.find('}', open);
    if (close == std::string::npos) break;
    std::string name = text.substr(open + 1, close - open - 1);
    std::replace(name.begin(), name.end(), '_', '-');  // {decay_spread} is {decay-spread}
    const auto axis =
        std::find_if(point.begin(), point.end(), [&](const auto& fv) { return fv.first == name; });
    out.append(text, at, open - at);
    const bool word = !name.empty() && std::all_of(name.begin(), name.end(), [](char ch) {
      return std::islower(static_cast<unsigned char>(ch)) ||
             std::isdigit(static_cast<unsigned char>(ch)) || ch == '-';
    });
    if (axis != point.end()) {
      out += axis->second;
    } else if (word) {  // {cel}: a typo, or a flag the grid does not set
      std::string axes;
      for (const auto& fv : point) {
        if (!axes.empty()) axes += ", ";
        axes += fv.first;
      }
      usage_fail("'{}' holds {{{}}}, which names no axis of the grid ({}) to fill it from", text,
                 name, axes);
    } else {
      out.append(text, open, close + 1 - open);  // other braces are text: "{}", "{a b}"
    }
    at = close + 1;
  }
  out.append(text, std::min(at, text.size()));
  return out;
}

std::vector<std::pair<std::string, std::string>> templated_flags(
    const std::vector<std::string>& base) {
  const cli::TrainFlags flags;
  const auto has_placeholder = [&](const std::string& v) {
    for (size_t open = v.find('{'); open != std::string::npos; open = v.find('{', open + 1)) {
      const size_t close = v.find('}', open);
      if (close == std::string::npos) break;
      std::string name = v.substr(open + 1, close - open - 1);
      std::replace(name.begin(), name.end(), '_', '-');
      if (!name.empty() && flags.has(name)) return true;
    }
    return false;
  };
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i < base.size(); ++i) {
    if (base[i].rfind("--", 0) != 0) continue;
    const size_t eq = base[i].find('=');
    std::string flag = base[i].substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    std::string value;
    if (eq != std::string::npos)
      value = base[i].substr(eq + 1);
    else if (!flags.is_switch(flag) && i + 1 < base.size())
      value = base[++i];
    if (has_placeholder(value)) out.emplace_back(std::move(flag), std::move(value));
  }
  return out;
}

std::vector<std::string> run_arguments(const SweepRun& run, const std::vector<std::string>& base,
                                       const std::string& out, int threads) {
  const cli::TrainFlags flags;
  std::vector<std::string> args;
  for (const std::string& a : base) args.push_back(expand_placeholders(a, run.point));
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

namespace {

// Shared flags as a sorted list of "--flag=value" (and bare switches), so that the
// same flags in another order or spelling ("--steps 40", "--steps=40") compare equal.
std::vector<std::string> normalized_flags(const std::vector<std::string>& args) {
  const cli::TrainFlags flags;
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i] == "-K" ? "--perspectives" : args[i];
    if (a.rfind("--", 0) == 0 && a.find('=') == std::string::npos &&
        !flags.is_switch(a.substr(2)) && i + 1 < args.size())
      a += "=" + args[++i];
    out.push_back(a);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// sweep.json records the grid and the flags every run shares. Checking it and writing
// it is one step under the sweep folder's lock, so two sweeps started together cannot
// both find it absent: the second sees the first's flags, and with other flags it is
// refused. Shards of one sweep (the same flags) pass, and run side by side.
void record_sweep(const SweepOptions& opt, const std::vector<GridAxis>& axes,
                  const std::vector<SweepRun>& runs) {
  const fs::path root(opt.out);
  const FolderLock lock = FolderLock::wait(root, "--out " + opt.out, ".sweep.lock");
  const fs::path record = root / "sweep.json";
  // The runs and commands of every sweep with these flags that used the folder: a sweep
  // with another grid (more seeds, run at the same time or later) adds to them.
  std::vector<std::string> run_ids, commands;
  std::error_code ec;
  if (fs::exists(record, ec)) {
    const nlohmann::json before = read_json_file(record.string());
    const auto shared = json_field<std::vector<std::string>>(before, "base_args", record.string());
    if (normalized_flags(shared) != normalized_flags(opt.base_args))
      usage_fail(
          "{} holds a sweep run with other shared flags ({}); use the same flags to resume "
          "it, or another --out",
          opt.out, shared.empty() ? "none" : fmt::format("{}", fmt::join(shared, " ")));
    run_ids = json_field<std::vector<std::string>>(before, "runs", record.string());
    commands =
        before.contains("commands")
            ? json_field<std::vector<std::string>>(before, "commands", record.string())
            : std::vector<std::string>{json_field<std::string>(before, "command", record.string())};
  }
  for (const SweepRun& r : runs)
    if (std::find(run_ids.begin(), run_ids.end(), r.id) == run_ids.end()) run_ids.push_back(r.id);
  if (std::find(commands.begin(), commands.end(), opt.command_line) == commands.end())
    commands.push_back(opt.command_line);
  fs::create_directories(root / "runs", ec);
  MTP_CHECK(!ec, "--out {}: cannot create the folder ({})", opt.out, ec.message());
  nlohmann::json axes_json = nlohmann::json::array();
  for (const GridAxis& a : axes) axes_json.push_back({{"flag", a.flag}, {"values", a.values}});
  write_file_atomic(record.string(), nlohmann::json{{"grid", opt.grid},
                                                    {"axes", axes_json},
                                                    {"base_args", opt.base_args},
                                                    {"command", opt.command_line},
                                                    {"commands", commands},
                                                    {"runs", run_ids}}
                                             .dump(2) +
                                         "\n");
}

// What a sweep does with one run's folder, decided with the run's lock held.
enum class RunAction { skip_done, start, restart, resume, refuse };

RunAction decide(const RunFolderStatus& s, const nlohmann::json& expected, std::string& why) {
  if (s.run_files.empty()) return RunAction::start;
  if (!s.config.is_null() && run_settings(s.config) != expected) {
    why = "the folder holds a run with other settings; remove it or use another --out";
    return RunAction::refuse;
  }
  if (s.state == RunState::finished) return RunAction::skip_done;
  // A run killed after writing its training state continues from it; one that failed,
  // left nothing to continue from, or whose config.json cannot be read starts over.
  if (s.resumable && s.state != RunState::failed && !s.config.is_null()) return RunAction::resume;
  return RunAction::restart;
}

struct SweepTally {
  int done = 0, failed = 0;
  std::vector<std::string> failures;  // "id (see log)"
};

}  // namespace

int run_sweep(const SweepOptions& opt) {
  if (opt.out.empty()) usage_fail("--out DIR is required");
  if (opt.jobs < 1) usage_fail("--jobs must be >= 1, got {}", opt.jobs);
  if (opt.shards < 1 || opt.shard < 0 || opt.shard >= opt.shards)
    usage_fail("--shard {}/{} is not i/n with 0 <= i < n", opt.shard, opt.shards);
  for (const std::string& a : opt.base_args)
    if (a == "--out" || a == "--threads" || a == "--resume" || a == "--overwrite" ||
        a.rfind("--out=", 0) == 0 || a.rfind("--threads=", 0) == 0 || a.rfind("--resume=", 0) == 0)
      usage_fail("{} is set by the sweep for each run", a);
  const std::vector<GridAxis> axes = parse_grid(opt.grid);
  const std::vector<SweepRun> runs = expand_grid(axes);
  const int threads =
      opt.threads > 0 ? opt.threads : std::max(1, int(::sysconf(_SC_NPROCESSORS_ONLN)) / opt.jobs);
  // Every run's flags must parse and validate before any run starts, and every run must
  // be a configuration of its own in a folder of its own.
  const fs::path root(opt.out);
  std::vector<nlohmann::json> expected;
  std::map<std::string, const SweepRun*> by_id;
  for (const SweepRun& run : runs) {
    TrainConfig c;
    try {
      c = cli::parse_train_args(run_arguments(run, opt.base_args, "x", threads));
      validate(c);
    } catch (const UsageError& e) {
      usage_fail("sweep run {}: {}", run.id, e.what());
    }
    // A chained sweep's runs start from files an earlier sweep wrote: all of them must be
    // there before the first run starts, not found missing hours later.
    if (!c.init_from.empty() && opt.emit_slurm.empty()) {
      std::error_code ec;
      if (!fs::is_regular_file(c.init_from, ec))
        usage_fail(
            "sweep run {}: --init-from {}: no such file (run the sweep that writes it first)",
            run.id, c.init_from);
    }
    expected.push_back(run_settings(to_json(c)));
    for (size_t i = 0; i + 1 < expected.size(); ++i)
      if (expected[i] == expected.back())
        usage_fail(
            "--grid: runs {} and {} are the same configuration (values that mean the same, "
            "written two ways?)",
            runs[i].id, run.id);
    if (!by_id.emplace(run.id, &run).second)
      usage_fail("--grid: two runs map to the folder {}", run.id);
  }
  if (!opt.emit_slurm.empty()) {
    emit_slurm(opt, runs);
    return 0;
  }
  record_sweep(opt, axes, runs);

  std::vector<const SweepRun*> todo;
  int already = 0, mine = 0;
  for (const SweepRun& r : runs) {
    if (r.index % opt.shards != opt.shard) continue;
    ++mine;
    const RunFolderStatus s = inspect_run_folder(root / "runs" / r.id);
    if (s.state == RunState::finished && run_settings(s.config) == expected[size_t(r.index)])
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
  // Runs execute the sweep's own binary through /proc/self/exe (in the forked child, the
  // parent's image): a rebuild or removal of the file during a long sweep neither breaks
  // its later runs nor mixes two versions of the code in one sweep.
  const std::string exe = "/proc/self/exe";
  const auto t0 = clock::now();
  std::map<pid_t, std::pair<const SweepRun*, clock::time_point>> running;
  size_t next = 0;
  SweepTally tally;
  int finished = 0;  // runs this sweep has dealt with (done or failed)
  auto report = [&](const SweepRun& r, const std::string& what, double secs) {
    ++finished;
    const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
    const double eta = elapsed / finished * double(todo.size() - size_t(finished));
    fmt::print("[{}/{}] {}: {} ({})\n", finished, todo.size(), r.id, what, format_duration(secs));
    fmt::print("sweep: {}/{} done, {} failed, elapsed {}, eta {}\n", already + tally.done, mine,
               tally.failed, format_duration(elapsed), format_duration(eta));
    std::fflush(stdout);
  };
  auto fail_run = [&](const SweepRun& r, const std::string& why) {
    ++tally.failed;
    tally.failures.push_back(r.id);
    report(r, "FAILED (" + why + ")", 0);
  };
  // Starts run `r` with its folder's lock held: skips it when another process finished
  // it meanwhile, refuses a folder of other settings, else hands the lock to the child.
  auto start = [&](const SweepRun& r, FolderLock lock) {
    const fs::path dir = root / "runs" / r.id;
    std::string why;
    const RunAction action = decide(inspect_run_folder(dir), expected[size_t(r.index)], why);
    if (action == RunAction::skip_done) {
      ++tally.done;
      report(r, "finished by another process", 0);
      return;
    }
    if (action == RunAction::refuse) return fail_run(r, why);
    std::vector<std::string> args = {"mtp-exp", "train"};
    if (action == RunAction::resume) {
      args.insert(args.end(), {"--resume", dir.string(), "--threads", std::to_string(threads)});
    } else {
      const std::vector<std::string> own = run_arguments(r, opt.base_args, dir.string(), threads);
      args.insert(args.end(), own.begin(), own.end());
      if (action == RunAction::restart) args.push_back("--overwrite");
    }
    // The run's log is a file of its own (a FIFO planted there would block the child).
    struct stat log_stat {};
    const fs::path log = dir / "log.txt";
    if (::lstat(log.c_str(), &log_stat) == 0 && !S_ISREG(log_stat.st_mode))
      return fail_run(r, fmt::format("{} is {}, not a regular file", log.string(),
                                     describe_file_type(log_stat.st_mode)));
    // The child takes the lock over; children die with the sweep (SIGKILL included),
    // so a killed sweep leaves no run writing into a folder the next sweep will redo.
    ProcessOptions po;
    po.output_file = log.string();
    po.append_output = action == RunAction::resume;  // keep the first attempt's log
    po.die_with_parent = true;
    po.keep_fd = lock.fd();
    po.env = {std::string(kInheritedLockVariable) + "=" + std::to_string(lock.fd())};
    try {
      const pid_t pid = spawn_process(exe, args, po);
      running[pid] = {&r, clock::now()};
    } catch (const Error& e) {
      fail_run(r, e.what());
    }
  };
  // Runs held by another process (another sweep, a shard started twice, a manual
  // --resume) are left to it while this sweep does the others, then waited for: once
  // their lock is free, they are done, or this sweep does them.
  std::vector<const SweepRun*> held;
  while (next < todo.size() || !running.empty() || !held.empty()) {
    while (next < todo.size() && int(running.size()) < opt.jobs) {
      const SweepRun& r = *todo[next++];
      const fs::path dir = root / "runs" / r.id;
      if (std::optional<FolderLock> lock = FolderLock::try_take(dir, dir.string())) {
        start(r, std::move(*lock));
      } else {
        fmt::print("sweep: {} is in use by another process ({}); coming back to it\n", r.id,
                   FolderLock::holder(dir));
        std::fflush(stdout);
        held.push_back(&r);
      }
    }
    if (running.empty() && next == todo.size() && !held.empty()) {
      const SweepRun& r = *held.front();
      held.erase(held.begin());
      const fs::path dir = root / "runs" / r.id;
      fmt::print("sweep: waiting for {} ({})\n", r.id, FolderLock::holder(dir));
      std::fflush(stdout);
      start(r, FolderLock::wait(dir, dir.string()));
    }
    if (running.empty()) continue;
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
    const double secs = std::chrono::duration<double>(clock::now() - started).count();
    const fs::path dir = root / "runs" / r->id;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    const RunFolderStatus after = inspect_run_folder(dir);
    if (code == 0 && after.state == RunState::finished) {
      ++tally.done;
      report(*r, headline(after.result), secs);
    } else {
      fail_run(*r, fmt::format("exit {}; see {}", code, (dir / "log.txt").string()));
    }
  }
  if (tally.failed > 0) {
    fmt::print(
        "sweep: finished with {} failed runs; summarise the others with: mtp-exp report {}\n",
        tally.failed, opt.out);
    std::fflush(stdout);
    fail("sweep: {} of {} runs failed ({}{}); their logs are DIR/runs/<run>/log.txt", tally.failed,
         mine,
         fmt::join(tally.failures.begin(),
                   tally.failures.begin() + std::min<size_t>(3, tally.failures.size()), ", "),
         tally.failures.size() > 3 ? ", ..." : "");
  }
  fmt::print("sweep: finished; summarise with: mtp-exp report {}\n", opt.out);
  return 0;
}

}  // namespace mtp::exp
