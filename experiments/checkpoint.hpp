// Model checkpoints: every parameter under its name (docs/contract.md §11.2), float32,
// with the run configuration and progress in __metadata__; and the training state a run
// resumes from (§11.3): parameters, optimiser moments, carried state, progress.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mtp/core/model.hpp"
#include "mtp/core/optim.hpp"
#include "mtp/core/param_store.hpp"
#include "mtp/core/safetensors.hpp"
#include "mtp/experiments/tasks.hpp"

namespace mtp::exp {

inline constexpr const char* kCheckpointFormat = "mtp-checkpoint-1";

// The bytes of a model file: every parameter, with the run configuration, the step and
// the data files it was trained on (their sizes and SHA-256) in its metadata.
std::vector<std::uint8_t> checkpoint_bytes(const ParamStore<float>& params,
                                           const nlohmann::json& config, long long step,
                                           const std::vector<DataFile>& data);

// Reads the run configuration stored in a checkpoint written from checkpoint_bytes.
nlohmann::json checkpoint_config(const SafeTensors& file, const std::string& path);
// The data files a model file or training state records; none for one that records none.
std::vector<DataFile> checkpoint_data_files(const SafeTensors& file, const std::string& path);

// Copies every parameter of `params` from the file; each must be present with the
// same shape, and the file may hold nothing else.
void load_parameters(const SafeTensors& file, const std::string& path, ParamStore<float>& params);

// What load_state_dict did.
struct StateDictReport {
  std::vector<std::string> loaded;    // model tensors filled from the file
  std::vector<std::string> expanded;  // perspective decays filled from another K or time_decay
  std::vector<std::string> missing;   // model tensors the file does not have (left as they were)
  std::vector<std::string> fresh;     // perspective tensors of another shape (left as they were)
  std::vector<std::string> unused;    // file tensors the model has no place for
};

// Loads a state dict saved as safetensors (PyTorch, RWKV-4, another mtp run) by name.
// A tensor fits when its shape matches once leading 1s are dropped (RWKV-4's (1,1,C)
// time mixes fill (C)); any other shape is an error naming the file and tensor.
// A perspective decay `<p>decay` (K,D) is filled, in this order of preference, from a
// stored `<p>decay` of the same shape; else from a stored `<p>decay` with K' rows or
// from RWKV-4's `<p>time_decay` (D): row k = base + spread·(k − (K−1)/2), base the
// loaded rows' mean. Other perspective tensors (the selector) whose shape depends on K
// and differs start fresh when `fresh_perspectives` is set (a K = 1 base grown to K = 3);
// any other shape that does not fit is an error naming the file and tensor.
StateDictReport load_state_dict(const SafeTensors& file, const std::string& path,
                                ParamStore<float>& params, double decay_spread,
                                bool fresh_perspectives = false);

// One row of metrics.csv.
struct MetricsRow {
  long long step;
  std::string split;
  double loss, accuracy, bpb, lr, grad_norm, tokens_per_s, elapsed_s;
};

// Everything a run has counted so far besides the tensors: the metrics rows and the
// running sums behind the next ones. With the parameters, the optimiser moments and the
// carried state it is all a resumed run needs to continue as if never stopped: the
// batches and the selector noise are pure functions of (seed, step).
// Each running sum is declared once, here; the struct, the training state's JSON and its
// reader expand the list.
// clang-format off
#define MTP_TALLY_SUMS(X)                                                            \
  X(long long, step)            /* steps done */                                     \
  X(double, smoothed_tps)       /* tokens/s, exponentially smoothed */               \
  X(double, interval_loss)      /* since the last train row: sums and count */       \
  X(double, interval_acc)                                                            \
  X(long long, interval_n)                                                           \
  X(double, last_norm)          /* the last step's gradient norm */                  \
  X(double, train_loss_tail)    /* over the last 10% of steps: sums and count */     \
  X(double, train_acc_tail)                                                          \
  X(long long, tail_n)                                                               \
  X(double, train_seconds)      /* time in training steps */                         \
  X(double, elapsed_seconds)    /* wall time at the last training state */
// clang-format on
struct TrainTally {
#define X(type, name) type name = 0;
  MTP_TALLY_SUMS(X)
#undef X
  std::vector<MetricsRow> rows;

  // Adds one training step's loss and accuracy to the running sums.
  void add_step(long long index, double loss, double accuracy, double norm, double tps,
                long long tail_from) {
    smoothed_tps = index == 0 ? tps : 0.9 * smoothed_tps + 0.1 * tps;
    interval_loss += loss;
    interval_acc += accuracy;
    ++interval_n;
    last_norm = norm;
    if (index >= tail_from) {
      train_loss_tail += loss;
      train_acc_tail += accuracy;
      ++tail_n;
    }
  }
  // The train row of the steps since the last one; the interval starts over.
  // `bytes_per_label`: a text task's (Task::bytes_per_label(false)); 0 for no bits per byte.
  MetricsRow close_interval(long long step_done, double bytes_per_label, double lr,
                            double elapsed) {
    const bool bpb = bytes_per_label > 0;
    const double mean_loss = interval_loss / double(interval_n);
    MetricsRow row{step_done,
                   "train",
                   mean_loss,
                   interval_acc / double(interval_n),
                   bpb ? mean_loss / std::log(2.0) / bytes_per_label : NAN,
                   lr,
                   last_norm,
                   smoothed_tps,
                   elapsed};
    interval_loss = interval_acc = 0;
    interval_n = 0;
    return row;
  }

  nlohmann::json to_json() const;
  static TrainTally from_json(const nlohmann::json& j);
};

// DIR/metrics.csv from the rows.
std::string metrics_csv(const std::vector<MetricsRow>& rows);

// The training state: parameters under their names, the AdamW moments under
// optimizer.m.<name> / optimizer.v.<name>, the carried stream state under
// stream.<group>.<i>, and the configuration, tally and data files (size, SHA-256) in the
// metadata. Written atomically: a kill leaves the previous one intact.
void save_training_state(const std::filesystem::path& path, const ParamStore<float>& params,
                         AdamW<float>& opt, const ModelState<float>& state,
                         const nlohmann::json& config, const TrainTally& tally,
                         const std::vector<DataFile>& data);
// Restores it into a model built from the same configuration; other settings, changed
// data, anything missing or of another shape is an error naming the file.
TrainTally load_training_state(const std::filesystem::path& path, ParamStore<float>& params,
                               AdamW<float>& opt, ModelState<float>& state,
                               const nlohmann::json& config, const std::vector<DataFile>& data);

}  // namespace mtp::exp
