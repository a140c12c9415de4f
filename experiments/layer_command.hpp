// `mtp-exp layer`: one wrapped layer on x (T,B,I) from safetensors files, for
// interoperability and testing (docs/contract.md §11.8).
#pragma once

#include <set>
#include <string>
#include <vector>

#include "mtp/core/safetensors.hpp"
#include "mtp/experiments/dispatch.hpp"
#include "mtp/experiments/layer_cuda.hpp"

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

// Reads params and input, writes y (and with dy: grad.x, grad.<param>) to output; the
// pair comes from registry().
void run_layer(const LayerArgs& args);

// One pair's layer: the configuration inferred from the parameter file's shapes, the
// parameters loaded, forward (and backward with dy) on the CPU, or on the GPU with kCuda.
template <class Mixer, bool kCuda>
void run_layer_as(const LayerArgs& a, const SafeTensors& pf, const SafeTensors& in) {
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
    if constexpr (kCuda) run_layer_cuda<Mixer>({&mc, &store, xv, y.view(), dyv, dx.view()});
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

}  // namespace mtp::exp
