#include "mtp/experiments/generate.hpp"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "mtp/core/rng.hpp"
#include "mtp/experiments/tokenizer.hpp"
#include "mtp/experiments/trainer.hpp"

namespace mtp::exp {
namespace {

// Samples from softmax(logits / τ) with one uniform draw, or argmax when τ = 0.
std::int32_t sample(const float* logits, index_t V, double temperature, double u) {
  index_t best = 0;
  for (index_t v = 1; v < V; ++v)
    if (logits[v] > logits[best]) best = v;
  if (temperature <= 0) return std::int32_t(best);
  std::vector<double> p(V);
  double total = 0;
  for (index_t v = 0; v < V; ++v)
    total += p[v] = std::exp((logits[v] - logits[best]) / temperature);
  double acc = 0;
  for (index_t v = 0; v < V; ++v)
    if ((acc += p[v] / total) >= u) return std::int32_t(v);
  return std::int32_t(V - 1);
}

// Writes and flushes: a reader sees each byte as it is made, and a failed write (a full
// disk, a closed pipe) stops generation at once.
void emit(const char* bytes, size_t n, std::FILE* out) {
  if (std::fwrite(bytes, 1, n, out) != n || std::fflush(out) != 0)
    fail("writing the generated text failed ({})", std::strerror(errno));
}

}  // namespace

GenerateStats run_generation(const GenerateArgs& a, std::FILE* out) {
  if (a.prompt.empty()) usage_fail("--prompt must not be empty");
  if (a.tokens < 0) usage_fail("--tokens must be >= 0, got {}", a.tokens);
  if (!(a.temperature >= 0) || !std::isfinite(a.temperature))
    usage_fail("--temperature must be >= 0, got {}", a.temperature);
  set_threads(a.threads);
  Checkpoint ck = read_checkpoint(a.checkpoint);
  if (ck.config.task != "text")
    fail("{}: generate needs a text checkpoint; this one was trained on {}", a.checkpoint,
         ck.config.task);
  const std::unique_ptr<Tokenizer> tok = checkpoint_tokenizer(ck, a.tokenizer);
  return with_checkpoint_model(ck, [&](auto& model) {
    using clock = std::chrono::steady_clock;
    GenerateStats st;
    const CounterRng rng(a.seed, rng_stream::kSampling);
    auto state = model.initial_state(1);
    std::vector<std::int32_t> prompt;
    try {
      prompt = tok->encode(a.prompt);
    } catch (const Error& e) {
      fail("--prompt: {}", e.what());
    }
    MTP_CHECK(!prompt.empty(), "--prompt: no tokens");
    emit(a.prompt.data(), a.prompt.size(), out);
    auto t0 = clock::now();
    model.forward(prompt.data(), nullptr, index_t(prompt.size()), 1, StepContext{}, &state);
    st.prompt_tokens = index_t(prompt.size());
    st.prompt_seconds = std::chrono::duration<double>(clock::now() - t0).count();
    const index_t V = model.logits().dim(2);
    t0 = clock::now();
    for (long long i = 0; i < a.tokens; ++i) {
      const float* last = model.logits().data + (model.logits().dim(0) - 1) * V;
      std::int32_t next = sample(last, V, a.temperature, rng.uniform(std::uint64_t(i)));
      const std::string_view bytes = tok->token_bytes(next);
      emit(bytes.data(), bytes.size(), out);
      model.forward(&next, nullptr, 1, 1, StepContext{}, &state);
      ++st.generated;
    }
    st.generate_seconds = std::chrono::duration<double>(clock::now() - t0).count();
    return st;
  });
}

}  // namespace mtp::exp
