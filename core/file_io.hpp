// Reading and writing files, with errors that name the file and the problem.
//
// Reads are bounded: a regular file or a pipe, never a device, never more than a limit
// or than the memory available. Writes are atomic: the bytes go to a temporary file
// beside the target, which is synced and renamed over it, and the folder is synced, so
// a reader (or a crash) sees the old file or the new one, never half of one. A write
// never replaces what is not a regular file: a symbolic link, a FIFO or a device at the
// target is refused, unless the caller asks (for paths the user named) to write through
// the link to its target, or into the FIFO or device itself.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mtp {

// What read_file_bytes takes unless told otherwise.
inline constexpr std::uint64_t kDefaultReadLimit = std::uint64_t(4) << 30;  // 4 GiB

// The bytes of a regular file, or (with `pipes`) of a pipe (a FIFO, process
// substitution, a piped /dev/stdin) read to its end. Throws mtp::Error "<what> <path>:
// <problem>" (`what` is how the user knows the file, a flag such as "--data", or empty):
// missing, unreadable, a folder or a device, more than `limit` bytes, or more than the
// memory available. Nothing waits on a file before it is known to be one it reads.
std::vector<std::uint8_t> read_file_bytes(const std::string& path, const std::string& what = "",
                                          std::uint64_t limit = kDefaultReadLimit,
                                          bool pipes = true);

// A regular file mapped read-only (a corpus, a token cache): its pages are the file's,
// read on demand and evictable, so a large file costs address space rather than memory.
// Errors as read_file_bytes's; a pipe or device is refused (it cannot be mapped). A file
// replaced by an atomic write keeps its old contents for this mapping.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path, const std::string& what = "");
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  MappedFile& operator=(MappedFile&&) = delete;
  MappedFile(const MappedFile&) = delete;

  const std::uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::string_view text() const { return {reinterpret_cast<const char*>(data_), size_}; }

 private:
  const std::uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

struct WriteOptions {
  // A symbolic link at the path: write (atomically) to the file it points to. Otherwise
  // a link is refused: it is never replaced.
  bool follow_symlink = false;
  // A FIFO or character device at the path (or behind its link, /dev/stdout): write
  // into it directly. Otherwise it is refused: it is never replaced.
  bool write_special = false;
  // For an output the user named on the command line (--output, --emit-slurm): written
  // where they pointed, as cp would.
  static WriteOptions user_named() { return {true, true}; }
};

// Writes `bytes` to `path` atomically (see above), first removing temporary files that
// an earlier writer of `path` on this host left when it was killed. Throws mtp::Error
// naming the path: unwritable folder, disk full, a link or special file refused.
void write_file_atomic(const std::string& path, const void* bytes, size_t size,
                       const WriteOptions& options = {});
inline void write_file_atomic(const std::string& path, std::string_view text,
                              const WriteOptions& options = {}) {
  write_file_atomic(path, text.data(), text.size(), options);
}

// Files written together: each stage() writes a synced temporary file beside its
// target and leaves the target untouched; commit() renames them all into place, in the
// order staged, and syncs their folders. Anything not committed is removed when the
// object dies, so a failure part way (a full disk) changes none of the targets. The
// targets are files mtp owns: links and special files there are refused.
class StagedFiles {
 public:
  StagedFiles() = default;
  StagedFiles(const StagedFiles&) = delete;
  StagedFiles& operator=(const StagedFiles&) = delete;
  ~StagedFiles();

  void stage(const std::string& path, const void* bytes, size_t size);
  void stage(const std::string& path, std::string_view text) {
    stage(path, text.data(), text.size());
  }
  // A temporary name beside `path` for another writer (a child process) to fill;
  // commit() renames it to `path`, and the destructor removes it.
  std::string reserve(const std::string& path);
  // The temporary file behind a staged or reserved target.
  const std::string& temporary(const std::string& path) const;
  // Forgets a staged or reserved target and removes its temporary file.
  void drop(const std::string& path);
  void commit();

 private:
  std::vector<std::pair<std::string, std::string>> staged_;  // (temporary, target)
};

// The temporary files that write_file_atomic and StagedFiles use beside a target
// `<name>` are `<name>.tmp.<host>.<pid>`. Removes those beside the files `names` in `dir`
// whose writer is gone: every one when `all_writers_gone` (the caller holds the folder's
// lock, so no one else writes there), else those of dead processes on this host.
void remove_stale_temporaries(const std::string& dir, const std::vector<std::string>& names,
                              bool all_writers_gone);

// fsync of a folder, so that a rename or removal in it survives a crash.
void sync_folder(const std::string& dir);

// "a folder", "a FIFO", "a character device", ... for a st_mode; "a file" otherwise.
std::string describe_file_type(unsigned mode);

}  // namespace mtp
