#include "mtp/core/file_io.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include "mtp/core/error.hpp"
#include "mtp/core/system_memory.hpp"

namespace mtp {
namespace {

namespace fs = std::filesystem;

// Closes a descriptor at scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

const std::string& host_name() {
  static const std::string name = [] {
    char buf[HOST_NAME_MAX + 1] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return std::string("localhost");
    std::string h = buf;
    // The name goes into file names: keep it to what a host name may hold.
    for (char& c : h)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') c = '-';
    return h;
  }();
  return name;
}

std::string temporary_name(const std::string& target) {
  return target + ".tmp." + host_name() + "." + std::to_string(::getpid());
}

// The folder of `path` ("." for a bare name).
std::string folder_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

void write_all(int fd, const void* bytes, size_t size, const std::string& path) {
  const auto* p = static_cast<const char*>(bytes);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("{}: write failed ({})", path, std::strerror(n < 0 ? errno : ENOSPC));
    p += n;
    size -= size_t(n);
  }
}

// Where and how a write to a path lands.
struct Target {
  std::string path;     // the file to create or replace, or to open and write into
  bool direct = false;  // write into `path` (a FIFO, a device, a descriptor) in place
  int descriptor = -1;  // /dev/stdout, /proc/self/fd/N: this process's own descriptor N
};

// This process's descriptor named by a /proc/self/fd/N or /dev/fd/N path, or -1.
int own_descriptor(const std::string& path) {
  for (const char* prefix : {"/proc/self/fd/", "/dev/fd/"}) {
    const size_t n = std::strlen(prefix);
    if (path.compare(0, n, prefix) != 0 || path.size() == n) continue;
    int fd = 0;
    for (size_t i = n; i < path.size(); ++i) {
      if (!std::isdigit(static_cast<unsigned char>(path[i])) || fd > 1'000'000) return -1;
      fd = fd * 10 + (path[i] - '0');
    }
    return fd;
  }
  return -1;
}

Target special_target(const std::string& path, unsigned mode, const WriteOptions& o) {
  if ((S_ISFIFO(mode) || S_ISCHR(mode)) && o.write_special) return {path, true};
  fail("{}: is {}, not a regular file; mtp-exp does not replace it", path,
       describe_file_type(mode));
}

Target resolve_target(const std::string& path, const WriteOptions& o) {
  if (path.empty()) fail("cannot write to an empty path");
  if (const int fd = own_descriptor(path); fd >= 0 && o.write_special) return {path, true, fd};
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return {path};
    fail("{}: cannot write ({})", path, std::strerror(errno));
  }
  if (S_ISREG(st.st_mode)) return {path};
  if (S_ISDIR(st.st_mode)) fail("{}: is a folder, not a file", path);
  if (!S_ISLNK(st.st_mode)) return special_target(path, st.st_mode, o);
  if (!o.follow_symlink)
    fail("{}: is a symbolic link; mtp-exp does not replace links among its own files", path);
  // Follow the chain by hand: a hop through /proc/self/fd or /dev/fd (/dev/stdout) is
  // one of this process's descriptors, written in place rather than replaced.
  std::string at = path;
  for (int hop = 0; hop < 40; ++hop) {
    if (const int fd = own_descriptor(at); fd >= 0 && o.write_special) return {path, true, fd};
    char buf[PATH_MAX];
    const ssize_t n = ::readlink(at.c_str(), buf, sizeof buf - 1);
    if (n <= 0)
      fail("{}: cannot follow its link ({})", path, std::strerror(n < 0 ? errno : EINVAL));
    const std::string link(buf, size_t(n));
    const std::string next = link.front() == '/' ? link : folder_of(at) + "/" + link;
    if (const int fd = own_descriptor(next); fd >= 0 && o.write_special) return {path, true, fd};
    if (::lstat(next.c_str(), &st) != 0) {
      if (errno == ENOENT) fail("{}: is a link to {}, which does not exist", path, next);
      fail("{}: cannot follow its link to {} ({})", path, next, std::strerror(errno));
    }
    if (S_ISREG(st.st_mode)) return {next};
    if (S_ISDIR(st.st_mode)) fail("{}: is a link to a folder, not to a file", path);
    if (!S_ISLNK(st.st_mode)) return special_target(path, st.st_mode, o);
    at = next;
  }
  fail("{}: too many levels of symbolic links", path);
}

void write_direct(const Target& t, const void* bytes, size_t size) {
  std::fflush(nullptr);  // what stdio holds for the same descriptor goes first
  if (t.descriptor >= 0) {
    write_all(t.descriptor, bytes, size, t.path);
    return;
  }
  const Fd fd(::open(t.path.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY));
  if (fd.fd < 0) fail("{}: cannot write ({})", t.path, std::strerror(errno));
  write_all(fd.fd, bytes, size, t.path);
}

// Writes a new, synced file at `tmp` (replacing a leftover of this process's).
void write_temporary(const std::string& tmp, const std::string& target, const void* bytes,
                     size_t size) {
  ::unlink(tmp.c_str());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (fd.fd < 0) fail("{}: cannot write ({})", target, std::strerror(errno));
  try {
    write_all(fd.fd, bytes, size, target);
    if (::fsync(fd.fd) != 0) fail("{}: write failed ({})", target, std::strerror(errno));
    // Some file systems (NFS, quotas) report a failed write only here.
    const int closing = fd.fd;
    fd.fd = -1;
    if (::close(closing) != 0) fail("{}: write failed ({})", target, std::strerror(errno));
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
}

// (host, pid) of a temporary file name's suffix after ".tmp.": "host.pid", or "pid"
// from before hosts were recorded.
bool parse_writer(const std::string& suffix, std::string& host, long& pid) {
  const size_t dot = suffix.rfind('.');
  const std::string digits = dot == std::string::npos ? suffix : suffix.substr(dot + 1);
  host = dot == std::string::npos ? host_name() : suffix.substr(0, dot);
  if (digits.empty() || digits.size() > 9 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return std::isdigit(c); }))
    return false;
  pid = std::stol(digits);
  return true;
}

bool writer_gone(const std::string& host, long pid) {
  if (host != host_name()) return false;  // another machine's: it may still be writing
  if (pid == long(::getpid())) return true;
  return ::kill(pid_t(pid), 0) != 0 && errno == ESRCH;
}

}  // namespace

std::string describe_file_type(unsigned mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "a file";
}

// How much a read may grow between looks at the memory available.
constexpr std::uint64_t kMemoryCheckStep = std::uint64_t(64) << 20;

namespace {

// A file opened for reading, looked at but not yet read: `name` is how errors call it
// ("--data corpus.txt"). Non-blocking, so that a FIFO with no writer (or a device) is
// looked at before anything waits on it. Missing, unreadable and folders are errors.
struct OpenedForReading {
  std::string name;
  Fd fd{-1};
  struct stat st {};
  OpenedForReading(const std::string& path, const std::string& what)
      : name(what.empty() ? path : what + " " + path) {
    if (path.empty()) fail("{}: the path is empty", what.empty() ? "a file to read" : what);
    fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd.fd < 0) fail("{}: cannot open ({})", name, std::strerror(errno));
    if (::fstat(fd.fd, &st) != 0) fail("{}: cannot read ({})", name, std::strerror(errno));
    if (S_ISDIR(st.st_mode)) fail("{}: is a folder, not a file", name);
  }
};

}  // namespace

MappedFile::MappedFile(const std::string& path, const std::string& what) {
  const OpenedForReading file(path, what);
  const std::string& name = file.name;
  const struct stat& st = file.st;
  const Fd& fd = file.fd;
  if (!S_ISREG(st.st_mode))
    fail("{}: is {}, not a file (mtp-exp reads regular files here)", name,
         describe_file_type(st.st_mode));
  size_ = size_t(st.st_size);
  if (size_ == 0) return;
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (p == MAP_FAILED) fail("{}: cannot map ({})", name, std::strerror(errno));
  data_ = static_cast<const std::uint8_t*>(p);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<std::uint8_t*>(data_), size_);
}

std::vector<std::uint8_t> read_file_bytes(const std::string& path, const std::string& what,
                                          std::uint64_t limit, bool pipes) {
  OpenedForReading file(path, what);
  const std::string& name = file.name;
  const struct stat& st = file.st;
  Fd& fd = file.fd;
  const bool regular = S_ISREG(st.st_mode);
  if (!regular && !(pipes && S_ISFIFO(st.st_mode)))
    fail("{}: is {}, not a file (mtp-exp reads {})", name, describe_file_type(st.st_mode),
         pipes ? "regular files and pipes" : "regular files here");
  if (S_ISFIFO(st.st_mode)) {
    // A named pipe, known to be one: opened again to wait for its writer (a read
    // without one would see the end at once).
    const int blocking = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (blocking < 0) fail("{}: cannot open ({})", name, std::strerror(errno));
    ::close(fd.fd);
    fd.fd = blocking;
  } else {
    ::fcntl(fd.fd, F_SETFL, 0);
  }
  std::vector<std::uint8_t> bytes;
  size_t at = 0;
  // Reads into bytes[at, at + n); false at the end of the file.
  auto read_some = [&](size_t n) {
    for (;;) {
      const ssize_t got = ::read(fd.fd, bytes.data() + at, n);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) fail("{}: read error ({})", name, std::strerror(errno));
      at += size_t(got);
      return got > 0;
    }
  };
  if (regular) {
    const auto size = std::uint64_t(st.st_size);
    if (size > limit)
      fail("{}: {} is more than the {} mtp-exp reads from such a file", name, format_bytes(size),
           format_bytes(limit));
    // (Small files cannot exhaust memory: only large ones are worth the look.)
    if (size > kMemoryCheckStep) {
      const std::uint64_t available = available_memory_bytes();
      if (size > available)
        fail("{}: reading its {} needs more memory than the {} available", name, format_bytes(size),
             format_bytes(available));
    }
    // The whole file into a buffer of its size: one allocation, no copy.
    bytes.resize(size_t(size));
    while (at < bytes.size() && read_some(bytes.size() - at)) {
    }
    bytes.resize(at);
    if (at < size) return bytes;  // it shrank while being read
  }
  // A pipe (or a file that grew while being read): in chunks, to the end or the limit,
  // the memory checked as it grows.
  constexpr size_t kChunk = size_t(1) << 20;
  std::uint64_t checked = at + kMemoryCheckStep;
  for (;;) {
    if (at > limit)
      fail("{}: more than the {} mtp-exp reads from {}", name, format_bytes(limit),
           regular ? "such a file" : "a pipe");
    if (at >= checked) {
      checked = at + kMemoryCheckStep;
      if (checked > available_memory_bytes())
        fail("{}: more than the memory available ({} read so far)", name, format_bytes(at));
    }
    bytes.resize(at + kChunk);
    const bool more = read_some(kChunk);
    bytes.resize(at);
    if (!more) break;
  }
  return bytes;
}

void write_file_atomic(const std::string& path, const void* bytes, size_t size,
                       const WriteOptions& options) {
  const Target t = resolve_target(path, options);
  if (t.direct) {
    write_direct(t, bytes, size);
    return;
  }
  // A regular file (or none yet) at t.path, a link's target included: one staged file.
  StagedFiles file;
  file.stage(t.path, bytes, size);
  file.commit();
}

StagedFiles::~StagedFiles() {
  for (const auto& [tmp, target] : staged_) ::unlink(tmp.c_str());
}

void StagedFiles::stage(const std::string& path, const void* bytes, size_t size) {
  const std::string tmp = reserve(path);
  write_temporary(tmp, path, bytes, size);
}

std::string StagedFiles::reserve(const std::string& path) {
  const Target t = resolve_target(path, {});
  for (const auto& [tmp, target] : staged_) MTP_CHECK(target != t.path, "{}: staged twice", path);
  remove_stale_temporaries(folder_of(t.path), {fs::path(t.path).filename().string()}, false);
  staged_.emplace_back(temporary_name(t.path), t.path);
  return staged_.back().first;
}

const std::string& StagedFiles::temporary(const std::string& path) const {
  for (const auto& [tmp, target] : staged_)
    if (target == path) return tmp;
  fail("{}: not staged", path);
}

void StagedFiles::drop(const std::string& path) {
  for (auto it = staged_.begin(); it != staged_.end(); ++it)
    if (it->second == path) {
      ::unlink(it->first.c_str());
      staged_.erase(it);
      return;
    }
}

void StagedFiles::commit() {
  std::set<std::string> folders;
  for (auto it = staged_.begin(); it != staged_.end(); it = staged_.erase(it)) {
    if (::rename(it->first.c_str(), it->second.c_str()) != 0)
      fail("{}: cannot rename into place ({})", it->second, std::strerror(errno));
    folders.insert(folder_of(it->second));
  }
  for (const std::string& f : folders) sync_folder(f);
}

void remove_stale_temporaries(const std::string& dir, const std::vector<std::string>& targets,
                              bool all_gone) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> stale;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    for (const std::string& target : targets) {
      const std::string prefix = target + ".tmp.";
      std::string host;
      long pid = 0;
      if (name.rfind(prefix, 0) == 0 && parse_writer(name.substr(prefix.size()), host, pid) &&
          (all_gone || writer_gone(host, pid)))
        stale.push_back(name);
    }
  }
  ::closedir(d);
  for (const std::string& name : stale) ::unlink((dir + "/" + name).c_str());
}

void sync_folder(const std::string& dir) {
  const Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.fd < 0) fail("{}: cannot open the folder to sync it ({})", dir, std::strerror(errno));
  // Some file systems cannot sync a folder (EINVAL); their renames are as durable as
  // they get.
  if (::fsync(fd.fd) != 0 && errno != EINVAL && errno != EROFS)
    fail("{}: cannot sync the folder ({})", dir, std::strerror(errno));
}

}  // namespace mtp
