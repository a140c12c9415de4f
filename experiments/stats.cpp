#include "mtp/experiments/stats.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "mtp/core/error.hpp"

namespace mtp::exp {
namespace {

// Continued fraction of I_x(a, b) by the modified Lentz method; converges for
// x < (a + 1) / (a + b + 2).
double beta_continued_fraction(double x, double a, double b) {
  constexpr double kTiny = 1e-300, kEps = 1e-15;
  double c = 1, d = 1 - (a + b) * x / (a + 1);
  if (std::abs(d) < kTiny) d = kTiny;
  d = 1 / d;
  double f = d;
  for (int m = 1; m <= 500; ++m) {
    // Even step: d_{2m} = m(b − m)x / ((a + 2m − 1)(a + 2m)).
    double num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
    d = 1 + num * d;
    c = 1 + num / c;
    if (std::abs(d) < kTiny) d = kTiny;
    if (std::abs(c) < kTiny) c = kTiny;
    d = 1 / d;
    f *= c * d;
    // Odd step: d_{2m+1} = −(a + m)(a + b + m)x / ((a + 2m)(a + 2m + 1)).
    num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
    d = 1 + num * d;
    c = 1 + num / c;
    if (std::abs(d) < kTiny) d = kTiny;
    if (std::abs(c) < kTiny) c = kTiny;
    d = 1 / d;
    const double delta = c * d;
    f *= delta;
    if (std::abs(delta - 1) < kEps) break;
  }
  return f;
}

}  // namespace

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? kNaN : s / double(v.size());
}

double sample_sd(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size() - 1));
}

double incomplete_beta(double x, double a, double b) {
  MTP_CHECK(a > 0 && b > 0 && x >= 0 && x <= 1, "incomplete_beta({}, {}, {}) is undefined", x, a,
            b);
  if (x == 0 || x == 1) return x;
  const double log_front =
      std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
  if (x < (a + 1) / (a + b + 2)) return std::exp(log_front) * beta_continued_fraction(x, a, b) / a;
  return 1 - std::exp(log_front) * beta_continued_fraction(1 - x, b, a) / b;
}

double student_t_cdf(double t, double df) {
  if (std::isinf(t)) return t > 0 ? 1 : 0;
  const double t2 = t * t;
  if (t2 < df) {
    // Near the centre: P(|T| < |t|) = I_{t²/(df+t²)}(1/2, df/2) keeps t's resolution.
    const double centre = incomplete_beta(t2 / (df + t2), 0.5, df / 2);
    return t >= 0 ? 0.5 + centre / 2 : 0.5 - centre / 2;
  }
  // In the tails: P(|T| > |t|) = I_{df/(df+t²)}(df/2, 1/2) keeps the tail's precision.
  const double tail = incomplete_beta(df / (df + t2), df / 2, 0.5);
  return t >= 0 ? 1 - tail / 2 : tail / 2;
}

double student_t_quantile(double p, double df) {
  MTP_CHECK(p > 0 && p < 1, "student_t_quantile needs p in (0, 1), got {}", p);
  // Bracket, then bisect: the cdf is monotone, and 200 halvings reach double precision.
  double lo = -1, hi = 1;
  while (student_t_cdf(lo, df) > p) lo *= 2;
  while (student_t_cdf(hi, df) < p) hi *= 2;
  for (int i = 0; i < 200 && hi - lo > 1e-14 * std::max(1.0, std::abs(lo)); ++i) {
    const double mid = (lo + hi) / 2;
    (student_t_cdf(mid, df) < p ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

MeanCI mean_ci(const std::vector<double>& v, double level) {
  MeanCI r;
  r.n = int(v.size());
  r.mean = mean(v);
  if (r.n < 2) {
    r.lo = r.hi = kNaN;
    return r;
  }
  const double half =
      student_t_quantile(0.5 + level / 2, r.n - 1) * sample_sd(v) / std::sqrt(double(r.n));
  r.lo = r.mean - half;
  r.hi = r.mean + half;
  return r;
}

double normal_quantile(double p) {
  MTP_CHECK(p > 0 && p < 1, "normal quantile of {} (must lie in (0, 1))", p);
  // Bisection on Φ(x) = erfc(−x/√2)/2, which erfc gives to full precision in both tails.
  double lo = -40, hi = 40;
  for (int i = 0; i < 200 && hi - lo > 1e-15 * std::max(1.0, std::fabs(lo)); ++i) {
    const double mid = (lo + hi) / 2;
    (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

std::vector<double> holm_adjust(const std::vector<double>& p) {
  std::vector<size_t> order;
  for (size_t i = 0; i < p.size(); ++i)
    if (!std::isnan(p[i])) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] < p[b]; });
  std::vector<double> adjusted(p.size(), kNaN);
  const double m = double(order.size());
  double running = 0;
  for (size_t j = 0; j < order.size(); ++j) {
    running = std::max(running, std::min(1.0, (m - double(j)) * p[order[j]]));
    adjusted[order[j]] = running;
  }
  return adjusted;
}

namespace {
// b − a, pair by pair.
std::vector<double> paired_differences(const std::vector<double>& a, const std::vector<double>& b) {
  MTP_CHECK(a.size() == b.size(), "a paired comparison needs pairs: {} against {} values", a.size(),
            b.size());
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = b[i] - a[i];
  return d;
}
}  // namespace

MeanCI paired_effect_size(const std::vector<double>& a, const std::vector<double>& b,
                          double level) {
  const std::vector<double> d = paired_differences(a, b);
  MeanCI r;
  r.n = int(d.size());
  const double sd = sample_sd(d);
  if (r.n < 2 || sd == 0) {
    r.mean = r.lo = r.hi = kNaN;
    return r;
  }
  r.mean = mean(d) / sd;
  const double z = normal_quantile(0.5 + level / 2);
  const double half = z * std::sqrt(1.0 / r.n + r.mean * r.mean / (2.0 * r.n));
  r.lo = r.mean - half;
  r.hi = r.mean + half;
  return r;
}

PairedTest paired_t_test(const std::vector<double>& a, const std::vector<double>& b, double level) {
  const std::vector<double> d = paired_differences(a, b);
  PairedTest r;
  r.n = int(d.size());
  r.difference = mean_ci(d, level);
  if (r.n < 2) {
    r.t = r.p_value = kNaN;
    return r;
  }
  const double se = sample_sd(d) / std::sqrt(double(r.n));
  if (se == 0) {  // every pair differs by the same amount
    r.t = r.difference.mean == 0 ? 0 : std::copysign(INFINITY, r.difference.mean);
    r.p_value = r.difference.mean == 0 ? 1 : 0;
    return r;
  }
  r.t = r.difference.mean / se;
  const double df = r.n - 1;
  r.p_value = incomplete_beta(df / (df + r.t * r.t), df / 2, 0.5);  // P(|T| > |t|), no cancellation
  return r;
}

}  // namespace mtp::exp
