// A user's own command line: mtp-exp's every command (train, eval, generate, sweep,
// report, layer, check) for a cell, an aggregator and a task this project defines. The
// whole program:
#include <mtp/experiments/app.hpp>
#include <mtp/experiments/register.hpp>

#include "first_token_task.hpp"
#include "minimal_gated_cell.hpp"
#include "softmax_mix_aggregator.hpp"

int main(int argc, char** argv) {
  // minimal-gated with every aggregator (built-in and softmax-mix); softmax-mix with
  // every built-in cell.
  mtp::exp::register_types<mtp::exp::CellTypes<user::MinimalGatedCell>,
                           mtp::exp::AggregatorTypes<user::SoftmaxMixAggregator>>();
  mtp::exp::tasks().add(user::first_token_spec());
  return mtp::exp::run_main(argc, argv);
}
