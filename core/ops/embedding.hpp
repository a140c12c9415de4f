// Token embedding: y[r,:] = E[token[r],:].
#pragma once

#include <algorithm>
#include <cstdint>

#include "mtp/core/tensor.hpp"

namespace mtp {

// tokens (R) in [0,V), E (V,C) → y (R,C). Token ranges are checked where tokens enter.
template <class S>
void embedding_forward(const std::int32_t* tokens, index_t R, In<S> E, View<S> y) {
  const index_t C = E.dim(1);
  for (index_t r = 0; r < R; ++r) std::copy_n(E.data + index_t{tokens[r]} * C, C, y.data + r * C);
}

// Saved from forward: tokens. dE (V,C) += scatter of dy (R,C) by token.
template <class S>
void embedding_backward(const std::int32_t* tokens, index_t R, In<S> dy, View<S> dE) {
  const index_t C = dE.dim(1);
  for (index_t r = 0; r < R; ++r) {
    S* dst = dE.data + index_t{tokens[r]} * C;
    const S* src = dy.data + r * C;
    for (index_t c = 0; c < C; ++c) dst[c] += src[c];
  }
}

}  // namespace mtp
