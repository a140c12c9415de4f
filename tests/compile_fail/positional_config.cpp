// Compiled by ctest twice (tests/CMakeLists.txt): with MTP_NAMED it must compile; without
// it the positional form must be refused, and the compiler must name DesignatedOnly.
#include "mtp/aggregators/mean.hpp"
#include "mtp/cells/gru.hpp"
#include "mtp/core/perspectives.hpp"

int main() {
  mtp::Perspectives<mtp::Gru<float>, mtp::MeanAggregator<float>>::Config cfg;
#ifdef MTP_NAMED
  cfg.cell = {.input = 64, .hidden = 128};
  const mtp::StepContext ctx{.training = true, .seed = 1, .step = 2};
#else
  cfg.cell = {64, 128};  // {input, hidden}? {input, state}? Refused.
  const mtp::StepContext ctx{true, 1, 2};
#endif
  return int(cfg.cell.hidden) + int(ctx.step) > 0 ? 0 : 1;
}
