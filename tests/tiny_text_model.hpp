// A small byte-level text model trained for a few steps on a repetitive corpus: enough
// for tests that need a real checkpoint (generation, benchmark scoring).
#pragma once

#include <string>

#include "mtp/experiments/trainer.hpp"
#include "temp_dir.hpp"

namespace mtp::test {

// Trains `cell` for `steps` steps in dir/run and returns the checkpoint's path.
inline std::string train_tiny_text_model(const TempDir& dir, const std::string& cell,
                                         long long steps) {
  std::string text;
  for (int i = 0; i < 400; ++i) text += "the cat sat on the mat. ";
  exp::TrainConfig c;
  c.cell = cell;
  c.task = "text";
  c.data = dir.file("corpus.txt", text).string();
  c.steps = steps;
  c.batch = 4;
  c.seq_len = 16;
  c.width = 16;
  c.layers = 2;
  c.val_batches = 1;
  c.threads = 1;
  c.out = (dir.path() / "run").string();
  exp::run_training(c);
  return c.out + "/model.safetensors";
}

}  // namespace mtp::test
