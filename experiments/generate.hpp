// `mtp-exp generate`: streaming generation from a text checkpoint (bytes or BPE tokens),
// one token at a time through the recurrent state (constant time and memory per token).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace mtp::exp {

struct GenerateArgs {
  std::string checkpoint;
  std::string tokenizer;  // in place of the checkpoint's (override_tokenizer)
  std::string prompt;
  long long tokens = 200;
  double temperature = 1.0;  // 0: greedy
  std::uint64_t seed = 0;
  int threads = 0;
};

struct GenerateStats {
  long long prompt_tokens = 0, generated = 0;
  double prompt_seconds = 0, generate_seconds = 0;
};

// Writes the prompt and then each generated token's bytes to `out` as it is produced.
GenerateStats run_generation(const GenerateArgs& args, std::FILE* out);

}  // namespace mtp::exp
