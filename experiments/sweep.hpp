// `mtp-exp sweep`: the Cartesian product of a grid over train flags, each point a run
// of `mtp-exp train` in its own folder, run as child processes, `--jobs` at a time.
//
//   mtp-exp sweep --grid "cell=gru,lstm;perspectives=1,3;seed=0,1" [train flags] --out DIR
//
// A run is finished when its folder is done (result.json matching its config.json, see
// run_folder.hpp), so a sweep that is killed and started again skips what is done,
// resumes what has a training state and redoes the rest. Each run is trained under its
// folder's lock, so sweeps (or shards) that meet on a run never train it twice.
// `--shard i/n` runs the runs whose index is i mod n, so n machines (a Slurm array,
// `--emit-slurm`) can share one sweep folder.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace mtp::exp {

struct GridAxis {
  std::string flag;                 // a train flag without "--" (cell, perspectives, ...)
  std::vector<std::string> values;  // as given
};

// "cell=gru,lstm;perspectives=1,3" → axes, validated against the train flags; throws
// UsageError naming the problem.
std::vector<GridAxis> parse_grid(const std::string& grid);

struct SweepRun {
  int index = 0;                                           // position in the product
  std::vector<std::pair<std::string, std::string>> point;  // (flag, value) per axis
  // "cell-gru_perspectives-3_seed-0": values with other characters than letters, digits,
  // '.' and '-' keep those, '_' for the rest, and a hash of the value, so that no two
  // runs share a folder.
  std::string id;
};

// The product in a fixed order: the last axis varies fastest.
std::vector<SweepRun> expand_grid(const std::vector<GridAxis>& axes);

// A run's train arguments: the shared ones, each "{flag}" in them replaced by the run's
// value on that grid axis (--init-from "base/runs/cell-{cell}_seed-{seed}/model.safetensors":
// every run starts from the base of its own cell and seed), then its grid point
// (switches as bare flags when true), then its folder and thread count.
std::vector<std::string> run_arguments(const SweepRun& run, const std::vector<std::string>& base,
                                       const std::string& out, int threads);

// `text` with each "{flag}" naming an axis of `point` replaced by the point's value;
// throws UsageError for a "{flag}" that names a train flag no axis sets.
std::string expand_placeholders(const std::string& text,
                                const std::vector<std::pair<std::string, std::string>>& point);

// The shared flags whose value holds a placeholder, as (flag without "--", the value as
// given): a report shows such a setting by its template, which all runs share.
std::vector<std::pair<std::string, std::string>> templated_flags(
    const std::vector<std::string>& base);

struct SweepOptions {
  std::string grid;
  std::vector<std::string> base_args;  // train flags shared by every run
  std::string out;
  int jobs = 1;
  int threads = 0;  // per run; 0: cores / jobs
  int shard = 0, shards = 1;
  std::string emit_slurm;  // write an sbatch array script instead of running
  int slurm_tasks = 0;     // its array size (0: one task per run)
  int slurm_cpus = 2;
  std::string command_line;  // recorded in sweep.json
};

// Runs (or, with emit_slurm, schedules) the sweep, and returns 0 when every run of its
// shard is finished; a run held by another process is waited for. Throws mtp::Error
// when runs failed (named, with their logs).
int run_sweep(const SweepOptions& opt);

}  // namespace mtp::exp
