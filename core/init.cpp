#include "mtp/core/init.hpp"

#include <Eigen/QR>

namespace mtp {

template <class S>
void orthogonal_init(View<S> W, double gain, RngSequence& rng) {
  const index_t rows = W.dim(0), cols = W.numel() / rows;
  // QR of the tall orientation: Q has orthonormal columns.
  const bool transpose = rows < cols;
  const index_t tall = transpose ? cols : rows, wide = transpose ? rows : cols;
  Eigen::MatrixXd g(tall, wide);
  for (index_t j = 0; j < wide; ++j)
    for (index_t i = 0; i < tall; ++i) g(i, j) = rng.normal();
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(g);
  Eigen::MatrixXd q = qr.householderQ() * Eigen::MatrixXd::Identity(tall, wide);
  const Eigen::MatrixXd r = qr.matrixQR().topLeftCorner(wide, wide);
  for (index_t j = 0; j < wide; ++j)
    if (r(j, j) < 0) q.col(j) *= -1.0;
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j)
      W.data[i * cols + j] = S(gain * (transpose ? q(j, i) : q(i, j)));
}

template void orthogonal_init<float>(View<float>, double, RngSequence&);
template void orthogonal_init<double>(View<double>, double, RngSequence&);

}  // namespace mtp
