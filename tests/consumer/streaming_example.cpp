// The README's library example, complete: two perspective layers stacked by hand,
// trained on an endless stream in chunks with carried state (truncated BPTT), one
// sequence reset mid-stream, and gradients accumulated over two chunks per update.
// The task: reproduce the input of 3 steps ago, across chunk boundaries.
#include <mtp/aggregators/learned.hpp>
#include <mtp/cells/gru.hpp>
#include <mtp/core/optim.hpp>
#include <mtp/core/perspectives.hpp>

#include <algorithm>
#include <cstdio>
#include <vector>

using Layer = mtp::Perspectives<mtp::Gru<float>, mtp::LearnedAggregator<float>>;
constexpr mtp::index_t T = 16, B = 8, I = 4, H = 32, kLag = 3;

int main() {
  Layer::Config cfg;
  cfg.cell = {.input = I, .hidden = H};
  cfg.perspectives = 3;
  cfg.aggregator.noise = 0.1;  // selector noise while training
  Layer::Config cfg2 = cfg;
  cfg2.cell = {.input = H, .hidden = H};
  Layer l1(cfg), l2(cfg2);

  mtp::ParamStore<float> params;  // one flat buffer of values, one of gradients
  l1.declare(params, "rnn.0.");   // rnn.0.weight_ih, ..., rnn.0.decay, rnn.0.selector.*
  l2.declare(params, "rnn.1.");   // distinct prefixes: each layer draws its own noise
  params.finalize();
  l1.bind(params);
  l2.bind(params);
  mtp::RngSequence init(/*seed=*/0, mtp::rng_stream::kInit);
  l1.init(init);
  l2.init(init);
  mtp::AdamW<float> opt(params, {});

  // States (B,K,H): zero means "no history". forward reads them and overwrites them
  // with the state after the chunk.
  mtp::Tensor<float> s1({B, 3, H}), s2({B, 3, H});
  mtp::Tensor<float> x({T, B, I}), h({T, B, H}), y({T, B, H});
  mtp::Tensor<float> dy({T, B, H}), dh({T, B, H}), dx({T, B, I});
  std::vector<float> stream((1000 * T + kLag) * B * I);
  mtp::RngSequence data(1, 0);
  for (float& v : stream) v = float(data.normal());

  double first = 0, last = 0;
  const int kUpdates = 300;
  for (int update = 0; update < kUpdates; ++update) {
    params.zero_grad();
    double loss = 0;
    for (int micro = 0; micro < 2; ++micro) {  // gradients accumulate over two chunks
      const std::int64_t chunk = 2 * update + micro;
      // x_t = stream at t; the target is the stream at t − kLag (carried across chunks).
      const float* xs = stream.data() + (chunk * T + kLag) * B * I;
      std::copy(xs, xs + T * B * I, x.data());
      if (chunk == 100) {  // sequence b = 0 starts over: zero its rows of every state
        std::fill_n(s1.data(), 3 * H, 0.0f);
        std::fill_n(s2.data(), 3 * H, 0.0f);
      }
      const mtp::StepContext ctx{.training = true, .seed = 0, .step = std::uint64_t(chunk)};
      l1.forward(x.view(), h.view(), ctx, s1.view());
      l2.forward(h.view(), y.view(), ctx, s2.view());
      // Loss: mean squared error of y's first I channels against the lagged input.
      dy.zero();
      for (mtp::index_t tb = 0; tb < T * B; ++tb)
        for (mtp::index_t i = 0; i < I; ++i) {
          const float err = y[tb * H + i] - xs[tb * I + i - kLag * B * I];
          loss += err * err / double(T * B * I);
          dy[tb * H + i] = 2 * err / float(T * B * I * 2);  // / 2 chunks
        }
      l2.backward(h.view(), dy.view(), dh.view());  // each backward: its layer's last forward
      l1.backward(x.view(), dh.view(), dx.view());
    }
    mtp::clip_grad_global_norm(params, mtp::grad_global_norm(params), 1.0);
    opt.step(params, 3e-3, {});
    if (update < 20) first += loss / 2 / 20;
    if (update >= kUpdates - 20) last += loss / 2 / 20;
  }
  std::printf("streaming example: lag-%d recall loss %.3f -> %.3f\n", int(kLag), first, last);
  return last < 0.5 * first ? 0 : 1;
}
