// Statistics for comparing runs across seeds: means with Student-t confidence
// intervals and the paired t-test (perspective configurations against the K = 1
// baseline of the same seed), as in the paper's significance tests.
#pragma once

#include <limits>
#include <vector>

namespace mtp::exp {

// What a statistic is when it does not exist (no interval from one seed).
inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double mean(const std::vector<double>& v);
// Sample standard deviation (n − 1 in the denominator); 0 for fewer than 2 values.
double sample_sd(const std::vector<double>& v);

// Regularised incomplete beta function I_x(a, b), a, b > 0, x in [0, 1].
double incomplete_beta(double x, double a, double b);
// Student t with `df` degrees of freedom: P(T ≤ t), and its inverse.
double student_t_cdf(double t, double df);
double student_t_quantile(double p, double df);
// The standard normal's inverse distribution function.
double normal_quantile(double p);

struct MeanCI {
  int n = 0;
  double mean = 0;
  double lo = 0, hi = 0;  // NaN when n < 2: one seed gives no interval
};
// Mean and two-sided `level` (e.g. 0.95) confidence interval, t-distributed.
MeanCI mean_ci(const std::vector<double>& v, double level = 0.95);

struct PairedTest {
  int n = 0;
  MeanCI difference;   // of b − a
  double t = 0;        // statistic
  double p_value = 1;  // two-sided; NaN when n < 2
};
// Paired t-test of b against a (same length, paired by index, e.g. by seed).
PairedTest paired_t_test(const std::vector<double>& a, const std::vector<double>& b,
                         double level = 0.95);

// Holm–Bonferroni: the adjusted p-values of a family of m tests, in the given order
// (p_(i) sorted ascending becomes max_{j ≤ i} min(1, (m − j + 1) p_(j))). Rejecting
// where the adjusted p < α keeps the family-wise error rate at α. NaN p-values (no test)
// are left NaN and do not count in m.
std::vector<double> holm_adjust(const std::vector<double>& p);

// The standardised effect of a paired comparison, Cohen's d_z = mean(d) / sd(d) over the
// differences d, with the large-sample interval d_z ± z·sqrt(1/n + d_z²/(2n)) (Hedges &
// Olkin); NaN for fewer than 2 pairs or identical differences.
MeanCI paired_effect_size(const std::vector<double>& a, const std::vector<double>& b,
                          double level = 0.95);

}  // namespace mtp::exp
