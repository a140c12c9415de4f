// Hostile and unlucky input through the real binary (issue 13): each case a user met
// before it was fixed. A failure is one line on stderr naming the problem, with the
// documented exit status (2 usage, 1 failure, 3 folder in use), and no file changed or
// lost; concurrent sweeps and resumes never train a run twice.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mtp/core/safetensors.hpp"
#include "run_binary.hpp"
#include "temp_dir.hpp"

namespace mtp {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::Result;

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> lines;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

// Every file under `dir` with its content (a link as "-> target", a FIFO as "<fifo>"):
// two snapshots are equal when nothing was changed, added or lost.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  if (!fs::exists(dir)) return files;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator();
       ++it) {
    const std::string rel = fs::relative(it->path(), dir).string();
    const fs::file_status st = it->symlink_status();
    if (it->path().filename().string().find(".lock") == 0)
      files[rel] = "<lock>";  // its content names the last holder
    else if (fs::is_symlink(st))
      files[rel] = "-> " + fs::read_symlink(it->path()).string();
    else if (fs::is_regular_file(st))
      files[rel] = test::read_file(it->path());
    else if (fs::is_directory(st))
      files[rel] = "<dir>";
    else
      files[rel] = "<special>";
  }
  return files;
}

// The names whose content differs between two snapshots (or that only one has).
std::string changed(const std::map<std::string, std::string>& a,
                    const std::map<std::string, std::string>& b) {
  std::string out;
  for (const auto& [name, content] : a)
    if (!b.count(name) || b.at(name) != content) out += name + " ";
  for (const auto& [name, content] : b)
    if (!a.count(name)) out += name + " ";
  return out;
}

// Names left by an interrupted atomic write.
std::vector<std::string> temporaries(const fs::path& dir) {
  std::vector<std::string> found;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator();
       ++it)
    if (it->path().filename().string().find(".tmp.") != std::string::npos)
      found.push_back(it->path().string());
  return found;
}

// The content written into a FIFO by another process, or "" when nothing arrives within
// 60 s (so that a command that fails before writing does not hang the test).
std::string read_fifo(const fs::path& fifo) {
  const int fd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  if (fd < 0) return "";
  std::string data;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) data.append(buf, size_t(n));
    if (n == 0 || (p.revents & POLLHUP && n <= 0)) break;  // the writer is done
  }
  ::close(fd);
  return data;
}

// Writes `data` into a FIFO once a reader opens it, giving up after 60 s.
void write_fifo(const fs::path& fifo, const std::string& data) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int fd = -1;
  while (fd < 0 && std::chrono::steady_clock::now() < deadline) {
    fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);  // ENXIO until a reader is there
    if (fd < 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (fd < 0) return;
  ::fcntl(fd, F_SETFL, 0);  // blocking writes from here
  for (size_t at = 0; at < data.size();) {
    const ssize_t n = ::write(fd, data.data() + at, data.size() - at);
    if (n <= 0) break;
    at += size_t(n);
  }
  ::close(fd);
}

// Waits until `pid` holds the lock of `dir` (its lock file names it).
bool holds_lock(const fs::path& dir, pid_t pid) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    if (test::read_file(dir / ".lock").rfind("pid " + std::to_string(pid) + " ", 0) == 0)
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

const std::vector<std::string> kTinyLagRecall = {
    "--task",    "lag-recall", "--steps",       "4",   "--batch",   "2",
    "--seq-len", "24",         "--lags",        "1,4", "--width",   "8",
    "--layers",  "1",          "--val-batches", "1",   "--threads", "1"};

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

test::RunOptions at(const fs::path& cwd) {
  test::RunOptions o;
  o.cwd = cwd;
  return o;
}

class Hostile : public ::testing::Test {
 protected:
  test::TempDir dir_;
  fs::path root() const { return dir_.path(); }

  // Runs in root(), so that default folders (runs/...) land there.
  Result run(const std::vector<std::string>& args, test::RunOptions o = {}) {
    if (o.cwd.empty()) o.cwd = root();
    return test::run_mtp_exp_captured(args, root(), {}, o);
  }

  // A failed command: `status`, one error line on stderr (the last: a run that fails
  // while training has logged its progress before it) naming every fragment.
  Result expect_failure(const std::vector<std::string>& args, int status,
                        const std::vector<std::string>& fragments, const test::RunOptions& o = {}) {
    std::string joined;
    for (const std::string& a : args) joined += a + " ";
    SCOPED_TRACE("mtp-exp " + joined);
    const Result r = run(args, o);
    EXPECT_EQ(r.status, status) << r.describe();
    const std::vector<std::string> lines = lines_of(r.err);
    const auto errors = std::count_if(lines.begin(), lines.end(), [](const std::string& l) {
      return l.rfind("mtp-exp: error:", 0) == 0;
    });
    EXPECT_EQ(errors, 1) << "exactly one error line\n" << r.describe();
    if (!lines.empty()) {
      EXPECT_EQ(lines.back().rfind("mtp-exp: error:", 0), 0u) << r.describe();
      for (const std::string& f : fragments)
        EXPECT_NE(lines.back().find(f), std::string::npos)
            << "'" << f << "' missing: " << lines.back();
    }
    return r;
  }

  // A finished two-run sweep (K = 1, 2) in root/<name>.
  fs::path finished_sweep(const std::string& name, const std::vector<std::string>& extra = {}) {
    const fs::path out = root() / name;
    const Result r =
        run(std::vector<std::string>{"sweep", "--grid", "perspectives=1,2", "--out", out.string()} +
            kTinyLagRecall + extra);
    EXPECT_EQ(r.status, 0) << r.describe();
    return out;
  }

  // A finished tiny run with training states (every 2 steps) in root/<name>.
  fs::path finished_run(const std::string& name, const std::vector<std::string>& extra = {}) {
    const fs::path out = root() / name;
    const Result r =
        run(kTinyLagRecall +
            std::vector<std::string>{"--checkpoint-every", "2", "--out", out.string()} + extra);
    EXPECT_EQ(r.status, 0) << r.describe();
    return out;
  }

  // The flags of a tiny text run on `data`.
  static std::vector<std::string> tiny_text(const fs::path& data) {
    return {"--task",   "text", "--data",        data.string(), "--steps",   "4",
            "--batch",  "2",    "--seq-len",     "16",          "--width",   "8",
            "--layers", "1",    "--val-batches", "1",           "--threads", "1"};
  }

  // Trains a tiny text run on `data` into `out`, with training states every 2 steps.
  bool text_run(const fs::path& data, const fs::path& out) {
    const Result r = run(tiny_text(data) + std::vector<std::string>{"--checkpoint-every", "2",
                                                                    "--out", out.string()});
    EXPECT_EQ(r.status, 0) << r.describe();
    return r.status == 0;
  }

  fs::path corpus(const std::string& name, size_t bytes = 4000) {
    std::string text;
    for (size_t i = 0; text.size() < bytes; ++i)
      text += "line " + std::to_string(i * 7919 % 1000) + " of a small corpus\n";
    const fs::path p = root() / name;
    write_text(p, text.substr(0, bytes));
    return p;
  }
};

// ------------------------------------------------------------------------ security

// 1. A folder name is never parsed by a shell (report ran gnuplot through one), and
// labels are never expanded by gnuplot (backquotes in single-quoted strings are not).
TEST_F(Hostile, ReportRunsNoShellWhateverTheFolderOrLabelsHold) {
  const fs::path sweep = finished_sweep("sweep");
  for (const std::string name : {"x';touch PWNED;'", "it's", "a \"b\" $(touch PWNED2) `c`"}) {
    SCOPED_TRACE(name);
    const fs::path copy = root() / name;
    fs::copy(sweep, copy, fs::copy_options::recursive);
    const Result r = run({"report", copy.string()}, at(root()));
    EXPECT_EQ(r.status, 0) << r.describe();
    EXPECT_FALSE(fs::exists(root() / "PWNED"));
    EXPECT_FALSE(fs::exists(root() / "PWNED2"));
    EXPECT_TRUE(fs::exists(copy / "REPORT.md"));
    if (r.out.find("not rendered") == std::string::npos) {  // gnuplot is installed
      EXPECT_TRUE(fs::exists(copy / "plots" / "metric_vs_k.svg")) << r.describe();
      EXPECT_TRUE(fs::exists(copy / "plots" / "metric_vs_k.png"));
    }
  }
  // Labels come from grid values: a corpus whose name asks gnuplot to run a command.
  const fs::path evil = corpus("c`touch GNUPWNED`.txt"), plain = corpus("plain.txt");
  const fs::path text = root() / "text";
  const Result s = run({"sweep", "--grid", "data=" + evil.string() + "," + plain.string(), "--task",
                        "text", "--steps", "2", "--batch", "2", "--seq-len", "16", "--width", "8",
                        "--layers", "1", "--val-batches", "1", "--out", text.string()},
                       at(root()));
  ASSERT_EQ(s.status, 0) << s.describe();
  const Result r = run({"report", text.string()}, at(root()));
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_FALSE(fs::exists(root() / "GNUPWNED"));
  EXPECT_FALSE(fs::exists(root() / "text" / "plots" / "GNUPWNED"));
}

// 2. An output path that is a link is written through (for paths the user names) or
// refused (inside mtp's folders); a FIFO or device is written into, never replaced.
TEST_F(Hostile, WritesNeverReplaceLinksFifosOrDevices) {
  const std::vector<std::string> sweep = {"sweep", "--grid", "perspectives=1,2", "--out",
                                          (root() / "s").string()};
  // A user-named output behind a link: its target receives it, the link stays.
  write_text(root() / "victim.sh", "old\n");
  fs::create_symlink(root() / "victim.sh", root() / "link.sh");
  Result r = run(sweep + kTinyLagRecall +
                 std::vector<std::string>{"--emit-slurm", (root() / "link.sh").string()});
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_TRUE(fs::is_symlink(root() / "link.sh"));
  EXPECT_EQ(test::read_file(root() / "victim.sh").rfind("#!/bin/bash", 0), 0u);

  // A FIFO: written into (a reader takes it), still a FIFO afterwards.
  const fs::path fifo = root() / "script.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  std::string received;
  std::thread reader([&] { received = read_fifo(fifo); });
  r = run(sweep + kTinyLagRecall + std::vector<std::string>{"--emit-slurm", fifo.string()});
  reader.join();
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(received.rfind("#!/bin/bash", 0), 0u) << received;
  EXPECT_TRUE(fs::is_fifo(fifo));

  // A device: written into; /dev/full fails as a full disk does, and stays a device.
  // (A copy of /dev/full in the test's folder: a regression must not clobber the real.)
  const fs::path full = test::device_node(root(), "full", 7);
  if (!full.empty()) {
    expect_failure(sweep + kTinyLagRecall + std::vector<std::string>{"--emit-slurm", full.string()},
                   1, {full.string(), "No space left on device"});
    struct stat st {};
    ASSERT_EQ(::stat(full.c_str(), &st), 0);
    EXPECT_TRUE(S_ISCHR(st.st_mode)) << "the device was replaced";
  }

  // A link planted among a run's files is refused, and what it points to is untouched.
  const fs::path run_dir = finished_run("run");
  fs::remove(run_dir / "result.json");
  write_text(root() / "precious.json", "precious\n");
  fs::create_symlink(root() / "precious.json", run_dir / "result.json");
  expect_failure({"--resume", run_dir.string()}, 1, {"result.json", "symbolic link"});
  EXPECT_EQ(test::read_file(root() / "precious.json"), "precious\n");
  EXPECT_TRUE(fs::is_symlink(run_dir / "result.json"));

  // And among a report's plots.
  const fs::path s2 = finished_sweep("s2");
  fs::create_directories(s2 / "plots");
  fs::create_symlink(root() / "precious.json", s2 / "plots" / "metric_vs_k.dat");
  expect_failure({"report", s2.string()}, 1, {"metric_vs_k.dat", "symbolic link"});
  EXPECT_EQ(test::read_file(root() / "precious.json"), "precious\n");
  EXPECT_FALSE(fs::exists(s2 / "REPORT.md")) << "a failed report writes nothing";
}

// ------------------------------------------------------ data loss and concurrency

// 3. Sweeps started together on one folder: with other shared flags exactly one runs
// and the other is refused, and what sweep.json records is what the runs trained with.
TEST_F(Hostile, ConcurrentSweepsWithOtherFlagsOneIsRefused) {
  for (int trial = 0; trial < 6; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    const fs::path out = root() / ("race" + std::to_string(trial));
    const auto args = [&](const char* steps) {
      std::vector<std::string> a = {"sweep", "--grid", "perspectives=1,2", "--out", out.string()};
      a = a + kTinyLagRecall;
      for (size_t i = 0; i + 1 < a.size(); ++i)
        if (a[i] == "--steps") a[i + 1] = steps;
      return a;
    };
    const pid_t a = test::spawn_mtp_exp(args("4"), root() / "a.log");
    const pid_t b = test::spawn_mtp_exp(args("6"), root() / "b.log");
    const int sa = test::wait_status(a), sb = test::wait_status(b);
    EXPECT_TRUE((sa == 0 && sb == 2) || (sa == 2 && sb == 0))
        << sa << " " << sb << "\n"
        << test::read_file(root() / "a.log") << "\n"
        << test::read_file(root() / "b.log");
    const std::string refused = test::read_file(root() / (sa == 2 ? "a.log" : "b.log"));
    EXPECT_NE(refused.find("other shared flags"), std::string::npos) << refused;
    const json recorded = json::parse(test::read_file(out / "sweep.json"));
    const std::vector<std::string> base = recorded["base_args"];
    const std::string steps =
        base[size_t(std::find(base.begin(), base.end(), "--steps") - base.begin()) + 1];
    for (const char* id : {"perspectives-1", "perspectives-2"}) {
      const json config = json::parse(test::read_file(out / "runs" / id / "config.json"));
      EXPECT_EQ(std::to_string(config["config"]["steps"].get<long long>()), steps) << id;
    }
  }
}

// 3. The same sweep started twice at once, and its two shards side by side: every run
// is trained exactly once, and all finish.
TEST_F(Hostile, ConcurrentSameSweepAndShardsTrainEachRunOnce) {
  const fs::path out = root() / "same";
  const std::vector<std::string> args =
      std::vector<std::string>{"sweep", "--grid", "perspectives=1,2,3;seed=0,1", "--out",
                               out.string()} +
      kTinyLagRecall;
  const pid_t a = test::spawn_mtp_exp(args, root() / "a.log");
  const pid_t b = test::spawn_mtp_exp(args, root() / "b.log");
  const int sa = test::wait_status(a), sb = test::wait_status(b);
  // Each finds runs the other holds, does its own, then waits for those: both end with
  // every run finished.
  EXPECT_EQ(sa, 0) << test::read_file(root() / "a.log");
  EXPECT_EQ(sb, 0) << test::read_file(root() / "b.log");
  // Each sweep prints "[i/n] <run>: accuracy ..." for a run it trained: across both,
  // every run once.
  const std::string logs = test::read_file(root() / "a.log") + test::read_file(root() / "b.log");
  for (const auto& e : fs::directory_iterator(out / "runs")) {
    const std::string trained = "] " + e.path().filename().string() + ": accuracy";
    size_t times = 0;
    for (size_t at = logs.find(trained); at != std::string::npos; at = logs.find(trained, at + 1))
      ++times;
    EXPECT_EQ(times, 1u) << e.path().filename() << " trained " << times << " times\n" << logs;
    EXPECT_TRUE(fs::exists(e.path() / "result.json")) << e.path();
  }
  // Shards run side by side on one folder.
  const fs::path sharded = root() / "sharded";
  const auto shard = [&](const char* s) {
    return std::vector<std::string>{"sweep", "--grid",         "perspectives=1,2,3;seed=0,1",
                                    "--out", sharded.string(), "--shard",
                                    s} +
           kTinyLagRecall;
  };
  const pid_t s0 = test::spawn_mtp_exp(shard("0/2"), root() / "s0.log");
  const pid_t s1 = test::spawn_mtp_exp(shard("1/2"), root() / "s1.log");
  EXPECT_EQ(test::wait_status(s0), 0) << test::read_file(root() / "s0.log");
  EXPECT_EQ(test::wait_status(s1), 0) << test::read_file(root() / "s1.log");
  int done = 0;
  for (const auto& e : fs::directory_iterator(sharded / "runs"))
    done += fs::exists(e.path() / "result.json");
  EXPECT_EQ(done, 6);
}

// 3. While a run trains, a second run into its folder and a resume of it are refused
// naming the holder (exit 3); two resumes at once: one trains, the other is refused,
// and the result is the uninterrupted run's. (Holders are paused with SIGSTOP while
// the others try, so the race is decided, not timed.)
TEST_F(Hostile, ConcurrentResumesOneTrainsTheOtherIsRefused) {
  const fs::path run_dir = root() / "run";
  // clang-format off
  const std::vector<std::string> args = {
      "--task", "lag-recall", "--steps", "120", "--batch", "4", "--seq-len", "32", "--lags", "1,4",
      "--width", "16", "--layers", "1", "--val-batches", "1", "--threads", "1",
      "--checkpoint-every", "60", "--out", run_dir.string()};
  // clang-format on
  ASSERT_EQ(run(args).status, 0);
  const json before = json::parse(test::read_file(run_dir / "result.json"));
  fs::remove_all(run_dir);

  const pid_t first = test::spawn_mtp_exp(args, root() / "first.log");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(run_dir / "training-state.safetensors") &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ::kill(first, SIGSTOP);
  if (fs::exists(run_dir / "result.json")) {
    ::kill(first, SIGKILL);
    test::wait_status(first);
    GTEST_SKIP() << "the run finished before it could be paused";
  }
  expect_failure(args + std::vector<std::string>{"--overwrite"}, 3,
                 {"--out", "in use by another mtp-exp", "pid " + std::to_string(first)});
  expect_failure({"--resume", run_dir.string()}, 3, {"--resume", "in use by another mtp-exp"});
  ::kill(first, SIGKILL);
  test::wait_status(first);

  const pid_t a = test::spawn_mtp_exp({"--resume", run_dir.string()}, root() / "a.log");
  ASSERT_TRUE(holds_lock(run_dir, a)) << test::read_file(root() / "a.log");
  ::kill(a, SIGSTOP);
  if (::waitpid(a, nullptr, WNOHANG) == a) GTEST_SKIP() << "the resume ended before it was paused";
  expect_failure({"--resume", run_dir.string()}, 3,
                 {"in use by another mtp-exp", "pid " + std::to_string(a)});
  ::kill(a, SIGCONT);
  EXPECT_EQ(test::wait_status(a), 0) << test::read_file(root() / "a.log");
  const json after = json::parse(test::read_file(run_dir / "result.json"));
  EXPECT_EQ(after["validation"], before["validation"]);
  EXPECT_EQ(after["train"], before["train"]);
}

// 4. A value listed twice is one run; values that differ only in characters a folder
// name cannot hold get folders of their own; values that mean the same are refused.
TEST_F(Hostile, GridValuesAreDeduplicatedAndFoldersNeverShared) {
  const fs::path twice = root() / "twice";
  Result r = run(std::vector<std::string>{"sweep", "--grid", "seed=0,0", "--out", twice.string()} +
                 kTinyLagRecall);
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("sweep: 1 runs"), std::string::npos) << r.out;
  r = run({"report", twice.string()});
  EXPECT_NE(r.out.find("report: 1 runs"), std::string::npos) << r.describe();

  fs::create_directories(root() / "cold");
  corpus("cold/a b.txt", 3000);
  corpus("cold/a_b.txt", 3500);
  const fs::path names = root() / "names";
  r = run({"sweep", "--grid", "data=cold/a b.txt,cold/a_b.txt", "--task", "text", "--steps", "2",
           "--batch", "2", "--seq-len", "16", "--width", "8", "--layers", "1", "--val-batches", "1",
           "--out", names.string()},
          at(root()));
  ASSERT_EQ(r.status, 0) << r.describe();
  std::set<std::string> datas;
  for (const auto& e : fs::directory_iterator(names / "runs"))
    datas.insert(json::parse(test::read_file(e.path() / "result.json"))["config"]["data"]);
  EXPECT_EQ(datas, (std::set<std::string>{"cold/a b.txt", "cold/a_b.txt"}));
  r = run({"report", names.string()});
  EXPECT_NE(r.out.find("report: 2 runs, 2 configurations"), std::string::npos) << r.describe();

  expect_failure(std::vector<std::string>{"sweep", "--grid", "lr=0.1,0.10", "--out",
                                          (root() / "same").string()} +
                     kTinyLagRecall,
                 2, {"same configuration"});
}

// 5. A finished run's folder is not reused silently; replaced (--overwrite) by a run
// that fails, it says failed, and neither a report nor a sweep counts it as done: the
// sweep leaves a run of other settings alone, and redoes a failed run of its own.
TEST_F(Hostile, ReusedFolderIsRefusedOrMarkedFailed) {
  const std::vector<std::string> grid = {"sweep", "--grid", "perspectives=1,2", "--out"};
  const fs::path sweep = finished_sweep("sweep", {"--checkpoint-every", "2"});
  const fs::path run_dir = sweep / "runs" / "perspectives-2";
  const auto before = snapshot(run_dir);
  const std::vector<std::string> failing =
      kTinyLagRecall + std::vector<std::string>{"--perspectives", "2", "--lr",  "1e30",
                                                "--warmup",       "0", "--out", run_dir.string()};
  expect_failure(failing, 2, {"already holds a run (finished)", "--overwrite"});
  EXPECT_EQ(changed(snapshot(run_dir), before), "");

  expect_failure(failing + std::vector<std::string>{"--overwrite"}, 1, {"stopping"});
  EXPECT_FALSE(fs::exists(run_dir / "result.json"));
  EXPECT_FALSE(fs::exists(run_dir / "model.safetensors"));
  const json failed = json::parse(test::read_file(run_dir / "failed.json"));
  EXPECT_NE(failed["error"].get<std::string>().find("stopping"), std::string::npos);
  const Result report = run({"report", sweep.string()});
  EXPECT_EQ(report.status, 0) << report.describe();
  EXPECT_NE(report.out.find("report: 1 runs"), std::string::npos) << report.out;
  const std::string md = test::read_file(sweep / "REPORT.md");
  EXPECT_NE(md.find("| perspectives-2 | failed |"), std::string::npos) << md;

  // The sweep does not touch a run of other settings in its folder.
  const auto replaced = snapshot(run_dir);
  const std::vector<std::string> again =
      grid + std::vector<std::string>{sweep.string(), "--checkpoint-every", "2"} + kTinyLagRecall;
  expect_failure(again, 1, {"1 of 2 runs failed", "perspectives-2"});
  EXPECT_EQ(changed(snapshot(run_dir), replaced), "");

  // A failed run of its own settings it runs again, from the start.
  fs::remove_all(run_dir);
  const fs::path own = sweep / "runs" / "perspectives-1";
  for (const char* f : {"result.json", "model.safetensors", "metrics.csv"}) fs::remove(own / f);
  write_text(own / "failed.json", R"({"error": "killed by the test", "step": 2})");
  const Result rerun = run(again);
  EXPECT_EQ(rerun.status, 0) << rerun.describe();
  EXPECT_NE(rerun.out.find("0 already finished, 2 to run"), std::string::npos) << rerun.out;
  EXPECT_TRUE(fs::exists(own / "result.json"));
  EXPECT_FALSE(fs::exists(own / "failed.json"));
  EXPECT_EQ(test::read_file(own / "log.txt").find("resumed"), std::string::npos)
      << "a failed run starts over";
}

// 6. Temporaries of a killed writer are removed by the next run in the folder; a
// report that fails part way (a full disk) changes none of the report's files.
TEST_F(Hostile, StaleTemporariesRemovedAndReportsLandWholeOrNotAtAll) {
  const fs::path run_dir = finished_run("run");
  fs::remove(run_dir / "result.json");
  for (const char* stale : {"training-state.safetensors.tmp.otherhost.12345",
                            "training-state.safetensors.tmp.4194303", "result.json.tmp.h.1"})
    write_text(run_dir / stale, std::string(1000, 'x'));
  write_text(run_dir / "notes.tmp.txt", "mine");  // not mtp's: kept
  const Result resumed = run({"--resume", run_dir.string()});
  EXPECT_EQ(resumed.status, 0) << resumed.describe();
  EXPECT_TRUE(temporaries(run_dir) ==
              std::vector<std::string>{(run_dir / "notes.tmp.txt").string()})
      << ::testing::PrintToString(temporaries(run_dir));

  const fs::path sweep = finished_sweep("sweep");
  ASSERT_EQ(run({"report", sweep.string()}).status, 0);
  const auto before = snapshot(sweep);
  test::RunOptions full_disk;
  full_disk.file_size_limit = 3000;  // the report's larger files do not fit
  const Result r2 = expect_failure({"report", sweep.string()}, 1, {}, full_disk);
  EXPECT_TRUE(r2.err.find("write failed") != std::string::npos ||
              r2.err.find("incomplete") != std::string::npos)
      << r2.err;
  EXPECT_EQ(changed(snapshot(sweep), before), "");
  EXPECT_TRUE(temporaries(sweep).empty()) << ::testing::PrintToString(temporaries(sweep));
}

// 7. A resume on a corpus that changed since the run started is refused.
TEST_F(Hostile, ResumeRefusesAChangedCorpus) {
  const fs::path data = corpus("corpus.txt", 6000);
  const fs::path run_dir = root() / "text";
  ASSERT_TRUE(text_run(data, run_dir));
  fs::remove(run_dir / "result.json");
  std::string text = test::read_file(data);
  text[100] = text[100] == 'x' ? 'y' : 'x';  // same size, other bytes
  write_text(data, text);
  const auto before = snapshot(run_dir);
  expect_failure({"--resume", run_dir.string()}, 1,
                 {"--data", data.string(), "changed since the run started"});
  EXPECT_EQ(changed(snapshot(run_dir), before), "");
}

// --------------------------------------------------------------- bad values accepted

// 8. Non-finite parameters are refused wherever a model is loaded, naming the tensor.
TEST_F(Hostile, NonFiniteParametersAreRefusedEverywhere) {
  const fs::path data = corpus("corpus.txt", 6000);
  const fs::path run_dir = root() / "text";
  ASSERT_TRUE(text_run(data, run_dir));
  // The same files with one NaN in a tensor.
  const auto poison = [&](const fs::path& from, const fs::path& to, const std::string& tensor) {
    SafeTensors st = SafeTensors::load(from.string());
    StoredTensor& t = st.tensors.at(tensor);
    const float nan = std::nanf("");
    std::memcpy(t.bytes.data() + 4, &nan, 4);
    st.save(to.string());
  };
  const fs::path nan_model = root() / "nan.safetensors";
  poison(run_dir / "model.safetensors", nan_model, "blocks.0.mixer.decay");
  expect_failure({"eval", "--checkpoint", nan_model.string()}, 1,
                 {"nan.safetensors", "blocks.0.mixer.decay", "non-finite"});
  const Result g = expect_failure(
      {"generate", "--checkpoint", nan_model.string(), "--prompt", "hi", "--tokens", "4"}, 1,
      {"blocks.0.mixer.decay", "non-finite"});
  EXPECT_EQ(g.out, "") << "nothing generated";
  const fs::path fresh = root() / "fresh";
  expect_failure(
      {"--task", "text", "--data", data.string(), "--steps", "2", "--batch", "2", "--seq-len", "16",
       "--width", "8", "--layers", "1", "--init-from", nan_model.string(), "--out", fresh.string()},
      1, {"--init-from", "non-finite"});
  EXPECT_FALSE(fs::exists(fresh)) << "nothing written for a run that cannot start";

  fs::remove(run_dir / "result.json");
  poison(run_dir / "training-state.safetensors", run_dir / "training-state.safetensors",
         "optimizer.v.head.weight");
  const auto before = snapshot(run_dir);
  expect_failure({"--resume", run_dir.string()}, 1,
                 {"training-state.safetensors", "optimizer.v.head.weight", "non-finite"});
  EXPECT_EQ(changed(snapshot(run_dir), before), "");
}

// 9. An empty string is refused where a value is needed, never read as "not given".
TEST_F(Hostile, EmptyValuesAreRefused) {
  expect_failure({"--resume", ""}, 2, {"--resume", "empty"});
  expect_failure({"--init-from", "", "--freeze", "base"}, 2, {"--init-from", "empty"});
  expect_failure({"--out", ""}, 2, {"--out", "empty"});
  expect_failure({"--task", "text", "--data", ""}, 2, {"--data", "empty"});
  expect_failure({"eval", "--checkpoint", ""}, 2, {"--checkpoint", "empty"});
  expect_failure({"report", ""}, 2, {"empty"});
  expect_failure({"sweep", "--grid", "seed=0", "--out", ""}, 2, {"--out", "empty"});
  // --freeze base on a random base learns nothing: it needs --init-from.
  expect_failure({"--freeze", "base"}, 2, {"--freeze", "--init-from"});
  EXPECT_FALSE(fs::exists(root() / "runs")) << "no default run folder written";
}

// 10. A flag that has no effect in the chosen configuration is refused with the reason.
TEST_F(Hostile, FlagsWithoutEffectAreRefused) {
  expect_failure(kTinyLagRecall + std::vector<std::string>{"-K", "3", "--top-k", "5"}, 2,
                 {"--top-k", "5", "3 perspectives"});
  expect_failure(kTinyLagRecall + std::vector<std::string>{"--top-k", "2", "--aggregator", "mean"},
                 2, {"--top-k", "mean"});
  expect_failure(
      kTinyLagRecall + std::vector<std::string>{"--noise", "0.5", "--aggregator", "fixed"}, 2,
      {"--noise", "fixed"});
  expect_failure(
      kTinyLagRecall + std::vector<std::string>{"--noise-mode", "learned", "--aggregator", "mean"},
      2, {"--noise-mode", "mean"});
  expect_failure(
      kTinyLagRecall + std::vector<std::string>{"--noise", "0.5", "--noise-mode", "learned"}, 2,
      {"--noise", "learned"});
  expect_failure(kTinyLagRecall + std::vector<std::string>{"--pairs", "3"}, 2, {"--pairs", "mqar"});
  expect_failure(kTinyLagRecall + std::vector<std::string>{"--data", "x.txt"}, 2,
                 {"--data", "text"});
  expect_failure({"layer", "--aggregator", "mean", "--top-k", "1", "--params", "p", "--input", "x",
                  "--output", "y"},
                 2, {"--top-k", "mean"});
  // The learned selector's options at K = 1 stay accepted: a grid over K shares them.
  EXPECT_EQ(run(kTinyLagRecall + std::vector<std::string>{"-K", "1", "--noise", "0.5", "--out",
                                                          (root() / "k1").string()})
                .status,
            0);
}

// 11. Reads are bounded and typed, and a run too large for memory is refused with the
// amount before anything is allocated.
TEST_F(Hostile, UnboundedInputsAndRunsTooLargeAreRefused) {
  expect_failure({"--task", "text", "--data", "/dev/zero", "--out", (root() / "z").string()}, 1,
                 {"--data /dev/zero", "character device"});
  for (const std::vector<std::string>& big :
       {std::vector<std::string>{"--vocab", "1000000", "--batch", "4096", "--steps", "2"},
        std::vector<std::string>{"--val-batches", "1000000000"},
        std::vector<std::string>{"--width", "8192", "--layers", "64"}}) {
    const fs::path out = root() / "big";
    const auto t0 = std::chrono::steady_clock::now();
    expect_failure(big + std::vector<std::string>{"--threads", "1", "--out", out.string()}, 1,
                   {"needs about", "iB of memory", "available"});
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20))
        << "refused before allocating";
    EXPECT_FALSE(fs::exists(out));
  }
  // A pipe is read to its end (process substitution, /dev/stdin).
  const fs::path fifo = root() / "corpus.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  const fs::path data = corpus("corpus.txt", 5000);
  std::thread writer([&] { write_fifo(fifo, test::read_file(data)); });
  const Result r = run({"--task", "text", "--data", fifo.string(), "--steps", "2", "--batch", "2",
                        "--seq-len", "16", "--width", "8", "--layers", "1", "--val-batches", "1",
                        "--out", (root() / "piped").string()});
  writer.join();
  EXPECT_EQ(r.status, 0) << r.describe();
}

// 11. The estimate behind that refusal follows what a run really takes: the peak
// resident memory of a run whose activations dominate, for every cell, is within
// [0.65, 1.2] of the estimate (it errs on the large side: scratch buffers that are not
// all alive at once). Not under sanitizers, whose shadow memory is not the program's.
#if defined(__SANITIZE_ADDRESS__)
#define MTP_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MTP_UNDER_ASAN 1
#endif
#endif
TEST_F(Hostile, MemoryEstimateFollowsTheMeasuredPeak) {
#ifdef MTP_UNDER_ASAN
  GTEST_SKIP() << "AddressSanitizer's shadow memory is not the program's";
#endif
  for (const char* cell : {"gru", "lstm", "rwkv", "ssm"}) {
    SCOPED_TRACE(cell);
    const fs::path out = root() / cell;
    const pid_t pid = test::spawn_mtp_exp(
        {"--cell",    cell, "--task",    "lag-recall", "--lags",  "1,4", "--steps",       "2",
         "--batch",   "32", "--seq-len", "256",        "--width", "64",  "--val-batches", "1",
         "--threads", "1",  "--out",     out.string()},
        root() / "log.txt");
    int raw = 0;
    rusage usage{};
    ASSERT_EQ(::wait4(pid, &raw, 0, &usage), pid);
    ASSERT_TRUE(WIFEXITED(raw) && WEXITSTATUS(raw) == 0) << test::read_file(root() / "log.txt");
    const double peak = double(usage.ru_maxrss) * 1024;
    const double estimate =
        json::parse(test::read_file(out / "result.json"))["memory_estimate_bytes"].get<double>();
    EXPECT_GT(peak, 0.65 * estimate)
        << "peak " << peak / 1048576 << " MiB, estimate " << estimate / 1048576 << " MiB";
    EXPECT_LT(peak, 1.2 * estimate)
        << "peak " << peak / 1048576 << " MiB, estimate " << estimate / 1048576 << " MiB";
  }
}

// 12. A tensor with a zero-sized dimension and no bytes is a valid, empty tensor.
TEST_F(Hostile, ZeroSizedTensorParses) {
  const std::string header = R"({"empty":{"dtype":"F32","shape":[3,0],"data_offsets":[0,0]}})";
  std::string bytes(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  write_text(root() / "p.safetensors", bytes + header);
  SafeTensors x;
  const std::vector<float> xs(6, 0.5f);
  x.put("x", {1, 2, 3}, xs.data());
  x.save((root() / "x.safetensors").string());
  // It parses: the layer then names it as a tensor it has no use for.
  const Result r = expect_failure(
      {"layer", "--params", (root() / "p.safetensors").string(), "--input",
       (root() / "x.safetensors").string(), "--output", (root() / "y.safetensors").string()},
      1, {"p.safetensors"});
  EXPECT_EQ(r.err.find("exceeds the file"), std::string::npos) << r.err;
}

// ---------------------------------------------------- failures that name what, where

// 13. A checkpoint whose stored configuration is invalid: exit 1 naming the file.
TEST_F(Hostile, InvalidStoredConfigurationNamesTheFile) {
  const fs::path run_dir = finished_run("run");
  for (const auto& [key, value] : std::vector<std::pair<std::string, json>>{
           {"width", 0}, {"cell", "transformer"}, {"width", "wide"}, {"steps", 3.5}}) {
    SCOPED_TRACE(key);
    SafeTensors st = SafeTensors::load((run_dir / "model.safetensors").string());
    json config = json::parse(st.metadata.at("config"));
    config[key] = value;
    st.metadata["config"] = config.dump();
    const fs::path bad = root() / "bad.safetensors";
    st.save(bad.string());
    expect_failure({"eval", "--checkpoint", bad.string()}, 1, {"bad.safetensors", key});
  }
  // The same in a run's config.json, for --resume.
  fs::remove(run_dir / "result.json");
  json config = json::parse(test::read_file(run_dir / "config.json"));
  config["config"]["width"] = "wide";
  write_text(run_dir / "config.json", config.dump());
  expect_failure({"--resume", run_dir.string()}, 1, {"config.json", "width"});
}

// 14. Malformed run files and impossible sizes say what and where, never a library's
// words (stoll, basic_filebuf, bad_alloc).
TEST_F(Hostile, MalformedRunFilesNameTheFileAndLine) {
  const fs::path sweep = finished_sweep("sweep");
  const fs::path metrics = sweep / "runs" / "perspectives-1" / "metrics.csv";
  std::string csv = test::read_file(metrics);
  csv.replace(csv.find('\n') + 1, 1, "x");
  write_text(metrics, csv);
  const Result r = expect_failure({"report", sweep.string()}, 1, {"metrics.csv", "line 2"});
  EXPECT_EQ(r.err.find("stoll"), std::string::npos);

  const fs::path s2 = finished_sweep("s2");
  const fs::path result = s2 / "runs" / "perspectives-1" / "result.json";
  fs::remove(result);
  fs::create_directory(result);
  const Result folder = run({"report", s2.string()});
  EXPECT_EQ(folder.status, 0) << folder.describe();
  EXPECT_NE(folder.out.find("1 runs not finished"), std::string::npos) << folder.out;
  EXPECT_NE(test::read_file(s2 / "REPORT.md").find("result.json: is a folder"), std::string::npos);

  const fs::path s3 = finished_sweep("s3");
  write_text(s3 / "runs" / "perspectives-2" / "result.json",
             R"({"config": {"seed": "zero"}, "validation": {}})");
  write_text(s3 / "runs" / "perspectives-2" / "config.json", R"({"config": {"seed": "zero"}})");
  expect_failure({"report", s3.string()}, 1, {"result.json", "'seed'"});
}

// 15. A sweep whose runs failed says so on stderr, naming them.
TEST_F(Hostile, FailedSweepSaysWhichRunsFailed) {
  const Result r = expect_failure(
      std::vector<std::string>{"sweep", "--grid", "perspectives=1,2", "--out",
                               (root() / "s").string(), "--lr", "1e30", "--warmup", "0"} +
          kTinyLagRecall,
      1, {"2 of 2 runs failed", "perspectives-1", "log.txt"});
  EXPECT_NE(r.out.find("FAILED"), std::string::npos);
}

// 16. A failed write to standard output fails the command.
TEST_F(Hostile, StdoutWriteErrorsFailTheCommand) {
  const fs::path run_dir = root() / "text";
  const fs::path data = corpus("corpus.txt", 6000);
  ASSERT_TRUE(text_run(data, run_dir));
  const std::string model = (run_dir / "model.safetensors").string();
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"generate", "--checkpoint", model, "--prompt", "hi", "--tokens",
                                 "20"},
        std::vector<std::string>{"eval", "--json", "--checkpoint", model},
        std::vector<std::string>{"report", "--help"}}) {
    SCOPED_TRACE(args[0]);
    const pid_t pid = test::spawn_mtp_exp(args, "/dev/full", root() / "err.txt");
    EXPECT_EQ(test::wait_status(pid), 1);
    const std::vector<std::string> lines = lines_of(test::read_file(root() / "err.txt"));
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_NE(lines[0].find("No space left on device"), std::string::npos) << lines[0];
  }
}

// Waits for `pid` at most `seconds`: its exit status, or -2 (after killing it) when it
// hangs, so that a regression that blocks cannot stall the whole suite.
int wait_within(pid_t pid, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    int raw = 0;
    if (::waitpid(pid, &raw, WNOHANG) == pid) return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  test::wait_status(pid);
  return -2;
}

// A FIFO or device where a run's file should be is refused, never waited on: as a run's
// result.json (report, sweep) and as a sweep run's log.txt.
TEST_F(Hostile, FifoAmongRunFilesIsRefusedWithoutWaiting) {
  const fs::path sweep = finished_sweep("sweep");
  const fs::path result = sweep / "runs" / "perspectives-1" / "result.json";
  fs::remove(result);
  ASSERT_EQ(::mkfifo(result.c_str(), 0644), 0);
  const pid_t report =
      test::spawn_mtp_exp({"report", "--no-plots", sweep.string()}, root() / "report.log");
  ASSERT_EQ(wait_within(report, 60), 0) << test::read_file(root() / "report.log");
  EXPECT_NE(test::read_file(sweep / "REPORT.md").find("result.json: is a FIFO"), std::string::npos);

  const fs::path other = root() / "other";
  const fs::path log = other / "runs" / "perspectives-1" / "log.txt";
  fs::create_directories(log.parent_path());
  ASSERT_EQ(::mkfifo(log.c_str(), 0644), 0);
  const pid_t s = test::spawn_mtp_exp(
      std::vector<std::string>{"sweep", "--grid", "perspectives=1", "--out", other.string()} +
          kTinyLagRecall,
      root() / "sweep.log");
  EXPECT_EQ(wait_within(s, 60), 1) << test::read_file(root() / "sweep.log");
  EXPECT_NE(test::read_file(root() / "sweep.log").find("not a regular file"), std::string::npos)
      << test::read_file(root() / "sweep.log");
}

// gnuplot that fails: the report still lands, says the plots were not rendered, keeps
// gnuplot's log beside them, and leaves nothing in the folder it was run from.
TEST_F(Hostile, FailingGnuplotLeavesItsLogAndNothingElsewhere) {
  const fs::path sweep = finished_sweep("sweep");
  const fs::path bin = root() / "bin", elsewhere = root() / "elsewhere";
  fs::create_directories(bin);
  fs::create_directories(elsewhere);
  write_text(bin / "gnuplot", "#!/bin/sh\necho 'gnuplot: cannot render here' >&2\nexit 1\n");
  fs::permissions(bin / "gnuplot", fs::perms::owner_all);
  test::RunOptions o = at(elsewhere);
  o.env = {"PATH=" + bin.string() + ":/usr/bin:/bin"};
  const Result r = run({"report", sweep.string()}, o);
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("not rendered"), std::string::npos) << r.out;
  EXPECT_NE(test::read_file(sweep / "plots" / "metric_vs_k.log").find("cannot render here"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(sweep / "plots" / "metric_vs_k.png"));
  EXPECT_TRUE(fs::is_empty(elsewhere)) << "left in the working folder";
  EXPECT_TRUE(temporaries(sweep).empty()) << ::testing::PrintToString(temporaries(sweep));
}

// The emitted Slurm script: a folder name cannot add lines to it, and written to
// standard output it is the whole of standard output (ready for `| sbatch`).
TEST_F(Hostile, SlurmScriptTakesNoInjectedLinesAndPipesCleanly) {
  for (const std::string& out :
       {std::string("o\ntouch PWNED"), std::string("with space"), std::string("pct%A")}) {
    SCOPED_TRACE(out);
    expect_failure(
        std::vector<std::string>{"sweep", "--grid", "seed=0", "--out", (root() / out).string(),
                                 "--emit-slurm", (root() / "s.sbatch").string()} +
            kTinyLagRecall,
        2, {"--out", "#SBATCH"});
  }
  const Result r =
      run(std::vector<std::string>{"sweep", "--grid", "seed=0,1", "--out", (root() / "ok").string(),
                                   "--emit-slurm", "/dev/stdout"} +
          kTinyLagRecall);
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.out.rfind("#!/bin/bash\n", 0), 0u) << r.out;
  const std::vector<std::string> lines = lines_of(r.out);
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines.back().find("--shard \"${SLURM_ARRAY_TASK_ID}/2\""), std::string::npos)
      << "the command is the script's last line\n"
      << r.out;
  EXPECT_NE(r.err.find("wrote /dev/stdout"), std::string::npos) << r.err;
}

// Sweeps with the same shared flags and other grids on one folder: sweep.json lists the
// runs of both, and the report counts them all.
TEST_F(Hostile, SweepsWithOtherGridsAddUpInOneReport) {
  const fs::path out = root() / "sweep";
  for (const char* seeds : {"seed=0,1", "seed=2"})
    ASSERT_EQ(run(std::vector<std::string>{"sweep", "--grid", seeds, "--out", out.string()} +
                  kTinyLagRecall)
                  .status,
              0);
  const json record = json::parse(test::read_file(out / "sweep.json"));
  EXPECT_EQ(record["runs"].size(), 3u) << record.dump();
  EXPECT_EQ(record["commands"].size(), 2u) << record.dump();
  const Result r = run({"report", "--no-plots", out.string()});
  EXPECT_NE(r.out.find("report: 3 runs"), std::string::npos) << r.describe();
}

}  // namespace
}  // namespace mtp
