#include "mtp/experiments/run_folder.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>

#include "mtp/core/file_io.hpp"
#include "mtp/experiments/json_file.hpp"
#include "mtp/experiments/process.hpp"

namespace mtp::exp {
namespace fs = std::filesystem;
namespace {

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// This process's command line, each argument as a shell would need it.
std::string command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string line;
  for (size_t at = 0; at < raw.size();) {
    const size_t end = std::min(raw.find('\0', at), raw.size());
    if (!line.empty()) line += ' ';
    line += shell_word(raw.substr(at, end - at));
    at = end + 1;
  }
  for (char& c : line)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  if (line.size() > 300) line = line.substr(0, 297) + "...";
  return line;
}

// Records who holds the lock, for the message of the next process that finds it taken.
void write_holder(int fd) {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string who =
      fmt::format("pid {} on {} since {}: {}\n", ::getpid(), host, now_utc(), command_line());
  if (::ftruncate(fd, 0) == 0) {
    [[maybe_unused]] ssize_t n = ::pwrite(fd, who.data(), who.size(), 0);
  }
}

// The descriptor a sweep handed us for `file`, if it is that file's: -1 otherwise.
int inherited_lock(const fs::path& file) {
  const char* v = std::getenv(kInheritedLockVariable);
  if (v == nullptr) return -1;
  char* end = nullptr;
  const long fd = std::strtol(v, &end, 10);
  if (end == v || *end != '\0' || fd < 0 || fd > 1'000'000) return -1;
  struct stat held {
  }, named{};
  if (::fstat(int(fd), &held) != 0 || ::stat(file.c_str(), &named) != 0) return -1;
  if (held.st_dev != named.st_dev || held.st_ino != named.st_ino) return -1;
  ::unsetenv(kInheritedLockVariable);
  ::fcntl(int(fd), F_SETFD, FD_CLOEXEC);  // ours now: not for our own children
  return int(fd);
}

bool present(const fs::path& p) {
  std::error_code ec;
  return fs::symlink_status(p, ec).type() != fs::file_type::not_found && !ec;
}

}  // namespace

// ------------------------------------------------------------------------- locks

std::optional<FolderLock> FolderLock::acquire(const fs::path& dir, const std::string& what,
                                              const std::string& name, bool wait) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) fail("{}: is not a folder", what);
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create the folder ({})", what, ec.message());
  const fs::path file = dir / name;
  int fd = inherited_lock(file);
  if (fd < 0) {
    fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ELOOP)
      fail("{}: its lock file {} is a symbolic link", what, file.string());
    if (fd < 0)
      fail("{}: cannot open its lock file {} ({})", what, file.string(), std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: its lock file {} is not a regular file", what, file.string());
  }
  int rc;
  do rc = ::flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB));
  while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) return std::nullopt;
    fail("{}: cannot lock {} ({})", what, file.string(), std::strerror(err));
  }
  FolderLock lock(fd);  // owns the descriptor from here, whatever follows throws
  write_holder(fd);
  return lock;
}

FolderLock FolderLock::take(const fs::path& dir, const std::string& what, const std::string& name) {
  std::optional<FolderLock> lock = acquire(dir, what, name, false);
  if (!lock) {
    const std::string who = holder(dir, name);
    throw FolderBusy(fmt::format(
        "{}: in use by another mtp-exp ({}); wait for it to finish, or use another folder", what,
        who.empty() ? "its lock is held" : who));
  }
  return std::move(*lock);
}

std::optional<FolderLock> FolderLock::try_take(const fs::path& dir, const std::string& what,
                                               const std::string& name) {
  return acquire(dir, what, name, false);
}

FolderLock FolderLock::wait(const fs::path& dir, const std::string& what, const std::string& name) {
  std::optional<FolderLock> lock = acquire(dir, what, name, true);
  MTP_CHECK(lock.has_value(), "{}: cannot lock {}", what, (dir / name).string());
  return std::move(*lock);
}

std::string FolderLock::holder(const fs::path& dir, const std::string& name) {
  // The holder writes its line just after taking the lock: give it a moment.
  std::string line;
  for (int attempt = 0; attempt < 20 && line.empty(); ++attempt) {
    if (attempt > 0) ::usleep(5000);
    std::ifstream in(dir / name);
    char buf[400] = {};
    in.getline(buf, sizeof buf);  // anyone can write the file: read a bounded line
    line = buf;
  }
  for (char& c : line)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  return line;
}

FolderLock& FolderLock::operator=(FolderLock&& o) noexcept {
  if (this != &o) {
    release();
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

FolderLock::~FolderLock() {
  release();
}

void FolderLock::release() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the flock
  fd_ = -1;
}

// ----------------------------------------------------------------------- states

std::vector<std::string> run_file_names() {
  return {std::begin(kRunFiles), std::end(kRunFiles)};
}

const char* run_state_name(RunState s) {
  switch (s) {
    case RunState::empty:
      return "empty";
    case RunState::finished:
      return "finished";
    case RunState::failed:
      return "failed";
    case RunState::unfinished:
      return "unfinished";
  }
  return "?";
}

nlohmann::json run_settings(nlohmann::json config) {
  if (config.is_object()) {
    config.erase("out");
    config.erase("threads");
  }
  return config;
}

RunFolderStatus inspect_run_folder(const fs::path& dir) {
  RunFolderStatus s;
  for (const char* name : kRunFiles)
    if (present(dir / name)) s.run_files.push_back(name);
  if (s.run_files.empty()) return s;
  s.resumable = present(dir / kTrainingStateFile);
  const std::string config_path = (dir / kConfigFile).string();
  try {
    s.config = json_member(read_json_file(config_path), "config", config_path);
  } catch (const Error& e) {
    s.config = nullptr;
    s.detail = e.what();
  }
  if (present(dir / kResultFile) && !s.config.is_null()) {
    const std::string result_path = (dir / kResultFile).string();
    try {
      nlohmann::json r = read_json_file(result_path);
      if (run_settings(json_member(r, "config", result_path)) == run_settings(s.config)) {
        s.state = RunState::finished;
        s.result = std::move(r);
        return s;
      }
      s.detail = fmt::format("{} holds another configuration than {}", result_path, config_path);
    } catch (const Error& e) {
      s.detail = e.what();
    }
  }
  if (present(dir / kFailedFile)) {
    s.state = RunState::failed;
    const std::string failed_path = (dir / kFailedFile).string();
    try {
      s.detail = json_field<std::string>(read_json_file(failed_path), "error", failed_path);
    } catch (const Error& e) {
      s.detail = e.what();
    }
    return s;
  }
  s.state = RunState::unfinished;
  if (s.detail.empty())
    s.detail = s.config.is_null() ? "no config.json" : "no result (killed, or still running)";
  return s;
}

void prepare_new_run(const fs::path& dir, const std::string& what, bool overwrite) {
  if (present(dir / "sweep.json"))
    usage_fail("{} is a sweep's folder (it holds sweep.json); a run needs a folder of its own",
               what);
  const RunFolderStatus s = inspect_run_folder(dir);
  if (!s.run_files.empty()) {
    if (!overwrite)
      usage_fail(
          "{} already holds a run ({}); pass --overwrite to replace it{}, or choose another "
          "folder",
          what, run_state_name(s.state),
          s.resumable && s.state != RunState::finished ? ", --resume to continue it" : "");
    // result.json first: from then on the folder never looks done with old outputs.
    for (const char* name :
         {kResultFile, kFailedFile, kModelFile, kMetricsFile, kTrainingStateFile, kConfigFile}) {
      std::error_code ec;
      fs::remove(dir / name, ec);
      if (ec) fail("{}: cannot remove the earlier run's {} ({})", what, name, ec.message());
    }
    sync_folder(dir.string());
  }
  remove_stale_temporaries(dir.string(), run_file_names(),
                           /*all_writers_gone=*/true);
}

void mark_run_failed(const fs::path& dir, const std::string& error, long long steps_done) {
  const nlohmann::json j = {{"error", error}, {"steps_done", steps_done}, {"time", now_utc()}};
  try {
    write_file_atomic((dir / kFailedFile).string(), j.dump(2) + "\n");
  } catch (const Error&) {
    // The error being reported matters more than the record of it (a full disk).
  }
}

void clear_run_failure(const fs::path& dir) {
  std::error_code ec;
  if (fs::remove(dir / kFailedFile, ec)) sync_folder(dir.string());
  if (ec) fail("{}: cannot remove {} ({})", dir.string(), kFailedFile, ec.message());
}

}  // namespace mtp::exp
