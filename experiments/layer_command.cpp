#include "mtp/experiments/layer_command.hpp"

#include <set>

#include "mtp/core/safetensors.hpp"
#include "mtp/experiments/dispatch.hpp"
#include "mtp/experiments/trainer.hpp"
#if MTP_WITH_CUDA
#include "mtp/experiments/layer_cuda.hpp"
#endif

namespace mtp::exp {
namespace {

template <class Mixer>
void run(const LayerArgs& a, const SafeTensors& pf, const SafeTensors& in) {
  using S = typename Mixer::Scalar;
  const auto shape_of = [&](const std::string& name) {
    MTP_CHECK(pf.has(name), "{}: missing tensor '{}'", a.params, name);
    return pf.at(name).shape;
  };
  typename Mixer::Config mc;
  try {
    mc.cell = Mixer::CellType::infer_config(shape_of);
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.rfind(a.params, 0) == 0) throw;  // already names the file
    fail("{}: {}", a.params, msg);
  }
  mc.perspectives = a.perspectives;
  mc.aggregator = aggregator_options<typename Mixer::AggregatorType>(
      {0.0, a.fixed_weights, parse_noise_mode(a.noise_mode), a.top_k});
  Mixer layer(mc);
  ParamStore<S> store;
  attach_params(layer, store);

  // Exactly the tensors this configuration needs, each with the shape it implies.
  std::set<std::string> needed;
  for (const ParamInfo& p : store.infos()) {
    needed.insert(p.name);
    MTP_CHECK(pf.has(p.name), "{}: missing tensor '{}' (needed by {} K={} {})", a.params, p.name,
              a.cell, a.perspectives, a.aggregator);
    const StoredTensor& t = pf.at(p.name);
    MTP_CHECK(t.shape == p.shape.dims(), "{}: tensor '{}' has shape {}, expected {}", a.params,
              p.name, shape_str(t.shape), p.shape.str());
    const std::vector<S> v = t.to<S>(a.params + ": tensor '" + p.name + "'");
    std::copy(v.begin(), v.end(), store.values() + p.offset);
  }
  for (const auto& [name, t] : pf.tensors)
    MTP_CHECK(needed.count(name), "{}: unexpected tensor '{}' for {} K={} {}", a.params, name,
              a.cell, a.perspectives, a.aggregator);
  store.mark_all_set();

  MTP_CHECK(in.has("x"), "{}: missing tensor 'x'", a.input);
  for (const auto& [name, t] : in.tensors)
    MTP_CHECK(name == "x" || name == "dy", "{}: unexpected tensor '{}' (expected x, dy)", a.input,
              name);
  const StoredTensor& xs = in.at("x");
  MTP_CHECK(xs.shape.size() == 3 && xs.shape[2] == layer.input_width() && xs.shape[0] > 0 &&
                xs.shape[1] > 0,
            "{}: x has shape {}, expected (T,B,{})", a.input, shape_str(xs.shape),
            layer.input_width());
  const index_t T = xs.shape[0], B = xs.shape[1];
  const std::vector<S> x = xs.to<S>(a.input + ": tensor 'x'");
  const Shape xshape{T, B, layer.input_width()}, yshape{T, B, layer.output_width()};
  std::vector<S> dy;
  if (in.has("dy")) {
    const StoredTensor& dys = in.at("dy");
    MTP_CHECK(dys.shape == yshape.dims(), "{}: dy has shape {}, expected {}", a.input,
              shape_str(dys.shape), yshape.str());
    dy = dys.to<S>(a.input + ": tensor 'dy'");
  }
  const CView<S> xv(x.data(), xshape);
  const CView<S> dyv = dy.empty() ? CView<S>() : CView<S>(dy.data(), yshape);
  Tensor<S> y(yshape), dx(xshape);
  store.zero_grad();
  if (a.backend == "cuda") {
#if MTP_WITH_CUDA
    run_layer_cuda<Mixer>({&mc, &store, xv, y.view(), dyv, dx.view()});
#endif
  } else {
    layer.forward(xv, y.view(), StepContext{});
    if (!dy.empty()) layer.backward(xv, dyv, dx.view());
  }

  SafeTensors out;
  out.put("y", yshape.dims(), y.data());
  if (!dy.empty()) {
    out.put("grad.x", xshape.dims(), dx.data());
    for (const ParamInfo& p : store.infos())
      out.put("grad." + p.name, p.shape.dims(), store.grads() + p.offset);
  }
  out.metadata["cell"] = a.cell;
  out.metadata["perspectives"] = std::to_string(a.perspectives);
  out.metadata["aggregator"] = a.aggregator;
  out.metadata["dtype"] = a.dtype;
  out.save(a.output, WriteOptions::user_named());
}

}  // namespace

void run_layer(const LayerArgs& a) {
  if (std::find(kCells.begin(), kCells.end(), a.cell) == kCells.end())
    usage_fail("--cell '{}' is not a known cell", a.cell);
  if (std::find(kAggregators.begin(), kAggregators.end(), a.aggregator) == kAggregators.end())
    usage_fail("--aggregator '{}' is not one of mean, learned, fixed", a.aggregator);
  if (a.perspectives < 1 || a.perspectives > 64)
    usage_fail("--perspectives must be in [1, 64], got {}", a.perspectives);
  if (!a.fixed_weights.empty() && a.aggregator != "fixed")
    usage_fail("--fixed-weights needs --aggregator fixed");
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
  if (a.backend == "cuda") require_cuda_device();
#else
  if (a.backend == "cuda")
    usage_fail("this build has no CUDA backend (configure with -DMTP_CUDA=ON)");
#endif
  set_threads(a.threads);
  const SafeTensors pf = SafeTensors::load(a.params);
  const SafeTensors in = SafeTensors::load(a.input);
  if (a.dtype == "f64")
    with_mixer<double>(a.cell, a.aggregator, [&]<class M>() { run<M>(a, pf, in); });
  else
    with_mixer<float>(a.cell, a.aggregator, [&]<class M>() { run<M>(a, pf, in); });
}

}  // namespace mtp::exp
