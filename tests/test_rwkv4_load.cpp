// An RWKV-4 state dict loads into the perspective model by name (docs/contract.md §11.9) and
// computes what RWKV-4 computes. tests/fixtures/rwkv4_model.safetensors, written by
// `/usr/bin/python3 tests/make_fixtures.py`, holds a tiny RWKV-4 model (V = 11, C = 8,
// L = 2) under RWKV-4's exact names and shapes (time_decay (C), time mixes (1,1,C), ...),
// plus, under `ref.`, tokens (B,T) int32 and the logits (B,T,V) of an independent
// float64 torch implementation of RWKV-4 (batch-first, as RWKV-4 takes them; our model
// is time-major). The `ref.` tensors are split off before loading, so what
// load_state_dict sees is exactly an RWKV-4 state dict.
#include <gtest/gtest.h>

#include <memory>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "gradcheck.hpp"
#include "mtp/core/error.hpp"
#include "mtp/experiments/checkpoint.hpp"
#include "mtp/experiments/trainer.hpp"
#include "temp_dir.hpp"

#ifndef MTP_FIXTURE_DIR
#error "MTP_FIXTURE_DIR must name the folder of the torch fixtures"
#endif

namespace mtp {
namespace {

const std::string kFixture = std::string(MTP_FIXTURE_DIR) + "/rwkv4_model.safetensors";
constexpr double kTolerance = 1e-4;  // float32 model against the float64 reference

using test::rel_error;  // tests/gradcheck.hpp

// The fixture split into the RWKV-4 state dict and the reference data (`ref.*`).
struct Rwkv4Fixture {
  SafeTensors state_dict;
  index_t V = 0, C = 0, T = 0, B = 0;
  int L = 0;
  std::vector<std::int32_t> tokens;            // (T,B), time-major
  std::vector<double> logits, logits_k3_mean;  // (T,B,V), time-major

  static Rwkv4Fixture load() {
    Rwkv4Fixture f;
    f.state_dict = SafeTensors::load(kFixture);
    SafeTensors& sd = f.state_dict;
    const std::vector<index_t> emb = sd.at("emb.weight").shape;
    MTP_CHECK(emb.size() == 2, "emb.weight is not a matrix");
    f.V = emb[0];
    f.C = emb[1];
    while (sd.has("blocks." + std::to_string(f.L) + ".ln1.weight")) ++f.L;

    const StoredTensor tok = sd.at("ref.tokens");
    MTP_CHECK(tok.dtype == DType::I32 && tok.shape.size() == 2, "ref.tokens is not (B,T) I32");
    f.B = tok.shape[0];
    f.T = tok.shape[1];
    std::vector<std::int32_t> bt(f.B * f.T);
    std::memcpy(bt.data(), tok.bytes.data(), bt.size() * sizeof(std::int32_t));
    f.tokens.resize(bt.size());
    for (index_t b = 0; b < f.B; ++b)
      for (index_t t = 0; t < f.T; ++t) f.tokens[t * f.B + b] = bt[b * f.T + t];
    f.logits = f.time_major(sd.at("ref.logits"));
    f.logits_k3_mean = f.time_major(sd.at("ref.logits_k3_spread1_mean"));
    for (auto it = sd.tensors.begin(); it != sd.tensors.end();)
      it = it->first.rfind("ref.", 0) == 0 ? sd.tensors.erase(it) : std::next(it);
    return f;
  }
  // (B,T,V) → (T,B,V)
  std::vector<double> time_major(const StoredTensor& t) const {
    MTP_CHECK(t.shape == (std::vector<index_t>{B, T, V}), "reference logits are not (B,T,V)");
    const std::vector<double> bt = t.to<double>("reference logits");
    std::vector<double> tb(bt.size());
    for (index_t b = 0; b < B; ++b)
      for (index_t t = 0; t < T; ++t)
        std::copy_n(bt.data() + (b * T + t) * V, V, tb.data() + (t * B + b) * V);
    return tb;
  }
};

template <class Agg>
using Rwkv4Model = exp::ModelFor<Perspectives<RwkvTimeMix<float>, Agg>>;

template <class Agg>
std::unique_ptr<Rwkv4Model<Agg>> make_model(const Rwkv4Fixture& f, int K, double spread) {
  exp::TrainConfig c;
  c.cell = "rwkv";
  c.width = int(f.C);
  c.layers = f.L;
  c.ffn = true;
  c.perspectives = K;
  c.decay_spread = spread;
  // Built in place: a model cannot move (its layers point into its store).
  std::unique_ptr<Rwkv4Model<Agg>> model(
      new Rwkv4Model<Agg>(exp::build_model<Perspectives<RwkvTimeMix<float>, Agg>>(c, f.V)));
  model->init(7);  // whatever the file does not fill keeps a sensible init
  return model;
}

template <class M>
std::vector<double> logits_of(M& model, const Rwkv4Fixture& f) {
  model.forward(f.tokens.data(), nullptr, f.T, f.B, StepContext{});
  const CView<float> l = model.logits();
  return std::vector<double>(l.begin(), l.end());
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// The perspective decays of the model, one per block: `blocks.N.att.decay`.
std::vector<std::string> decay_names(int L) {
  std::vector<std::string> n;
  for (int l = 0; l < L; ++l) n.push_back("blocks." + std::to_string(l) + ".att.decay");
  return n;
}

// Every tensor of the state dict must have been used, and every model tensor other than
// the decays (expanded from time_decay) and `missing` loaded.
void check_report(const exp::StateDictReport& r, const ParamStore<float>& params, int L,
                  const std::vector<std::string>& missing) {
  EXPECT_EQ(r.unused, std::vector<std::string>{});
  EXPECT_EQ(sorted(r.missing), sorted(missing));
  EXPECT_EQ(sorted(r.expanded), decay_names(L));
  std::set<std::string> accounted(r.loaded.begin(), r.loaded.end());
  accounted.insert(r.expanded.begin(), r.expanded.end());
  accounted.insert(r.missing.begin(), r.missing.end());
  EXPECT_EQ(accounted.size(), params.infos().size());
  EXPECT_EQ(r.loaded.size() + r.expanded.size() + r.missing.size(), params.infos().size());
}

// Decay rows of every block = time_decay + offsets[k].
void check_decays(const Rwkv4Fixture& f, const ParamStore<float>& params,
                  const std::vector<double>& offsets) {
  const index_t K = index_t(offsets.size());
  for (int l = 0; l < f.L; ++l) {
    const std::string name = "blocks." + std::to_string(l) + ".att.decay";
    SCOPED_TRACE(name);
    const std::vector<double> td =
        f.state_dict.at("blocks." + std::to_string(l) + ".att.time_decay").to<double>("td");
    const ParamRef ref = params.find(name);
    ASSERT_GE(ref.index, 0);
    const CView<float> d = params.value(ref);
    ASSERT_EQ(d.shape.dims(), (std::vector<index_t>{K, f.C}));
    for (index_t k = 0; k < K; ++k)
      for (index_t c = 0; c < f.C; ++c)
        EXPECT_NEAR(d[k * f.C + c], td[c] + offsets[k], 1e-6) << "row " << k << " channel " << c;
  }
}

TEST(Rwkv4StateDict, K1LoadsByNameAndMatchesRwkv4) {
  const Rwkv4Fixture f = Rwkv4Fixture::load();
  ASSERT_GT(f.L, 0);
  auto model_ptr = make_model<MeanAggregator<float>>(f, 1, 1.0);
  auto& model = *model_ptr;
  const exp::StateDictReport r = exp::load_state_dict(f.state_dict, kFixture, model.params(), 1.0);
  check_report(r, model.params(), f.L, {});
  check_decays(f, model.params(), {0.0});
  const double err = rel_error(logits_of(model, f), f.logits);
  EXPECT_LE(err, kTolerance);
  std::printf("  K=1 mean: logits max rel error %.2e\n", err);
}

TEST(Rwkv4StateDict, K3IdenticalPerspectivesMatchRwkv4) {
  // Spread 0: the three perspectives are copies, so whatever the learned selector
  // weighs them with, the model is RWKV-4. The selectors are all the file lacks.
  const Rwkv4Fixture f = Rwkv4Fixture::load();
  auto model_ptr = make_model<LearnedAggregator<float>>(f, 3, 0.0);
  auto& model = *model_ptr;
  const exp::StateDictReport r = exp::load_state_dict(f.state_dict, kFixture, model.params(), 0.0);
  std::vector<std::string> selectors;
  for (int l = 0; l < f.L; ++l)
    for (const char* s : {".att.selector.weight", ".att.selector.bias"})
      selectors.push_back("blocks." + std::to_string(l) + s);
  check_report(r, model.params(), f.L, selectors);
  check_decays(f, model.params(), {0.0, 0.0, 0.0});
  const double err = rel_error(logits_of(model, f), f.logits);
  EXPECT_LE(err, kTolerance);
  std::printf("  K=3 learned, spread 0: logits max rel error %.2e\n", err);
}

TEST(Rwkv4StateDict, K3SpreadDecaysAroundTimeDecay) {
  // Spread 1: decay rows time_decay + (−1, 0, +1); with the mean aggregator the model is
  // the reference's three averaged wkv views, no longer RWKV-4 itself.
  const Rwkv4Fixture f = Rwkv4Fixture::load();
  auto model_ptr = make_model<MeanAggregator<float>>(f, 3, 1.0);
  auto& model = *model_ptr;
  const exp::StateDictReport r = exp::load_state_dict(f.state_dict, kFixture, model.params(), 1.0);
  check_report(r, model.params(), f.L, {});
  check_decays(f, model.params(), {-1.0, 0.0, 1.0});
  const std::vector<double> logits = logits_of(model, f);
  const double err = rel_error(logits, f.logits_k3_mean);
  EXPECT_LE(err, kTolerance);
  EXPECT_GT(rel_error(logits, f.logits), 100 * kTolerance) << "the spread should matter";
  std::printf("  K=3 mean, spread 1: logits max rel error %.2e\n", err);
}

// Each case puts one malformed tensor into the state dict; loading must fail with an
// error naming the file and the tensor (same element count is not enough).
void expect_rejected(const std::string& name, const std::vector<index_t>& shape,
                     const std::string& mentioned) {
  Rwkv4Fixture f = Rwkv4Fixture::load();
  index_t n = 1;
  for (index_t d : shape) n *= d;
  const std::vector<float> wrong(n, 0.5f);
  f.state_dict.put(name, shape, wrong.data());
  const test::TempDir dir;
  const std::string path = (dir.path() / "bad_rwkv4.safetensors").string();
  f.state_dict.save(path);
  const SafeTensors file = SafeTensors::load(path);
  auto model_ptr = make_model<MeanAggregator<float>>(f, 1, 1.0);
  auto& model = *model_ptr;
  try {
    exp::load_state_dict(file, path, model.params(), 1.0);
    ADD_FAILURE() << name << " of shape " << shape_str(shape) << " was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("'" + mentioned + "'"), std::string::npos) << msg;
  }
}

TEST(Rwkv4StateDict, WrongShapeNamesFileAndTensor) {
  const Rwkv4Fixture f = Rwkv4Fixture::load();
  const std::string blk = "blocks." + std::to_string(f.L - 1) + ".";
  expect_rejected(blk + "att.key.weight", {f.C, f.C + 1}, blk + "att.key.weight");
  // Same element count, other shape: a transposed matrix, a flattened one.
  expect_rejected(blk + "ffn.key.weight", {f.C, 4 * f.C}, blk + "ffn.key.weight");
  expect_rejected(blk + "att.key.weight", {1, f.C * f.C}, blk + "att.key.weight");
  // time_decay must have one entry per channel.
  expect_rejected(blk + "att.time_decay", {f.C + 1}, blk + "att.time_decay");
}

}  // namespace
}  // namespace mtp
