#include "mtp/experiments/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace mtp::exp {

std::string format_duration(double s) {
  const long long t = static_cast<long long>(s + 0.5);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
  return fmt::format("{}:{:02}", t / 60, t % 60);
}

Progress::Progress(long long total_steps, long long log_every)
    : total_(total_steps),
      log_every_(log_every > 0 ? log_every : std::max(1LL, total_steps / 20)),
      tty_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

void Progress::update(long long step, double loss, double tokens_per_s) {
  const auto now = std::chrono::steady_clock::now();
  const bool last = step + 1 == total_;
  if (tty_) {
    if (last || now - last_draw_ > std::chrono::milliseconds(100)) {
      draw(step, loss, tokens_per_s);
      last_draw_ = now;
    }
    return;
  }
  if ((step + 1) % log_every_ == 0 || last) {
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double eta = elapsed / double(step + 1) * double(total_ - step - 1);
    fmt::print(stderr, "step {:>{}}/{}  loss {:.4f}  {:.0f} tok/s  elapsed {}  eta {}\n", step + 1,
               fmt::formatted_size("{}", total_), total_, loss, tokens_per_s,
               format_duration(elapsed), format_duration(eta));
    std::fflush(stderr);
  }
}

void Progress::draw(long long step, double loss, double tokens_per_s) {
  constexpr int kWidth = 28;
  const double frac = double(step + 1) / double(total_);
  const int filled = static_cast<int>(frac * kWidth);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = elapsed / double(step + 1) * double(total_ - step - 1);
  fmt::print(stderr,
             "\r[{:=<{}}{: <{}}] {:>3.0f}%  step {}/{}  loss {:.4f}  {:.0f} tok/s  eta {} \x1b[K",
             "", filled, "", kWidth - filled, frac * 100, step + 1, total_, loss, tokens_per_s,
             format_duration(eta));
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::message(const std::string& line) {
  if (tty_ && drawn_) fmt::print(stderr, "\r\x1b[K");
  fmt::print(stderr, "{}\n", line);
  std::fflush(stderr);
}

void Progress::finish() {
  if (tty_ && drawn_) fmt::print(stderr, "\n");
  drawn_ = false;
}

}  // namespace mtp::exp
