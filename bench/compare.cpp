// Side by side, in one run and at identical shapes: oneDNN's fused LSTM and LBR-GRU
// training primitives as a user would call them (weights already in the primitive's
// layout), this project's layers at K = 1 and K = 3 (and the plain reference path at
// K = 1), RWKV and SSM layers, a whole RWKV model's training step, PyTorch CPU's
// nn.LSTM / nn.GRU (when /usr/bin/python3 has torch), and a oneDNN matmul as the
// roofline. Prints a Markdown table and the target ratios.
//
//   build/bin/compare [--rounds N] [--threads N] [--T 256 --B 32 --H 256] [--no-torch]
//
// The machines are shared and noisy, so every workload is timed once per round, the
// rounds interleave the workloads, and each figure is a median over rounds; ratios are
// of medians measured in the same run.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "mtp/core/error.hpp"
#include "mtp/core/gemm.hpp"
#include "mtp/experiments/process.hpp"
#include "workloads.hpp"

namespace mtp::bench {
namespace {

// oneDNN's fused RNN training step (forward_training + backward) for one layer, set up
// once: weights reordered into the primitive's layouts, all buffers allocated. A step
// is the two executions plus zeroing the weight gradients the primitive accumulates.
class OnednnRnnPeer {
 public:
  OnednnRnnPeer(bool lstm, index_t T, index_t B, index_t I, index_t H) : lstm_(lstm) {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    using md = dnnl::memory::desc;
    const index_t G = lstm ? 4 : 3;
    const md x({T, B, I}, dt::f32, tag::tnc), y({T, B, H}, dt::f32, tag::tnc);
    const md s({1, 1, B, H}, dt::f32, tag::ldnc), bias({1, 1, 4, H}, dt::f32, tag::ldgo);
    const md wl({1, 1, I, G, H}, dt::f32, tag::any), wi({1, 1, H, G, H}, dt::f32, tag::any);
    const auto dir = dnnl::rnn_direction::unidirectional_left2right;
    const auto fk = dnnl::prop_kind::forward_training;
    const auto bk = dnnl::prop_kind::backward;
    dnnl::rnn_primitive_desc_base fpd, bpd;
    if (lstm) {
      dnnl::lstm_forward::primitive_desc f({fk, dir, x, s, s, wl, wi, bias, y, s, s}, engine_);
      dnnl::lstm_backward::primitive_desc b(
          {bk, dir, x, s, s, wl, wi, bias, y, s, s, x, s, s, wl, wi, bias, y, s, s}, engine_, f);
      fwd_ = dnnl::lstm_forward(f);
      bwd_ = dnnl::lstm_backward(b);
      fpd = f;
      bpd = b;
    } else {
      dnnl::lbr_gru_forward::primitive_desc f({fk, dir, x, s, wl, wi, bias, y, s}, engine_);
      dnnl::lbr_gru_backward::primitive_desc b(
          {bk, dir, x, s, wl, wi, bias, y, s, x, s, wl, wi, bias, y, s}, engine_, f);
      fwd_ = dnnl::lbr_gru_forward(f);
      bwd_ = dnnl::lbr_gru_backward(b);
      fpd = f;
      bpd = b;
    }
    auto mem = [&](const md& d, double scale) {
      dnnl::memory m(d, engine_);
      float* p = static_cast<float*>(m.get_data_handle());
      const index_t n = index_t(d.get_size() / sizeof(float));
      RngSequence rng(owned_.size() + 1, 1);
      for (index_t i = 0; i < n; ++i) p[i] = float(scale * rng.normal());
      owned_.push_back(m);
      return m;
    };
    // Random weights in plain ldigo, reordered once into each primitive's layout.
    auto weights = [&](const md& plain, const md& want) {
      dnnl::memory src = mem(plain, 0.05), dst(want, engine_);
      dnnl::reorder(src, dst).execute(stream_, src, dst);
      return dst;
    };
    const md wl_plain({1, 1, I, G, H}, dt::f32, tag::ldigo);
    const md wi_plain({1, 1, H, G, H}, dt::f32, tag::ldigo);
    fargs_ = {{DNNL_ARG_SRC_LAYER, mem(x, 1)},
              {DNNL_ARG_SRC_ITER, mem(s, 0)},
              {DNNL_ARG_WEIGHTS_LAYER, weights(wl_plain, fpd.weights_layer_desc())},
              {DNNL_ARG_WEIGHTS_ITER, weights(wi_plain, fpd.weights_iter_desc())},
              {DNNL_ARG_BIAS, mem(bias, 0.1)},
              {DNNL_ARG_DST_LAYER, mem(y, 0)},
              {DNNL_ARG_DST_ITER, mem(s, 0)},
              {DNNL_ARG_WORKSPACE, mem(fpd.workspace_desc(), 0)}};
    if (lstm) {
      fargs_[DNNL_ARG_SRC_ITER_C] = mem(s, 0);
      fargs_[DNNL_ARG_DST_ITER_C] = mem(s, 0);
    }
    bargs_ = fargs_;
    bargs_[DNNL_ARG_WEIGHTS_LAYER] = weights(wl_plain, bpd.weights_layer_desc());
    bargs_[DNNL_ARG_WEIGHTS_ITER] = weights(wi_plain, bpd.weights_iter_desc());
    dw_ = {mem(bpd.diff_weights_layer_desc(), 0), mem(bpd.diff_weights_iter_desc(), 0),
           mem(bias, 0)};
    bargs_[DNNL_ARG_DIFF_WEIGHTS_LAYER] = dw_[0];
    bargs_[DNNL_ARG_DIFF_WEIGHTS_ITER] = dw_[1];
    bargs_[DNNL_ARG_DIFF_BIAS] = dw_[2];
    bargs_[DNNL_ARG_DIFF_SRC_LAYER] = mem(x, 0);
    bargs_[DNNL_ARG_DIFF_SRC_ITER] = mem(s, 0);
    bargs_[DNNL_ARG_DIFF_DST_LAYER] = mem(y, 1);
    bargs_[DNNL_ARG_DIFF_DST_ITER] = mem(s, 0);
    if (lstm) {
      bargs_[DNNL_ARG_DIFF_SRC_ITER_C] = mem(s, 0);
      bargs_[DNNL_ARG_DIFF_DST_ITER_C] = mem(s, 0);
    }
  }
  void train_step() {
    for (dnnl::memory& m : dw_) std::memset(m.get_data_handle(), 0, m.get_desc().get_size());
    fwd_.execute(stream_, fargs_);
    bwd_.execute(stream_, bargs_);
    stream_.wait();
  }

 private:
  bool lstm_;
  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream_{engine_};
  dnnl::primitive fwd_, bwd_;
  std::unordered_map<int, dnnl::memory> fargs_, bargs_;
  std::vector<dnnl::memory> owned_, dw_;
};

struct Workload {
  Workload(std::string n, double tokens, double flops, std::function<void()> f)
      : name(std::move(n)), tokens_per_step(tokens), flops_per_step(flops), step(std::move(f)) {}
  std::string name;
  double tokens_per_step;
  double flops_per_step;  // GEMM flops (0: not counted)
  std::function<void()> step;
  std::vector<double> seconds;
  double median() const {
    std::vector<double> s = seconds;
    std::sort(s.begin(), s.end());
    return s.empty() ? 0 : s[s.size() / 2];
  }
  double tokens_per_s() const { return tokens_per_step / median(); }
  double gflops() const { return flops_per_step / median() * 1e-9; }
};

struct Options {
  int rounds = 7;
  int threads = 0;
  index_t T = 256, B = 32, H = 256;
  bool torch = true;
  std::string filter;  // time only the workloads whose name contains it
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "compare: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::atol(argv[++i]);
    };
    if (a == "--rounds")
      o.rounds = int(value());
    else if (a == "--threads")
      o.threads = int(value());
    else if (a == "--T")
      o.T = value();
    else if (a == "--B")
      o.B = value();
    else if (a == "--H")
      o.H = value();
    else if (a == "--no-torch")
      o.torch = false;
    else if (a == "--filter" && i + 1 < argc)
      o.filter = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: compare [--rounds N] [--threads N] [--T T --B B --H H] [--no-torch] "
                   "[--filter TEXT]\n");
      std::exit(a == "--help" ? 0 : 2);
    }
  }
  return o;
}

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

// PyTorch's peers, timed by bench/torch_peer.py in a child process with the same
// threads; one JSON object per model. Empty when python3 or torch is missing.
std::vector<nlohmann::json> torch_peers(const Options& o, int threads) {
  std::vector<nlohmann::json> out;
  std::string log = (std::filesystem::temp_directory_path() / "mtp-torch-peer-XXXXXX").string();
  const int fd = ::mkstemp(log.data());
  if (fd < 0) return out;
  ::close(fd);
  // Run without a shell; the peer's stderr (warnings) goes to the same file and is
  // skipped below, as every line that is not a result.
  exp::ProcessOptions where;
  where.output_file = log;
  int status = -1;
  try {
    status = exp::run_process(
        "/usr/bin/python3",
        {"python3", MTP_SOURCE_DIR "/bench/torch_peer.py", "--T", std::to_string(o.T), "--B",
         std::to_string(o.B), "--H", std::to_string(o.H), "--threads", std::to_string(threads),
         "--repeats", std::to_string(std::max(3, o.rounds))},
        where);
  } catch (const Error&) {  // no python3
  }
  std::ifstream in(log);
  for (std::string line; status == 0 && std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("tokens_per_s")) out.push_back(j);
  }
  std::filesystem::remove(log);
  return out;
}

}  // namespace
}  // namespace mtp::bench

int main(int argc, char** argv) {
  using namespace mtp;
  using namespace mtp::bench;
  Options o = parse(argc, argv);
  if (o.threads > 0) omp_set_num_threads(o.threads);
  const int threads = omp_get_max_threads();
  const index_t T = o.T, B = o.B, H = o.H;
  const double tokens = double(T * B);

  std::vector<Workload> w;
  // The roofline: a large square matmul, the best case for the GEMMs every layer runs.
  constexpr index_t n = 1024;
  std::vector<float> ma(n * n, 0.5f), mb(n * n, 0.25f), mc(n * n);
  w.emplace_back("oneDNN matmul 1024³", 0, 2.0 * n * n * n,
                 [&] { matmul(ma.data(), false, mb.data(), false, mc.data(), n, n, n); });

  auto rnn_flops = [&](int G, int K) { return tokens * 3 * (2.0 * G * H * H * (1 + K)); };
  OnednnRnnPeer dnnl_lstm(true, T, B, H, H), dnnl_gru(false, T, B, H, H);
  w.emplace_back("oneDNN fused LSTM", tokens, rnn_flops(4, 1), [&] { dnnl_lstm.train_step(); });
  w.emplace_back("oneDNN fused LBR-GRU", tokens, rnn_flops(3, 1), [&] { dnnl_gru.train_step(); });

  auto add_layer = [&]<class Cell>(std::string name, int K, bool fused) {
    auto l = std::make_shared<LayerWorkload<Cell>>(T, B, H, K, fused);
    w.emplace_back(std::move(name), tokens, tokens * l->flops_per_token(true),
                   [l] { l->run(true); });
  };
  add_layer.template operator()<Lstm<float>>("mtp LSTM K=1", 1, true);
  add_layer.template operator()<Lstm<float>>("mtp LSTM K=1 plain path", 1, false);
  add_layer.template operator()<Lstm<float>>("mtp LSTM K=3", 3, true);
  add_layer.template operator()<Gru<float>>("mtp GRU K=1", 1, true);
  add_layer.template operator()<Gru<float>>("mtp GRU K=1 plain path", 1, false);
  add_layer.template operator()<Gru<float>>("mtp GRU K=3", 3, true);
  add_layer.template operator()<RwkvTimeMix<float>>("mtp RWKV K=1", 1, true);
  add_layer.template operator()<RwkvTimeMix<float>>("mtp RWKV K=3", 3, true);
  add_layer.template operator()<LinearSsm<float>>("mtp SSM K=1", 1, true);
  add_layer.template operator()<LinearSsm<float>>("mtp SSM K=3", 3, true);
  // The whole model of the targets: RWKV, width 256, 4 layers, T = 256, B = 16.
  constexpr index_t mT = 256, mB = 16, mW = 256, mV = 256;
  constexpr int mL = 4;
  auto add_model = [&](std::string name, int K) {
    auto m = std::make_shared<ModelWorkload<RwkvTimeMix<float>>>(mT, mB, mW, mL, mV, K);
    w.emplace_back(std::move(name), double(mT * mB), double(mT * mB) * m->flops_per_token(),
                   [m] { m->train_step(); });
  };
  add_model("mtp RWKV model K=1", 1);
  add_model("mtp RWKV model K=3", 3);

  if (!o.filter.empty()) {
    std::erase_if(w, [&](const Workload& x) { return x.name.find(o.filter) == std::string::npos; });
    o.torch = false;
  }
  std::fprintf(stderr, "compare: %zu workloads x %d rounds, %d threads\n", w.size(), o.rounds,
               threads);
  for (Workload& x : w) x.step();  // warm-up: allocation, primitive creation
  for (int r = 0; r < o.rounds; ++r) {
    for (Workload& x : w) {
      const auto t0 = std::chrono::steady_clock::now();
      x.step();
      x.seconds.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::fprintf(stderr, "round %d/%d\n", r + 1, o.rounds);
  }
  const std::vector<nlohmann::json> torch = o.torch ? torch_peers(o, threads) : decltype(torch){};

  auto find = [&](const std::string& name) -> const Workload& {
    for (const Workload& x : w)
      if (x.name == name) return x;
    std::fprintf(stderr, "compare: no workload %s\n", name.c_str());
    std::exit(1);
  };
  auto ran = [&](std::initializer_list<std::string> names) {
    return std::all_of(names.begin(), names.end(), [&](const std::string& name) {
      return std::any_of(w.begin(), w.end(), [&](const Workload& x) { return x.name == name; });
    });
  };
  auto torch_rate = [&](const char* model) {
    for (const auto& j : torch)
      if (j.value("model", "") == model) return j["tokens_per_s"].get<double>();
    return 0.0;
  };

  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  std::printf(
      "%s, %d threads, %s; RNN layers T=%ld B=%ld I=H=%ld, training step "
      "(forward + backward); median of %d rounds\n\n",
      cpu_name().c_str(), threads, date, long(T), long(B), long(H), o.rounds);
  std::printf("| workload | ms/step | tokens/s | GEMM GFLOP/s |\n|---|---|---|---|\n");
  for (const Workload& x : w)
    std::printf("| %s | %.2f | %s | %.0f |\n", x.name.c_str(), x.median() * 1e3,
                x.tokens_per_step > 0 ? std::to_string(long(x.tokens_per_s())).c_str() : "",
                x.gflops());
  for (const auto& j : torch) {
    const double r = j["tokens_per_s"].get<double>();
    std::printf("| PyTorch %s nn.%s | %.2f | %ld | |\n", j.value("torch", "").c_str(),
                j.value("model", "") == "lstm" ? "LSTM" : "GRU", tokens / r * 1e3, long(r));
  }
  if (o.torch && torch.empty())
    std::printf("\n(PyTorch peer skipped: /usr/bin/python3 with torch not found)\n");

  // With --filter, the targets whose workloads all ran.
  std::printf("\n| target | measured | goal |\n|---|---|---|\n");
  auto row = [](const std::string& what, double v, const char* goal, bool ok) {
    std::printf("| %s | %.2f | %s %s |\n", what.c_str(), v, goal, ok ? "✓" : "✗");
  };
  // Ratios pair the two workloads' times round by round (they ran moments apart) and
  // take the median: a machine whose speed drifts over seconds affects both alike.
  auto paired_ratio = [](const Workload& a, const Workload& b) {
    std::vector<double> r;
    for (size_t i = 0; i < a.seconds.size(); ++i) r.push_back(a.seconds[i] / b.seconds[i]);
    std::sort(r.begin(), r.end());
    return r[r.size() / 2];
  };
  for (const char* cell : {"LSTM", "GRU"}) {
    const std::string fused = std::string("oneDNN fused ") + (cell[0] == 'L' ? "LSTM" : "LBR-GRU");
    if (!ran({fused, std::string("mtp ") + cell + " K=1", std::string("mtp ") + cell + " K=3"}))
      continue;
    const Workload& k1 = find(std::string("mtp ") + cell + " K=1");
    const Workload& k3 = find(std::string("mtp ") + cell + " K=3");
    const double vs_dnnl = paired_ratio(find(fused), k1);  // throughput: time⁻¹
    row(std::string(cell) + " K=1 / oneDNN fused (throughput)", vs_dnnl, "≥ 0.9", vs_dnnl >= 0.9);
    const double tr = torch_rate(cell[0] == 'L' ? "lstm" : "gru");
    if (tr > 0) {
      const double vs_torch = k1.tokens_per_s() / tr;
      row(std::string(cell) + " K=1 / PyTorch (throughput)", vs_torch, "≥ 10", vs_torch >= 10);
    }
    const double cost = paired_ratio(k3, k1);
    row(std::string(cell) + " K=3 / K=1 (step time)", cost, "≤ 2.2", cost <= 2.2);
  }
  for (const char* cell : {"RWKV", "SSM"}) {
    if (!ran({std::string("mtp ") + cell + " K=3", std::string("mtp ") + cell + " K=1"})) continue;
    const double cost = paired_ratio(find(std::string("mtp ") + cell + " K=3"),
                                     find(std::string("mtp ") + cell + " K=1"));
    row(std::string(cell) + " K=3 / K=1 (step time)", cost, "≤ 1.15", cost <= 1.15);
  }
  for (const char* m : {"mtp RWKV model K=1", "mtp RWKV model K=3"}) {
    if (!ran({"oneDNN matmul 1024³", m})) continue;
    const Workload& roof = find("oneDNN matmul 1024³");
    const Workload& model = find(m);
    const double share = paired_ratio(roof, model) * model.flops_per_step / roof.flops_per_step;
    row(std::string(m) + ": GEMM GFLOP/s / matmul", share, "≥ 0.6", share >= 0.6);
  }
  return 0;
}
