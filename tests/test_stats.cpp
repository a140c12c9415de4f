// The statistics behind the sweep reports, against closed forms and table values.
#include <gtest/gtest.h>

#include <cmath>

#include "mtp/experiments/stats.hpp"

namespace mtp::exp {
namespace {

TEST(Stats, IncompleteBetaClosedForms) {
  for (double x : {0.0, 0.1, 0.37, 0.5, 0.9, 1.0}) {
    EXPECT_NEAR(incomplete_beta(x, 1, 1), x, 1e-14);
    EXPECT_NEAR(incomplete_beta(x, 3, 1), x * x * x, 1e-14);
    EXPECT_NEAR(incomplete_beta(x, 1, 4), 1 - std::pow(1 - x, 4), 1e-14);
    EXPECT_NEAR(incomplete_beta(x, 2.5, 7.5) + incomplete_beta(1 - x, 7.5, 2.5), 1.0, 1e-13);
  }
}

TEST(Stats, StudentTCdfClosedForms) {
  for (double t : {-7.0, -1.0, 0.0, 0.3, 1.0, 2.0, 12.0}) {
    // df = 1 (Cauchy), df = 2 and df = 3 have closed forms.
    EXPECT_NEAR(student_t_cdf(t, 1), 0.5 + std::atan(t) / M_PI, 1e-13) << t;
    EXPECT_NEAR(student_t_cdf(t, 2), 0.5 + t / (2 * std::sqrt(2 + t * t)), 1e-13) << t;
    const double s3 = std::sqrt(3.0);
    EXPECT_NEAR(student_t_cdf(t, 3), 0.5 + (t / (s3 * (1 + t * t / 3)) + std::atan(t / s3)) / M_PI,
                1e-13)
        << t;
  }
  // Large df approaches the normal distribution.
  EXPECT_NEAR(student_t_cdf(1.959963984540054, 1e7), 0.975, 1e-6);
}

TEST(Stats, StudentTQuantilesMatchTables) {
  EXPECT_NEAR(student_t_quantile(0.975, 1), 12.706204736, 1e-8);
  EXPECT_NEAR(student_t_quantile(0.975, 2), 4.302652730, 1e-8);
  EXPECT_NEAR(student_t_quantile(0.975, 5), 2.570581836, 1e-8);
  EXPECT_NEAR(student_t_quantile(0.975, 10), 2.228138852, 1e-8);
  EXPECT_NEAR(student_t_quantile(0.975, 30), 2.042272456, 1e-8);
  EXPECT_NEAR(student_t_quantile(0.5, 4), 0.0, 1e-12);
  EXPECT_NEAR(student_t_quantile(0.025, 3), -student_t_quantile(0.975, 3), 1e-10);
}

TEST(Stats, MeanConfidenceInterval) {
  const MeanCI ci = mean_ci({1.0, 2.0, 3.0, 4.0});
  EXPECT_EQ(ci.n, 4);
  EXPECT_DOUBLE_EQ(ci.mean, 2.5);
  // sd = √(5/3), half width = t_{0.975,3} · sd / 2.
  const double half = 3.182446305 * std::sqrt(5.0 / 3.0) / 2;
  EXPECT_NEAR(ci.lo, 2.5 - half, 1e-8);
  EXPECT_NEAR(ci.hi, 2.5 + half, 1e-8);
  const MeanCI one = mean_ci({7.0});
  EXPECT_EQ(one.mean, 7.0);
  EXPECT_TRUE(std::isnan(one.lo) && std::isnan(one.hi)) << "one seed gives no interval";
}

TEST(Stats, PairedTTest) {
  // d = b − a = {1, 2, 2, 3}: mean 2, sd √(2/3), t = 2 / (sd/2) = √24, df 3.
  const PairedTest r = paired_t_test({1, 2, 3, 4}, {2, 4, 5, 7});
  EXPECT_EQ(r.n, 4);
  EXPECT_DOUBLE_EQ(r.difference.mean, 2.0);
  EXPECT_NEAR(r.t, std::sqrt(24.0), 1e-12);
  const double t = std::sqrt(24.0), s3 = std::sqrt(3.0);
  const double cdf3 = 0.5 + (t / (s3 * (1 + t * t / 3)) + std::atan(t / s3)) / M_PI;
  EXPECT_NEAR(r.p_value, 2 * (1 - cdf3), 1e-12);
  // The sign of the difference does not change p.
  EXPECT_NEAR(paired_t_test({2, 4, 5, 7}, {1, 2, 3, 4}).p_value, r.p_value, 1e-15);
  // Constant differences: certain (p = 0) unless they are all zero (p = 1).
  EXPECT_EQ(paired_t_test({1, 2}, {2, 3}).p_value, 0.0);
  EXPECT_EQ(paired_t_test({1, 2}, {1, 2}).p_value, 1.0);
  EXPECT_TRUE(std::isnan(paired_t_test({1}, {2}).p_value)) << "one pair gives no test";
}

TEST(Stats, NormalQuantilesMatchTables) {
  EXPECT_NEAR(normal_quantile(0.975), 1.959963984540054, 1e-14);
  EXPECT_NEAR(normal_quantile(0.8), 0.8416212335729143, 1e-14);
  EXPECT_NEAR(normal_quantile(0.5), 0.0, 1e-14);
  EXPECT_NEAR(normal_quantile(1e-10), -6.361340902404056, 1e-12);
}

TEST(Stats, HolmAdjustsInTheGivenOrder) {
  // Sorted 0.005, 0.01, 0.03, 0.04 → 4·0.005, 3·0.01, 2·0.03, max(0.06, 1·0.04).
  const std::vector<double> adjusted = holm_adjust({0.01, 0.04, 0.03, 0.005});
  ASSERT_EQ(adjusted.size(), 4u);
  EXPECT_NEAR(adjusted[0], 0.03, 1e-15);
  EXPECT_NEAR(adjusted[1], 0.06, 1e-15) << "monotone: never below an earlier step";
  EXPECT_NEAR(adjusted[2], 0.06, 1e-15);
  EXPECT_NEAR(adjusted[3], 0.02, 1e-15);
  // Capped at 1; a NaN (no test) stays NaN and does not count in m.
  const std::vector<double> capped = holm_adjust({0.6, kNaN, 0.2});
  EXPECT_NEAR(capped[2], 0.4, 1e-15);
  EXPECT_NEAR(capped[0], 0.6, 1e-15);
  EXPECT_TRUE(std::isnan(capped[1]));
  EXPECT_EQ(holm_adjust({0.9, 0.8})[0], 1.0);
  EXPECT_TRUE(holm_adjust({}).empty());
}

TEST(Stats, PairedEffectSizeIsMeanOverSdOfDifferences) {
  // d = {1, 2, 2, 3}: mean 2, sd √(2/3), d_z = 2/√(2/3) = √6.
  const MeanCI e = paired_effect_size({1, 2, 3, 4}, {2, 4, 5, 7});
  EXPECT_EQ(e.n, 4);
  EXPECT_NEAR(e.mean, std::sqrt(6.0), 1e-12);
  const double half = 1.959963984540054 * std::sqrt(1.0 / 4 + 6.0 / 8);
  EXPECT_NEAR(e.hi - e.mean, half, 1e-13);
  EXPECT_NEAR(e.mean - e.lo, half, 1e-13);
  EXPECT_NEAR(paired_effect_size({2, 4, 5, 7}, {1, 2, 3, 4}).mean, -std::sqrt(6.0), 1e-12);
  EXPECT_TRUE(std::isnan(paired_effect_size({1, 2}, {2, 3}).mean)) << "no spread, no d_z";
  EXPECT_TRUE(std::isnan(paired_effect_size({1}, {2}).mean));
}

}  // namespace
}  // namespace mtp::exp
