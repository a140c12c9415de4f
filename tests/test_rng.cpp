// Philox4x32-10 against the Random123 known-answer vectors, and the properties the
// rest of the code relies on.
#include <gtest/gtest.h>

#include <cmath>

#include "mtp/core/rng.hpp"

namespace mtp {
namespace {

TEST(Rng, PhiloxKnownAnswers) {
  // Random123 kat_vectors: philox4x32 10 rounds.
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}),
            (Philox4x32{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                          {0xffffffffu, 0xffffffffu}),
            (Philox4x32{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                          {0xa4093822u, 0x299f31d0u}),
            (Philox4x32{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(Rng, DrawsArePureFunctionsOfSeedStreamAndIndex) {
  const CounterRng a(7, 3), b(7, 3), other_seed(8, 3), other_stream(7, 4);
  EXPECT_EQ(a.normal(12345), b.normal(12345));
  EXPECT_NE(a.normal(12345), other_seed.normal(12345));
  EXPECT_NE(a.normal(12345), other_stream.normal(12345));
  RngSequence s(7, 3);
  s.seek(12345);
  EXPECT_EQ(s.normal(), a.normal(12345));
}

TEST(Rng, NormalAndUniformMoments) {
  const CounterRng r(1, 2);
  const int n = 200000;
  double m = 0, v = 0, um = 0;
  for (int i = 0; i < n; ++i) {
    const double z = r.normal(i);
    m += z;
    v += z * z;
    const double u = r.uniform(n + i);
    ASSERT_GT(u, 0.0);
    ASSERT_LE(u, 1.0);
    um += u;
  }
  EXPECT_NEAR(m / n, 0.0, 0.01);
  EXPECT_NEAR(v / n, 1.0, 0.01);
  EXPECT_NEAR(um / n, 0.5, 0.005);
  for (int i = 0; i < 1000; ++i) ASSERT_LT(r.below(i, 7), 7u);
}

}  // namespace
}  // namespace mtp
