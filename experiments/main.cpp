// mtp-exp: the command line with the built-in cells and aggregators (experiments/app.hpp).
#include "mtp/experiments/app.hpp"

int main(int argc, char** argv) {
  return mtp::exp::run_main(argc, argv);
}
