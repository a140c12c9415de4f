// The whole mtp-exp command line as a library call: train, eval, generate, sweep, report
// and layer, for every cell and aggregator in registry(). mtp-exp's own main is only this
// call; a program that registers its own cells first (register_types, register.hpp) gets
// every command for them:
//
//   int main(int argc, char** argv) {
//     mtp::exp::register_types<mtp::exp::CellTypes<MyCell>, mtp::exp::AggregatorTypes<>>();
//     return mtp::exp::run_main(argc, argv);
//   }
//
// Exit status: 0 on success, 2 on a usage error, 3 when a run folder is held by another
// process, 1 on any other failure; errors are one line on stderr.
#pragma once

namespace mtp::exp {

int run_main(int argc, char** argv);

}  // namespace mtp::exp
