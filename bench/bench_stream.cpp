// Streaming inference: a text model fed one token at a time through its recurrent
// state, as `mtp-exp generate` steps it (forward of a (1,1) chunk with a ModelState),
// greedily generating its own next token. The stream first consumes T tokens
// untimed; the benchmark then times a window of tokens from there on. A recurrent
// model's work and memory per token do not depend on how much it has read, so the
// time per token and the counters should be the same at T = 1000 and T = 100000
// (a Transformer's KV cache would grow 100×).
//
//   build/bin/bench_stream
//
// Counters:
//   tokens       generated tokens per second in the window
//   state_bytes  the ModelState: per block the mixer's (B,K,Sw) and the FFN's (B,Fw)
//   rss_bytes    the process's resident memory at the end of the window (/proc/self/statm;
//                process-wide, so compare the two T of one model, not models)
//   rss_growth   resident memory gained during the window (0 when nothing allocates)
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

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
// Tokens timed per measurement: each costs tens of µs, and the window must stay far
// shorter than the smaller T so that "after T tokens" holds.
constexpr int kWindow = 500;

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

template <class Cell>
void Stream(benchmark::State& state) {
  using Mixer = Perspectives<Cell, LearnedAggregator<float>>;
  const index_t T = state.range(0);  // tokens consumed before the window
  ModelConfig mc{.vocab = kVocab, .width = kWidth, .layers = kLayers, .ffn = true};
  exp::ModelFamily<Cell>::configure(mc);
  typename Mixer::Config mixer;
  mixer.cell = Cell::model_config(kWidth);
  mixer.perspectives = kPerspectives;
  exp::ModelFor<Mixer> model(mc, mixer);
  model.init(0);

  // One step: feed the token, read logits (1,1,V), pick the next token by argmax.
  auto st = model.initial_state(1);
  std::int32_t token = 'T';
  auto step = [&] {
    model.forward(&token, nullptr, 1, 1, StepContext{}, &st);
    const float* logits = model.logits().data;
    token = std::int32_t(std::max_element(logits, logits + kVocab) - logits);
  };
  for (index_t i = 0; i < T; ++i) step();

  const double rss_before = resident_bytes();
  for (auto _ : state) {
    step();
    benchmark::DoNotOptimize(token);
  }
  const double rss_after = resident_bytes();
  state.counters["tokens"] =
      benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["state_bytes"] = state_bytes(st);
  state.counters["rss_bytes"] = rss_after;
  state.counters["rss_growth"] = rss_after - rss_before;
}

void Positions(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T"});
  b->Arg(1000)->Arg(100000);
  b->Iterations(kWindow);
  b->Unit(benchmark::kMicrosecond);
  b->UseRealTime();  // the rate is per wall second, whatever threads do the work
}

template <class Cell>
void register_stream_benchmark() {
  const std::string name = "stream/" + std::string(Cell::kName) + "/W:128/L:2/K:3";
  benchmark::RegisterBenchmark(name.c_str(), Stream<Cell>)->Apply(Positions);
}

[[maybe_unused]] const bool registered = [] {
  register_stream_benchmark<Gru<float>>();
  register_stream_benchmark<RwkvTimeMix<float>>();
  return true;
}();

}  // namespace
}  // namespace mtp

BENCHMARK_MAIN();
