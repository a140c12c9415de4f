// Which parameters the K perspectives hold a row each of, for the models whose
// perspectives are K streams of a K = 1 computation sharing everything else
// (HeadModel: through the whole model; LayerStreams: through one layer). The rest is
// shared. docs/contract.md §7.1.
#pragma once

#include <string_view>
#include <vector>

#include "mtp/core/param_store.hpp"

namespace mtp {

// decay: the cell's decay (mtp's perspectives); shift: the token-shift mixes, with one
// shared decay (the paper's released code, RWKV-4); both.
enum class PerPerspective { decay, shift, both };

// The token-shift mixes: the parameters PerPerspective::shift gives a row per stream. A
// cell or FFN without them has nothing to shift.
inline bool is_shift_param(std::string_view name) {
  for (std::string_view mix : {".time_mix_k", ".time_mix_v", ".time_mix_r"})
    if (name.size() >= mix.size() && name.substr(name.size() - mix.size()) == mix) return true;
  return false;
}

// Whether a parameter of the K = 1 computation gets a row per perspective. The decay is
// recognised by its role: in a K = 1 layer it is the only perspective parameter.
inline bool is_per_perspective(PerPerspective pp, const ParamInfo& p) {
  const bool decay = p.role == ParamRole::perspective;
  const bool shift = is_shift_param(p.name);
  switch (pp) {
    case PerPerspective::decay:
      return decay;
    case PerPerspective::shift:
      return shift;
    case PerPerspective::both:
      return decay || shift;
  }
  return false;
}

// The shape of K rows of a K = 1 parameter: (1,D) → (K,D), (C) → (K,C).
inline Shape stacked_shape(const Shape& s, int K) {
  std::vector<index_t> dims = s.dims();
  if (dims.size() >= 2 && dims[0] == 1)
    dims[0] = K;
  else
    dims.insert(dims.begin(), K);
  return Shape::from(dims);
}

// Rows 1..K−1 of a stacked parameter (K rows) from row 0, which an initialiser wrote:
// token-shift mixes start equal (as the authors'), decay rows spread as mtp's layers do,
// row k = row 0 + spread·(k − (K−1)/2).
template <class S>
void spread_rows(View<S> v, int K, bool is_decay, double spread) {
  const index_t row = v.numel() / K;
  for (int k = K - 1; k >= 0; --k)
    for (index_t c = 0; c < row; ++c)
      v[k * row + c] = v[c] + (is_decay ? S(spread * (k - (K - 1) / 2.0)) : S(0));
}

}  // namespace mtp
