// Encoding speed of the byte-level BPE tokenizer (experiments/tokenizer.hpp) with the
// GPT-NeoX-20B tokenizer.json, on the shared corpora (tinyshakespeare and SimpleBooks-92,
// 2.9 MB of English): one core (encode, as eval and the benchmarks use it), and the
// corpus path (encode_large: pieces in parallel) on every core; plus the time to load the
// tokenizer file. Google Benchmark's bytes_per_second is the text's bytes.
//
//   build/bin/bench_tokenizer [--benchmark_repetitions=5]
//   MTP_SHARED_DATA=/path/to/shared/data build/bin/bench_tokenizer
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "mtp/experiments/tokenizer.hpp"

namespace {

std::string data_dir() {
  const char* env = std::getenv("MTP_SHARED_DATA");
  return env != nullptr ? env : MTP_SHARED_DATA;
}

std::string corpus() {
  std::string text;
  for (const char* name :
       {"tinyshakespeare.txt", "simplebooks92-valid.txt", "simplebooks92-test.txt"}) {
    std::ifstream in(data_dir() + "/text/" + name, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    text += s.str();
  }
  return text;
}

const std::string kTokenizer = data_dir() + "/tokenizers/gpt-neox-20b_tokenizer.json";

void BM_Load(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(mtp::exp::BpeTokenizer(kTokenizer).vocab_size());
}

void BM_EncodeOneCore(benchmark::State& state) {
  const mtp::exp::BpeTokenizer tok(kTokenizer);
  const std::string text = corpus();
  size_t tokens = 0;
  for (auto _ : state) tokens = tok.encode(text).size();
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(text.size()));
  state.counters["bytes_per_token"] = double(text.size()) / double(tokens);
}

void BM_EncodeLarge(benchmark::State& state) {
  const mtp::exp::BpeTokenizer tok(kTokenizer);
  const std::string text = corpus();
  for (auto _ : state) benchmark::DoNotOptimize(tok.encode_large(text, int(state.range(0))).size());
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(text.size()));
}

BENCHMARK(BM_Load)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_EncodeOneCore)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_EncodeLarge)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
