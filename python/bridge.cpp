// _mtp, the C++ half of the Python package mtp: one perspective layer (AnyLayer, any
// registered cell and aggregator, float or double) on torch tensors. The Python half
// (mtp/layers.py) owns the parameters and the autograd function; this side checks every
// tensor it is given (dtype, device, layout, shape) before the layer sees it, so a bad
// call raises instead of crashing, and reads and writes the tensors in place.
//
// Shapes: x (T,B,I), y (T,B,O), state (B,K,Sw), flat parameters (P).
#include <torch/extension.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "mtp/core/error.hpp"
#include "mtp/experiments/any_layer.hpp"
#include "mtp/experiments/registry.hpp"
#include "mtp/version.hpp"

namespace {

using mtp::index_t;
namespace py = pybind11;

// A checked tensor's shape (rank <= 4), and any tensor's shape for a message.
mtp::Shape shape_of(const at::Tensor& t) {
  return mtp::Shape::from(std::vector<index_t>(t.sizes().begin(), t.sizes().end()));
}
std::string shape_text(const at::Tensor& t) {
  return mtp::shape_str(std::vector<index_t>(t.sizes().begin(), t.sizes().end()));
}

// As Python spells the two the layers take; torch's C++ name for the others.
std::string dtype_name(at::ScalarType t) {
  if (t == at::kFloat) return "torch.float32";
  if (t == at::kDouble) return "torch.float64";
  return c10::toString(t);
}

class Layer {
  template <class L>
  using scalar_of = typename std::remove_reference_t<L>::S;

  template <class F>
  decltype(auto) visit(F&& f) const {
    return f64_ ? f(*d_) : f(*f_);
  }
  template <class L>
  static scalar_of<L>* data(const at::Tensor& t) {
    return t.data_ptr<scalar_of<L>>();
  }
  template <class S>
  static mtp::View<S> view(const at::Tensor& t) {
    return mtp::View<S>(t.data_ptr<S>(), shape_of(t));
  }

 public:
  Layer(const mtp::exp::LayerSpec& spec, bool f64) : f64_(f64) {
    if (f64)
      d_ = mtp::exp::make_layer<double>(spec);
    else
      f_ = mtp::exp::make_layer<float>(spec);
  }

  at::ScalarType dtype() const { return f64_ ? at::kDouble : at::kFloat; }
  int64_t param_count() const {
    return visit([](auto& l) { return l.param_count(); });
  }
  int64_t input_width() const {
    return visit([](auto& l) { return l.input_width(); });
  }
  int64_t output_width() const {
    return visit([](auto& l) { return l.output_width(); });
  }
  int64_t state_width() const {
    return visit([](auto& l) { return l.state_width(); });
  }
  int perspectives() const {
    return visit([](auto& l) { return l.perspectives(); });
  }
  bool used_fast_path() const {
    return visit([](auto& l) { return l.used_fast_path(); });
  }
  // Counts forwards: a backward belongs to the forward whose count it saw.
  uint64_t generation() const { return generation_; }

  // [(name, shape, offset, perspective?)] in the flat layout.
  std::vector<std::tuple<std::string, std::vector<int64_t>, int64_t, bool>> params() const {
    return visit([](auto& l) {
      std::vector<std::tuple<std::string, std::vector<int64_t>, int64_t, bool>> out;
      for (const mtp::ParamInfo& p : l.params())
        out.emplace_back(p.name, p.shape.dims(), p.offset, p.role == mtp::ParamRole::perspective);
      return out;
    });
  }

  void init(const at::Tensor& flat, uint64_t seed) {
    check_flat(flat);
    visit([&](auto& l) { l.init(data<decltype(l)>(flat), seed); });
  }

  // x (T,B,I); state (B,K,Sw) in: the initial state, out: the final one. Returns y.
  at::Tensor forward(const at::Tensor& flat, const at::Tensor& x, const at::Tensor& state,
                     bool training, uint64_t seed) {
    check_flat(flat);
    check_tensor(x, "x");
    MTP_CHECK(x.dim() == 3 && x.size(2) == input_width() && x.size(0) > 0 && x.size(1) > 0,
              "x has shape {}, expected (T,B,{}) with T, B >= 1", shape_text(x), input_width());
    const int64_t T = x.size(0), B = x.size(1);
    check_tensor(state, "state");
    check_sizes(state, {B, perspectives(), state_width()}, "state");
    at::Tensor y = at::empty({T, B, output_width()}, x.options());
    const mtp::StepContext ctx{.training = training, .seed = seed, .step = 0};
    ++generation_;
    py::gil_scoped_release no_gil;
    visit([&](auto& l) {
      using S = scalar_of<decltype(l)>;
      l.forward(data<decltype(l)>(flat), view<S>(x), view<S>(y), ctx, view<S>(state));
    });
    return y;
  }

  // The backward of this layer's last forward: dy (T,B,O), dsT (B,K,Sw) or None →
  // (dx, ds0 or None, parameter gradients (P)).
  std::tuple<at::Tensor, std::optional<at::Tensor>, at::Tensor> backward(
      const at::Tensor& flat, const at::Tensor& x, const at::Tensor& dy,
      const std::optional<at::Tensor>& dsT, bool want_ds0) {
    check_flat(flat);
    check_tensor(x, "x");
    check_tensor(dy, "dy");
    MTP_CHECK(x.dim() == 3, "x has shape {}, expected (T,B,{})", shape_text(x), input_width());
    const int64_t T = x.size(0), B = x.size(1);
    check_sizes(dy, {T, B, output_width()}, "dy");
    const std::vector<int64_t> state_sizes{B, perspectives(), state_width()};
    if (dsT) {
      check_tensor(*dsT, "dsT");
      check_sizes(*dsT, state_sizes, "dsT");
    }
    at::Tensor dx = at::empty_like(x);
    at::Tensor grads = at::zeros({param_count()}, flat.options());
    std::optional<at::Tensor> ds0;
    if (want_ds0) ds0 = at::empty(state_sizes, x.options());
    py::gil_scoped_release no_gil;
    visit([&](auto& l) {
      using S = scalar_of<decltype(l)>;
      l.backward(data<decltype(l)>(flat), data<decltype(l)>(grads), view<S>(x), view<S>(dy),
                 view<S>(dx), dsT ? mtp::CView<S>(view<S>(*dsT)) : mtp::CView<S>(),
                 ds0 ? view<S>(*ds0) : mtp::View<S>());
    });
    return {dx, ds0, grads};
  }

 private:
  void check_tensor(const at::Tensor& t, const char* what) const {
    MTP_CHECK(t.defined(), "{} is undefined", what);
    MTP_CHECK(t.device().is_cpu(),
              "{} is on {}: mtp's PyTorch bridge runs on the CPU (move it with .cpu())", what,
              t.device().str());
    MTP_CHECK(t.scalar_type() == dtype(), "{} is {}, the layer is {} (convert one of them)", what,
              dtype_name(t.scalar_type()), dtype_name(dtype()));
    MTP_CHECK(t.is_contiguous(), "{} is not contiguous", what);
    MTP_CHECK(!t.is_sparse() && t.layout() == at::kStrided, "{} is not a dense tensor", what);
  }
  void check_sizes(const at::Tensor& t, const std::vector<int64_t>& sizes, const char* what) const {
    MTP_CHECK(t.sizes().vec() == sizes, "{} has shape {}, expected {}", what, shape_text(t),
              mtp::shape_str(std::vector<index_t>(sizes.begin(), sizes.end())));
  }
  void check_flat(const at::Tensor& flat) const {
    check_tensor(flat, "the flat parameters");
    MTP_CHECK(flat.dim() == 1 && flat.numel() == param_count(),
              "the flat parameters have shape {}, expected ({})", shape_text(flat), param_count());
  }

  bool f64_;
  uint64_t generation_ = 0;
  std::unique_ptr<mtp::exp::AnyLayer<float>> f_;
  std::unique_ptr<mtp::exp::AnyLayer<double>> d_;
};

std::vector<std::string> names(const std::vector<mtp::exp::ComponentSpec>& specs) {
  std::vector<std::string> out;
  for (const mtp::exp::ComponentSpec& s : specs) out.push_back(s.name);
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mtp's perspective layers on torch tensors (the C++ half of the package mtp)";
  // A usage error (the same one-line message as mtp-exp's) is a ValueError; mtp's other
  // errors are RuntimeErrors.
  py::register_exception<mtp::UsageError>(m, "UsageError", PyExc_ValueError);
  py::register_exception<mtp::Error>(m, "Error", PyExc_RuntimeError);

  m.attr("__version__") = MTP_VERSION_STRING;
  m.def(
      "cells", [] { return names(mtp::exp::registry().cells()); }, "The registered cells' names.");
  m.def(
      "aggregators", [] { return names(mtp::exp::registry().aggregators()); },
      "The registered aggregators' names.");

  py::class_<Layer>(m, "Layer")
      .def(py::init([](const std::string& cell, const std::string& aggregator, int64_t input,
                       int64_t hidden, int perspectives, double decay_spread, double noise,
                       const std::string& noise_mode, int top_k,
                       const std::vector<double>& fixed_weights, bool f64) {
             return Layer({.cell = cell,
                           .aggregator = aggregator,
                           .input = input,
                           .hidden = hidden,
                           .perspectives = perspectives,
                           .decay_spread = decay_spread,
                           .noise = noise,
                           .noise_mode = noise_mode,
                           .top_k = top_k,
                           .fixed_weights = fixed_weights},
                          f64);
           }),
           py::arg("cell"), py::arg("aggregator"), py::arg("input_size"), py::arg("hidden_size"),
           py::arg("perspectives"), py::arg("decay_spread"), py::arg("noise"),
           py::arg("noise_mode"), py::arg("top_k"), py::arg("fixed_weights"), py::arg("f64"))
      .def_property_readonly("param_count", &Layer::param_count)
      .def_property_readonly("input_width", &Layer::input_width)
      .def_property_readonly("output_width", &Layer::output_width)
      .def_property_readonly("state_width", &Layer::state_width)
      .def_property_readonly("perspectives", &Layer::perspectives)
      .def_property_readonly("used_fast_path", &Layer::used_fast_path)
      .def_property_readonly("generation", &Layer::generation)
      .def("params", &Layer::params)
      .def("init", &Layer::init, py::arg("flat"), py::arg("seed"))
      .def("forward", &Layer::forward, py::arg("flat"), py::arg("x"), py::arg("state"),
           py::arg("training"), py::arg("seed"))
      .def("backward", &Layer::backward, py::arg("flat"), py::arg("x"), py::arg("dy"),
           py::arg("dsT"), py::arg("want_ds0"));
}
