#include "mtp/experiments/layer_command.hpp"

#include <cmath>
#include <type_traits>

#include "mtp/core/safetensors.hpp"
#include "mtp/experiments/any_layer.hpp"
#include "mtp/experiments/config.hpp"
#include "mtp/experiments/registry.hpp"
#include "mtp/experiments/trainer.hpp"

namespace mtp::exp {

void run_layer(const LayerArgs& a) {
  const MixerEntry& entry =
      check_layer_flags(a.cell, a.aggregator, a.perspectives,
                        /*noise=*/0.0, a.noise_mode, a.top_k, a.fixed_weights);
  if (a.dtype != "f32" && a.dtype != "f64") usage_fail("--dtype must be f32 or f64");
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

template <class S>
std::unique_ptr<AnyLayer<S>> make_layer(const LayerSpec& spec) {
  const MixerEntry& entry =
      check_layer_flags(spec.cell, spec.aggregator, spec.perspectives, spec.noise, spec.noise_mode,
                        spec.top_k, spec.fixed_weights);
  if (spec.input < 1 || spec.input > 65536)
    usage_fail("input_size must be in [1, 65536], got {}", spec.input);
  if (spec.hidden < 1 || spec.hidden > 65536)
    usage_fail("hidden_size must be in [1, 65536], got {}", spec.hidden);
  if (!std::isfinite(spec.decay_spread)) usage_fail("--decay-spread must be finite");
  if constexpr (std::is_same_v<S, float>)
    return entry.make_layer_f32(spec);
  else
    return entry.make_layer_f64(spec);
}
template std::unique_ptr<AnyLayer<float>> make_layer(const LayerSpec&);
template std::unique_ptr<AnyLayer<double>> make_layer(const LayerSpec&);

}  // namespace mtp::exp
