// What a run will take in memory, estimated before anything large is allocated, so that
// a run too large for the machine is refused with the amount (and where it goes)
// instead of ending in std::bad_alloc or the OOM killer.
#pragma once

#include <string>

#include "mtp/core/system_memory.hpp"
#include "mtp/experiments/config.hpp"
#include "mtp/experiments/dispatch.hpp"

namespace mtp::exp {

struct MemoryEstimate {
  double parameters = 0;   // values and gradients
  double optimizer = 0;    // AdamW's two moments
  double activations = 0;  // what forward keeps for backward, and backward's scratch
  double checkpoint = 0;   // the copies a checkpoint or the final model is written from
  double data = 0;         // the validation set, the training corpus
  // The process itself before any model: code, oneDNN's kernels and caches, OpenMP's
  // threads (measured: 223 MiB peak for the tiniest run, 2026-11-29).
  double runtime = 256.0 * (1 << 20);
  double total() const {
    return parameters + optimizer + activations + checkpoint + data + runtime;
  }
  // "activations 1.1 GiB, parameters and gradients 40 MiB, ...": the large parts first.
  std::string parts() const;
};

// The parameter count and per-token activations of Model<Mixer> come from a mixer and an
// FFN built and declared but never allocated: counting a model too large for memory
// must not allocate it.
template <class Mixer>
MemoryEstimate estimate_memory(const TrainConfig& c, typename Mixer::Config mixer_config,
                               index_t vocab, double corpus_bytes, bool training) {
  using Cell = typename Mixer::CellType;
  ModelConfig mc{.vocab = vocab, .width = c.width, .layers = c.layers, .ffn = c.ffn};
  ModelFamily<Cell>::configure(mc);
  Mixer mixer(mixer_config);
  typename ModelFamily<Cell>::Ffn ffn(c.width, LayerPosition{.index = 0, .count = c.layers});
  ParamStore<typename Mixer::Scalar> block;  // declared, never finalized
  mixer.declare(block, "mixer.");
  if (c.ffn) ffn.declare(block, "ffn.");
  const double W = double(c.width), V = double(vocab), L = double(c.layers);
  const double params = 2 * V * W + L * (double(block.size()) + 4 * W) + 4 * W;
  const double per_token = double(ModelFor<Mixer>::activation_floats_per_token(mc)) +
                           L * double(mixer.activation_floats_per_token()) +
                           (c.ffn ? L * double(ffn.activation_floats_per_token()) : 0.0);
  const double tokens = double(c.batch) * double(c.seq_len), f = sizeof(float);
  MemoryEstimate m;
  m.parameters = 2 * params * f;
  m.optimizer = training ? 2 * params * f : 0;
  m.activations = tokens * per_token * f;
  // A training state holds the parameters and both moments, copied into the file's
  // tensors and then into its bytes; a model file, the parameters twice.
  m.checkpoint = (training && c.checkpoint_every > 0 ? 6 : 2) * params * f;
  // Each validation batch keeps tokens, targets and groups (int32) per position.
  m.data = double(c.val_batches) * tokens * 12 + corpus_bytes;
  return m;
}

// Throws mtp::Error when `m` exceeds the memory available: "<what> needs about X of
// memory (...), more than the Y available".
void check_memory(const MemoryEstimate& m, const std::string& what);

}  // namespace mtp::exp
