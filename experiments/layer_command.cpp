#include "mtp/experiments/layer_command.hpp"

#include "mtp/core/safetensors.hpp"
#include "mtp/experiments/registry.hpp"
#include "mtp/experiments/trainer.hpp"

namespace mtp::exp {

void run_layer(const LayerArgs& a) {
  const MixerEntry& entry = registry().mixer(a.cell, a.aggregator);
  if (a.perspectives < 1 || a.perspectives > 64)
    usage_fail("--perspectives must be in [1, 64], got {}", a.perspectives);
  if (!a.fixed_weights.empty()) registry().check_takes(a.aggregator, "fixed-weights");
  if (!a.fixed_weights.empty()) check_fixed_weights_flag(a.fixed_weights, a.perspectives);
  if (a.dtype != "f32" && a.dtype != "f64") usage_fail("--dtype must be f32 or f64");
  parse_noise_mode(a.noise_mode);
  if (a.top_k < 0) usage_fail("--top-k must be >= 0 (0 keeps all), got {}", a.top_k);
  check_selector_options(a.aggregator, a.perspectives, /*noise=*/0.0, a.noise_mode, a.top_k);
  if (a.params.empty()) usage_fail("--params FILE is required");
  if (a.input.empty()) usage_fail("--input FILE is required");
  if (a.output.empty()) usage_fail("--output FILE is required");
  if (a.backend != "cpu" && a.backend != "cuda")
    usage_fail("--backend must be cpu or cuda, got '{}'", a.backend);
#if MTP_WITH_CUDA
  if (a.backend == "cuda" && !entry.cuda_layer)
    usage_fail("--backend cuda has no device program for --cell {} --aggregator {}", a.cell,
               a.aggregator);
  if (a.backend == "cuda") require_cuda_device();
#else
  if (a.backend == "cuda")
    usage_fail("this build has no CUDA backend (configure with -DMTP_CUDA=ON)");
#endif
  set_threads(a.threads);
  const SafeTensors pf = SafeTensors::load(a.params);
  const SafeTensors in = SafeTensors::load(a.input);
  entry.layer(a, pf, in);
}

}  // namespace mtp::exp
