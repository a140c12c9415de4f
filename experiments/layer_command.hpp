// `mtp-exp layer`: one wrapped layer on x (T,B,I) from safetensors files, for
// interoperability and testing (docs/contract.md §11.8).
#pragma once

#include <string>
#include <vector>

namespace mtp::exp {

struct LayerArgs {
  std::string cell = "gru";
  int perspectives = 1;
  std::string aggregator = "mean";
  std::vector<double> fixed_weights;
  std::string noise_mode = "fixed";  // learned adds selector.noise.weight (unused: eval mode)
  int top_k = 0;
  std::string params, input, output;
  std::string dtype = "f32";    // compute precision: f32 (oneDNN) or f64 (Eigen)
  std::string backend = "cpu";  // cpu | cuda (needs a build with MTP_CUDA and a GPU)
  int threads = 0;
};

// Reads params and input, writes y (and with dy: grad.x, grad.<param>) to output.
void run_layer(const LayerArgs& args);

}  // namespace mtp::exp
