// Weight initialisers beyond uniform/normal fills.
#pragma once

#include "mtp/core/rng.hpp"
#include "mtp/core/tensor.hpp"

namespace mtp {

// W (rows, cols) = gain · a (semi-)orthogonal matrix: the Q factor of a Gaussian matrix,
// sign-corrected so that the distribution is uniform (Mezzadri 2007), as
// torch.nn.init.orthogonal_. Rows are orthonormal when rows ≤ cols, columns otherwise.
template <class S>
void orthogonal_init(View<S> W, double gain, RngSequence& rng);

}  // namespace mtp
