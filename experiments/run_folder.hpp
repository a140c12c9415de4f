// A run folder (DIR of `mtp-exp train --out DIR`) and its life: who may write in it,
// and what it holds.
//
// Lock. A run holds an advisory lock (flock on DIR/.lock) for its whole life, so two
// processes never train into one folder: the second is refused with the holder named
// (FolderBusy; mtp-exp exits with status 3). The lock dies with its process, kill -9
// included. A sweep takes a run's lock before it decides what to do with the folder and
// hands it to the child it starts (kInheritedLockVariable), so nothing can slip between.
//
// States. A folder is
//   empty        no run's files;
//   finished     result.json holds the same configuration as config.json (written
//                last, atomically, when a run succeeds): the run is done;
//   failed       failed.json says why (a run that stopped with an error);
//   unfinished   config.json without a matching result (killed, or still running:
//                the lock tells); with training-state.safetensors it can resume.
// A new run goes into an empty folder, or replaces the run there with --overwrite
// (result.json is removed first, so the folder never looks done with old outputs).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mtp/core/error.hpp"

namespace mtp::exp {

// Another process holds the folder's lock. mtp-exp exits with status 3.
struct FolderBusy : Error {
  using Error::Error;
};

// The environment variable through which a sweep passes a run's held lock (the number
// of an inherited descriptor) to the child that trains it.
inline constexpr const char* kInheritedLockVariable = "MTP_INHERITED_LOCK_FD";

class FolderLock {
 public:
  // Creates `dir` if needed and takes DIR/<name> without waiting, or throws FolderBusy
  // naming `what` (how the user knows the folder: "--out runs/x") and the holder. A lock
  // this process inherited from a sweep (kInheritedLockVariable) on the same file is
  // taken over.
  static FolderLock take(const std::filesystem::path& dir, const std::string& what,
                         const std::string& name = ".lock");
  // The same, or nothing when another process holds it.
  static std::optional<FolderLock> try_take(const std::filesystem::path& dir,
                                            const std::string& what,
                                            const std::string& name = ".lock");
  // Waits for it (sweep.json's short critical section).
  static FolderLock wait(const std::filesystem::path& dir, const std::string& what,
                         const std::string& name = ".lock");
  // Who holds the lock of `dir`, as written in its lock file ("pid 12 on host h since ...").
  static std::string holder(const std::filesystem::path& dir, const std::string& name = ".lock");

  FolderLock(FolderLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  FolderLock& operator=(FolderLock&& o) noexcept;
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;
  ~FolderLock();

  // The held descriptor (to hand to a child, which keeps the lock after we close ours).
  int fd() const { return fd_; }
  void release();

 private:
  explicit FolderLock(int fd) : fd_(fd) {}
  static std::optional<FolderLock> acquire(const std::filesystem::path& dir,
                                           const std::string& what, const std::string& name,
                                           bool wait);
  int fd_ = -1;
};

// The files a run writes in its folder (besides .lock and a sweep's log.txt).
inline constexpr const char* kConfigFile = "config.json";
inline constexpr const char* kResultFile = "result.json";
inline constexpr const char* kFailedFile = "failed.json";
inline constexpr const char* kModelFile = "model.safetensors";
inline constexpr const char* kMetricsFile = "metrics.csv";
// Speed and wall time: apart from result.json, which holds only what a rerun reproduces
// bit for bit.
inline constexpr const char* kThroughputFile = "throughput.json";
inline constexpr const char* kTrainingStateFile = "training-state.safetensors";
// All of them, in the order a replaced run's are removed: result.json first, so that the
// folder never looks finished with old outputs.
inline constexpr const char* kRunFiles[] = {kResultFile,  kFailedFile,     kModelFile,
                                            kMetricsFile, kThroughputFile, kTrainingStateFile,
                                            kConfigFile};
std::vector<std::string> run_file_names();

enum class RunState { empty, finished, failed, unfinished };
const char* run_state_name(RunState s);

struct RunFolderStatus {
  RunState state = RunState::empty;
  std::vector<std::string> run_files;  // which of the run's files are present
  bool resumable = false;              // training-state.safetensors is present
  nlohmann::json config;               // config.json's "config" (null when unreadable)
  nlohmann::json result;               // result.json, parsed, when the run is finished
  std::string detail;                  // failed: the error; unfinished: why it is not finished
};

// What `dir` holds (a missing folder is empty). Unreadable or malformed files make a
// folder unfinished, with the reason in `detail`; this never throws for their content.
RunFolderStatus inspect_run_folder(const std::filesystem::path& dir);

// A run's settings as compared between its files: the configuration without the
// folder and thread count, which a resumed run may change.
nlohmann::json run_settings(nlohmann::json config);

// For a new run in `dir`, which the caller has locked: refuses (UsageError) a folder
// that holds a run, unless `overwrite`, in which case that run's files are removed
// (result.json first); removes temporaries that killed writers left.
void prepare_new_run(const std::filesystem::path& dir, const std::string& what, bool overwrite);

// Records that the run in `dir` stopped with `error` after `steps_done` training steps
// (failed.json), or forgets an earlier failure when a new attempt starts.
void mark_run_failed(const std::filesystem::path& dir, const std::string& error,
                     long long steps_done);
void clear_run_failure(const std::filesystem::path& dir);

}  // namespace mtp::exp
