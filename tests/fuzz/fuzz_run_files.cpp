// Fuzz target: the readers of run and sweep folders, on arbitrary bytes and layouts,
// through the functions mtp-exp uses: a run folder's state (inspect_run_folder, which
// never throws), metrics.csv (read_run_curves), a stored configuration
// (train_config_from_json + validate) and a whole sweep folder (write_report, tables
// only). The first byte picks the layout; the rest holds, split at NUL bytes,
// sweep.json, config.json, result.json and metrics.csv. Bad input must end in an
// mtp::Error or UsageError, never a crash, a sanitizer report or another exception.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "mtp/core/error.hpp"
#include "mtp/experiments/config.hpp"
#include "mtp/experiments/json_file.hpp"
#include "mtp/experiments/report.hpp"
#include "mtp/experiments/run_folder.hpp"

namespace {

namespace fs = std::filesystem;

// One scratch folder per process, removed at exit (its path on the heap outlives
// static destruction, when the exit handler runs).
const fs::path* scratch_dir = nullptr;

void remove_scratch() {
  std::error_code ec;
  fs::remove_all(*scratch_dir, ec);
}

const fs::path& scratch() {
  if (scratch_dir == nullptr) {
    std::string tmpl = (fs::temp_directory_path() / "mtp-fuzz-runs-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    scratch_dir = new fs::path(tmpl);
    std::atexit(remove_scratch);
  }
  return *scratch_dir;
}

enum Layout : std::uint8_t {
  kSweepJson = 1 << 0,
  kConfig = 1 << 1,
  kResult = 1 << 2,
  kResultIsFolder = 1 << 3,  // when kResult is not set
  kMetrics = 1 << 4,
  kSecondRun = 1 << 5,        // runs/b, a copy of runs/a
  kMetricsIsDevice = 1 << 6,  // metrics.csv is a link to /dev/zero
};

void write(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary).write(s.data(), std::streamsize(s.size()));
}

void fill_run(const fs::path& dir, std::uint8_t layout, const std::vector<std::string>& part) {
  fs::create_directories(dir);
  if (layout & kConfig) write(dir / "config.json", part[1]);
  if (layout & kResult)
    write(dir / "result.json", part[2]);
  else if (layout & kResultIsFolder)
    fs::create_directories(dir / "result.json");
  if (layout & kMetricsIsDevice)
    fs::create_symlink("/dev/zero", dir / "metrics.csv");
  else if (layout & kMetrics)
    write(dir / "metrics.csv", part[3]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t layout = data[0];
  std::vector<std::string> part(4);
  size_t p = 0;
  for (std::size_t i = 1; i < size; ++i) {
    if (data[i] == 0 && p < 3)
      ++p;
    else
      part[p] += char(data[i]);
  }
  const fs::path root = scratch() / "sweep";
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::create_directories(root / "runs");
  if (layout & kSweepJson) write(root / "sweep.json", part[0]);
  fill_run(root / "runs" / "a", layout, part);
  if (layout & kSecondRun) fill_run(root / "runs" / "b", layout, part);

  // Inspecting a folder never throws: whatever its files hold, it has a state.
  const mtp::exp::RunFolderStatus status = mtp::exp::inspect_run_folder(root / "runs" / "a");
  if (status.state == mtp::exp::RunState::finished && !(layout & kResult)) std::abort();
  for (bool text : {false, true}) {
    try {
      mtp::exp::read_run_curves((root / "runs" / "a" / "metrics.csv").string(), text);
    } catch (const mtp::Error&) {
    }
  }
  try {
    const nlohmann::json j = mtp::exp::parse_json(part[1], "config.json");
    if (j.is_object() && j.contains("config"))
      mtp::exp::validate(mtp::exp::train_config_from_json(j["config"], "config.json"));
  } catch (const mtp::Error&) {
  } catch (const mtp::UsageError&) {
  }
  try {
    mtp::exp::ReportOptions tables_only;
    tables_only.plots = false;
    mtp::exp::write_report(root.string(), tables_only);
  } catch (const mtp::Error&) {
  } catch (const mtp::UsageError&) {
  }
  return 0;
}
