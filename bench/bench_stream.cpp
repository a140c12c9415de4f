// Streaming inference: a text model fed one token at a time through its recurrent
// state, as `mtp-exp generate` steps it (forward of a (1,1) chunk with a ModelState),
// greedily generating its own next token, for 100 000 tokens. A recurrent model's
// work and memory per token do not depend on how much it has read, so the time per
// token just after T = 1000 and at T = 100000 should agree, and so should the resident
// memory (a Transformer's KV cache would grow 100×).
//
//   build/bin/bench_stream
//
// Counters (times are medians over 21 windows of 100 tokens; the two streams' windows
// alternate, so a busy machine slows both alike):
//   us_per_token_T1000, us_per_token_T100000   and their ratio late/early
//   rss_growth_T1000_to_T100000   resident memory gained while one stream read 99 000
//                                 tokens (/proc/self/statm): 0 when nothing grows
//   state_bytes                   the ModelState: per block the mixer's (B,K,Sw) and the
//                                 FFN's (B,Fw)
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "mtp/aggregators/learned.hpp"
#include "mtp/cells/gru.hpp"
#include "mtp/cells/rwkv.hpp"
#include "mtp/core/model.hpp"
#include "mtp/core/perspectives.hpp"
#include "mtp/experiments/dispatch.hpp"

namespace mtp {
namespace {

// Byte-level text model, small enough to stream in real time: vocab V = 256, width
// W = 128, L = 2 blocks, K = 3 perspectives.
constexpr index_t kVocab = 256, kWidth = 128;
constexpr int kLayers = 2, kPerspectives = 3;
// Median per-token time over kWindows windows of kWindowTokens tokens.
constexpr int kWindows = 21, kWindowTokens = 100;

// Resident set size in bytes: the second field of /proc/self/statm, in pages.
double resident_bytes() {
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return double(resident) * double(sysconf(_SC_PAGESIZE));
}

template <class S>
double state_bytes(const ModelState<S>& st) {
  index_t n = 0;
  for (const auto* group : {&st.mixer, &st.ffn})
    for (const Tensor<S>& t : *group) n += t.numel();
  return double(n) * double(sizeof(S));
}

// One greedy generation stream of the model mtp-exp builds for the cell.
template <class Cell>
struct Streamer {
  using Mixer = Perspectives<Cell, LearnedAggregator<float>>;
  exp::ModelFor<Mixer> model;
  ModelState<float> st;
  std::int32_t token = 'T';
  index_t seen = 0;

  Streamer() : model(model_config(), mixer_config()), st(model.initial_state(1)) { model.init(0); }
  static ModelConfig model_config() {
    ModelConfig mc{.vocab = kVocab, .width = kWidth, .layers = kLayers, .ffn = true};
    exp::ModelFamily<Cell>::configure(mc);
    return mc;
  }
  static typename Mixer::Config mixer_config() {
    typename Mixer::Config mixer;
    mixer.cell = Cell::model_config(kWidth);
    mixer.perspectives = kPerspectives;
    return mixer;
  }
  // Feed the token, read logits (1,1,V), pick the next token by argmax.
  void step() {
    model.forward(&token, nullptr, 1, 1, StepContext{}, &st);
    const float* logits = model.logits().data;
    token = std::int32_t(std::max_element(logits, logits + kVocab) - logits);
    ++seen;
  }
  void advance_to(index_t n) {
    while (seen < n) step();
  }
  // µs per token over the next kWindowTokens tokens.
  double window_us() {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kWindowTokens; ++i) step();
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
               .count() /
           kWindowTokens;
  }
};

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

// Two identical streams, one at T = 1000 and one at T = 100000, timed in alternating
// windows so that a shared machine's drifting speed hits both alike.
template <class Cell>
void Stream(benchmark::State& state) {
  for (auto _ : state) {
    Streamer<Cell> early, late;
    late.advance_to(1000);
    const double rss_1000 = resident_bytes();
    late.advance_to(100000 - kWindows * kWindowTokens);
    const double rss_100000 = resident_bytes();
    early.advance_to(1000);
    std::vector<double> t_early, t_late;
    for (int w = 0; w < kWindows; ++w) {
      t_early.push_back(early.window_us());
      t_late.push_back(late.window_us());
    }
    state.counters["us_per_token_T1000"] = median(t_early);
    state.counters["us_per_token_T100000"] = median(t_late);
    state.counters["late/early"] = median(t_late) / median(t_early);
    state.counters["rss_growth_T1000_to_T100000"] = rss_100000 - rss_1000;
    state.counters["state_bytes"] = state_bytes(late.st);
    benchmark::DoNotOptimize(late.token);
  }
}

template <class Cell>
void register_stream_benchmark() {
  const std::string name = "stream/" + std::string(Cell::kName) + "/W:128/L:2/K:3";
  benchmark::RegisterBenchmark(name.c_str(), Stream<Cell>)
      ->Iterations(1)
      ->Unit(benchmark::kSecond)
      ->UseRealTime();
}

[[maybe_unused]] const bool registered = [] {
  register_stream_benchmark<Gru<float>>();
  register_stream_benchmark<RwkvTimeMix<float>>();
  return true;
}();

}  // namespace
}  // namespace mtp

BENCHMARK_MAIN();
