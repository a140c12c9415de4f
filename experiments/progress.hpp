// Training progress on stderr: a live bar when stderr is a terminal, plain periodic
// log lines otherwise (files, CI logs, sweeps).
#pragma once

#include <chrono>
#include <string>

namespace mtp::exp {

class Progress {
 public:
  Progress(long long total_steps, long long log_every);
  // Called after every step with the step's loss and the smoothed throughput.
  void update(long long step, double loss, double tokens_per_s);
  // A message that must not be garbled by the bar (an evaluation result, say).
  void message(const std::string& line);
  void finish();
  bool interactive() const { return tty_; }

 private:
  void draw(long long step, double loss, double tokens_per_s);
  long long total_, log_every_;
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string format_duration(double seconds);

}  // namespace mtp::exp
