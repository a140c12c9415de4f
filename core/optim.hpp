// AdamW (Loshchilov & Hutter) over a ParamStore's flat buffers, global-norm gradient
// clipping and the warmup + cosine learning-rate schedule.
#pragma once

#include <cmath>
#include <vector>

#include "mtp/core/param_store.hpp"

namespace mtp {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.1;  // decoupled; only on params declared with weight_decay
};

template <class S>
class AdamW {
 public:
  AdamW(const ParamStore<S>& store, AdamWConfig cfg)
      : cfg_(cfg), m_(store.size(), S(0)), v_(store.size(), S(0)) {}

  // One update with learning rate lr. Parameters with trainable[i] == false (a
  // frozen group) are left untouched, moments included.
  void step(ParamStore<S>& store, double lr, const std::vector<bool>& trainable) {
    ++t_;
    const double bc1 = 1.0 - std::pow(cfg_.beta1, double(t_));
    const double bc2 = 1.0 - std::pow(cfg_.beta2, double(t_));
    const auto& infos = store.infos();
    for (size_t p = 0; p < infos.size(); ++p) {
      if (!trainable.empty() && !trainable[p]) continue;
      const ParamInfo& info = infos[p];
      S* w = store.values() + info.offset;
      const S* g = store.grads() + info.offset;
      S* m = m_.data() + info.offset;
      S* v = v_.data() + info.offset;
      const S b1 = S(cfg_.beta1), b2 = S(cfg_.beta2), eps = S(cfg_.eps);
      const S step_size = S(lr / bc1), inv_bc2 = S(1.0 / bc2);
      const S decay = info.weight_decay ? S(1.0 - lr * cfg_.weight_decay) : S(1);
      const index_t n = info.shape.numel();
#pragma omp simd
      for (index_t i = 0; i < n; ++i) {
        m[i] = b1 * m[i] + (S(1) - b1) * g[i];
        v[i] = b2 * v[i] + (S(1) - b2) * g[i] * g[i];
        w[i] = w[i] * decay - step_size * m[i] / (std::sqrt(v[i] * inv_bc2) + eps);
      }
    }
  }

  long long steps_taken() const {
    return t_;
  }
  std::vector<S>& first_moment() {
    return m_;
  }
  std::vector<S>& second_moment() {
    return v_;
  }
  void set_steps_taken(long long t) {
    t_ = t;
  }

 private:
  AdamWConfig cfg_;
  std::vector<S> m_, v_;
  long long t_ = 0;
};

// √(Σ g²) over the whole gradient buffer, accumulated in double.
template <class S>
double grad_global_norm(const ParamStore<S>& store) {
  double sum = 0;
  const S* g = store.grads();
  const index_t n = store.size();
#pragma omp parallel for reduction(+ : sum) if (n > (1 << 16))
  for (index_t i = 0; i < n; ++i) sum += double(g[i]) * double(g[i]);
  return std::sqrt(sum);
}

// Scales all gradients so that their global norm is at most max_norm; returns the
// factor applied (1 when no clipping was needed, or when max_norm <= 0).
template <class S>
double clip_grad_global_norm(ParamStore<S>& store, double norm, double max_norm) {
  if (max_norm <= 0 || norm <= max_norm) return 1.0;
  const double f = max_norm / (norm + 1e-12);
  S* g = store.grads();
  for (index_t i = 0; i < store.size(); ++i) g[i] = S(g[i] * f);
  return f;
}

// Linear warmup over `warmup` steps to lr_max, then cosine decay to lr_max·final_ratio
// at `total`. step counts from 0.
inline double warmup_cosine_lr(long long step, long long total, long long warmup, double lr_max,
                               double final_ratio = 0.1) {
  if (warmup > 0 && step < warmup) return lr_max * double(step + 1) / double(warmup);
  const long long span = std::max<long long>(1, total - warmup);
  const double progress = std::min(1.0, double(step - warmup) / double(span));
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return lr_max * (final_ratio + (1.0 - final_ratio) * cosine);
}

}  // namespace mtp
