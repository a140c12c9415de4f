// Random inputs and parameters for tests of whole models (the authors' variant's
// gradient checks and invariants).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gradcheck.hpp"
#include "mtp/core/model.hpp"
#include "mtp/core/rng.hpp"
#include "mtp/core/tensor.hpp"

namespace mtp::test {

// (T,B) token ids drawn from [0, V).
inline std::vector<std::int32_t> random_tokens(std::uint64_t seed, index_t T, index_t B,
                                               index_t V) {
  RngSequence rng(seed, 5);
  std::vector<std::int32_t> t(size_t(T * B));
  for (auto& x : t) x = std::int32_t(rng.below(std::uint64_t(V)));
  return t;
}

// Every parameter perturbed away from its init, so that no gradient vanishes by symmetry
// (RWKV's zero-initialised matrices, equal token-shift rows).
template <class M>
void randomise(M& m, std::uint64_t seed) {
  m.init(seed);
  auto& p = m.params();
  RngSequence rng(seed, 9);
  for (index_t i = 0; i < p.size(); ++i) p.values()[i] += 0.3 * rng.normal();
}

// Every parameter's gradient of the mean loss on (tokens, targets) (T,B) against central
// differences, in double: norm-wise relative error below 1e-6 per tensor. `eps` is the
// difference step.
template <class M>
void expect_model_gradients(M& m, const std::vector<std::int32_t>& tokens,
                            const std::vector<std::int32_t>& targets, index_t T, index_t B,
                            const StepContext& ctx, double eps, const std::string& what) {
  auto loss = [&] { return m.forward(tokens.data(), targets.data(), T, B, ctx).mean_loss(); };
  m.params().zero_grad();
  loss();
  m.backward();
  const std::vector<double> analytic(m.params().grads(), m.params().grads() + m.params().size());
  for (const ParamInfo& info : m.params().infos()) {
    const double err = gradcheck(m.params().values() + info.offset, analytic.data() + info.offset,
                                 info.shape.numel(), loss, eps);
    EXPECT_LT(err, 1e-6) << info.name << " " << what;
  }
}

// The logits of `tok` (T,B) fed as two chunks through a carried state (the first `split`
// steps, then the rest) against one call: their relative difference.
template <class M>
double chunked_vs_whole(M& m, const std::vector<std::int32_t>& tok, index_t T, index_t B,
                        index_t split) {
  m.forward(tok.data(), nullptr, T, B, StepContext{});
  const auto logits = [&] {
    return std::vector<double>(m.logits().data, m.logits().data + m.logits().numel());
  };
  const std::vector<double> whole = logits();
  auto state = m.initial_state(B);
  m.forward(tok.data(), nullptr, split, B, StepContext{}, &state);
  std::vector<double> chunks = logits();
  m.forward(tok.data() + split * B, nullptr, T - split, B, StepContext{}, &state);
  const std::vector<double> rest = logits();
  chunks.insert(chunks.end(), rest.begin(), rest.end());
  return rel_error(chunks, whole);
}

}  // namespace mtp::test
