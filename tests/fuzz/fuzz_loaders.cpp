// Fuzz target: every loader of user data files on arbitrary bytes, through the same
// functions mtp-exp uses: the text corpus of --task text (plain and with carried state)
// and the six benchmark files of `eval --benchmark` (PIQA with its labels file). The
// first byte picks the loader and its sizes; the rest is the file (for PIQA, data and
// labels split at the first NUL). Bad input must end in an mtp::Error or UsageError,
// never a crash, a sanitizer report or another exception; what loads must be usable.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "mtp/core/error.hpp"
#include "mtp/experiments/benchmarks.hpp"
#include "mtp/experiments/tasks.hpp"

namespace {

// One scratch folder per process, removed at exit; the files are rewritten for every
// input. The path lives on the heap so that it outlives static destruction, when the
// exit handler runs.
const std::filesystem::path* scratch_dir = nullptr;

void remove_scratch() {
  std::error_code ec;
  std::filesystem::remove_all(*scratch_dir, ec);
}

const std::filesystem::path& scratch() {
  if (scratch_dir == nullptr) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mtp-fuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    scratch_dir = new std::filesystem::path(tmpl);
    std::atexit(remove_scratch);
  }
  return *scratch_dir;
}

std::string write(const char* name, const std::uint8_t* data, std::size_t size) {
  const std::filesystem::path p = scratch() / name;
  std::ofstream(p, std::ios::binary)
      .write(reinterpret_cast<const char*>(data), std::streamsize(size));
  return p.string();
}

void text_task(std::uint8_t selector, const std::uint8_t* data, std::size_t size) {
  const std::string path = write("corpus.txt", data, size);
  const int seq_len = 1 + selector % 16, batch = 1 + (selector >> 4) % 4;
  const bool carry = (selector & 0x40) != 0;
  const mtp::exp::TextTask task(path, "", "", seq_len, 0, 2, batch, carry);
  for (std::uint64_t step = 0; step < 3; ++step) {
    const mtp::exp::Batch b = task.train_batch(step, batch);
    for (std::int32_t t : b.tokens)
      if (t < 0 || t >= 256) std::abort();
  }
  for (const mtp::exp::Batch& b : task.validation())
    for (std::int32_t t : b.targets)
      if (t >= 256) std::abort();
}

void benchmark(std::uint8_t selector, const std::uint8_t* data, std::size_t size) {
  using mtp::exp::Benchmark;
  const Benchmark kinds[] = {Benchmark::lambada,   Benchmark::arc_easy,
                             Benchmark::piqa,      Benchmark::winogrande,
                             Benchmark::hellaswag, Benchmark::lambada_openai};
  const Benchmark kind = kinds[selector % 6];
  std::size_t split = size;
  if (kind == Benchmark::piqa)
    for (std::size_t i = 0; i < size; ++i)
      if (data[i] == 0) {
        split = i;
        break;
      }
  const std::string path = write("bench.jsonl", data, split);
  const std::string labels =
      write("bench_labels.lst", data + std::min(size, split + 1), size - std::min(size, split + 1));
  const auto examples = mtp::exp::load_benchmark(kind, path, labels);
  for (const auto& e : examples)
    if (e.gold < 0 || std::size_t(e.gold) >= e.requests.size()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t selector = data[0];
  try {
    if (selector & 0x80)
      benchmark(selector, data + 1, size - 1);
    else
      text_task(selector, data + 1, size - 1);
  } catch (const mtp::Error&) {
  } catch (const mtp::UsageError&) {
  }
  return 0;
}
