// The paper's protocol: a K = 1 base, then K = 3 initialised from it with the base
// frozen. The base tensors must come through bit for bit, only the perspective tensors
// train, and a base of another shape is refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <utility>

#include "mtp/experiments/registry.hpp"
#include "mtp/experiments/trainer.hpp"
#include "temp_dir.hpp"

namespace mtp::exp {
namespace {

TrainConfig small(const std::string& out, int K) {
  TrainConfig c;
  c.perspectives = K;
  c.steps = 8;
  c.batch = 4;
  c.width = 12;
  c.layers = 2;
  c.val_batches = 1;
  c.threads = 1;
  c.out = out;
  return c;
}

TEST(Protocol, FreezeBaseTrainsOnlyThePerspectives) {
  test::TempDir dir;
  const std::string base_dir = (dir.path() / "base").string();
  run_training(small(base_dir, 1));
  TrainConfig ft = small((dir.path() / "ft").string(), 3);
  ft.init_from = base_dir + "/model.safetensors";
  ft.freeze = "base";
  const nlohmann::json result = run_training(ft);

  const SafeTensors base = SafeTensors::load(base_dir + "/model.safetensors");
  const SafeTensors tuned = SafeTensors::load(ft.out + "/model.safetensors");
  index_t perspective = 0, total = 0;
  for (const auto& [name, t] : tuned.tensors) {
    total += t.numel();
    const bool is_perspective =
        name.find(".decay") != std::string::npos || name.find(".selector.") != std::string::npos;
    if (is_perspective) {
      perspective += t.numel();
      continue;
    }
    ASSERT_TRUE(base.has(name)) << name;
    EXPECT_EQ(t.bytes, base.at(name).bytes) << name << " is frozen";
  }
  // The decays grew from the base's single row and then trained.
  const auto d0 = base.at("blocks.0.mixer.decay").to<double>("base decay");
  const auto d3 = tuned.at("blocks.0.mixer.decay").to<double>("tuned decay");
  ASSERT_EQ(d3.size(), 3 * d0.size());
  double moved = 0;
  for (size_t c = 0; c < d0.size(); ++c)
    moved = std::max(moved, std::abs(d3[d0.size() + c] - d0[c]));
  EXPECT_GT(moved, 0.0) << "the perspective decays train";
  EXPECT_LT(moved, 0.1) << "and start from the base (middle row, spread offset 0)";
  EXPECT_EQ(result["parameters"]["trained"].get<index_t>(), perspective);
  EXPECT_EQ(result["parameters"]["total"].get<index_t>(), total);
  // Added to the K = 1 model: two more decay rows (H = 12) and a selector (3,12) + (3)
  // per layer.
  EXPECT_EQ(result["parameters"]["perspective"].get<index_t>(), 2 * (2 * 12 + 3 * 12 + 3));
}

TEST(Protocol, BaseOfAnotherShapeIsRefused) {
  test::TempDir dir;
  const std::string base_dir = (dir.path() / "base").string();
  run_training(small(base_dir, 1));
  TrainConfig ft = small((dir.path() / "ft").string(), 3);
  ft.width = 16;
  ft.init_from = base_dir + "/model.safetensors";
  try {
    run_training(ft);
    ADD_FAILURE() << "a width-12 base was loaded into a width-16 model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(ft.init_from), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(ft.out)) << "a refused run leaves no output folder";
  ft.width = 12;
  ft.init_from = (dir.path() / "missing.safetensors").string();
  EXPECT_THROW(run_training(ft), Error);
}

// The authors' variant through the same protocol: an RWKV K = 1 base, then K = 3 views
// with a row of token-shift mixes each (and one shared decay), combined at the head (K
// streams through the model) or in every layer (K streams through each time mix), base
// frozen. The mixes start as copies of the base's, the selectors are new, and only the
// rows and the selectors train; what the perspectives add is reported against the K = 1
// model.
void expect_authors_variant_from_k1_base(const std::string& combine) {
  test::TempDir dir;
  TrainConfig base_cfg = small((dir.path() / "base").string(), 1);
  base_cfg.cell = "rwkv";
  base_cfg.aggregator = "mean";
  run_training(base_cfg);
  TrainConfig ft = base_cfg;
  ft.out = (dir.path() / "ft").string();
  ft.perspectives = 3;
  ft.aggregator = "learned";
  ft.combine = combine;
  ft.per_perspective = "shift";
  ft.init_from = base_cfg.out + "/model.safetensors";
  ft.freeze = "base";
  const nlohmann::json result = run_training(ft);

  const SafeTensors base = SafeTensors::load(base_cfg.out + "/model.safetensors");
  const SafeTensors tuned = SafeTensors::load(ft.out + "/model.safetensors");
  // At the head every mix has rows (time mix and channel mix); in every layer the time
  // mix's, as the channel mix sees the combined stream.
  const std::string rows_of = combine == "head" ? ".time_mix_" : ".att.time_mix_";
  index_t trained = 0, added = 0;
  for (const auto& [name, t] : tuned.tensors) {
    if (name.find("selector.") != std::string::npos) {
      trained += t.numel();
      added += t.numel();
      continue;
    }
    ASSERT_TRUE(base.has(name)) << name;
    const StoredTensor& b = base.at(name);
    if (name.find(rows_of) == std::string::npos) {
      EXPECT_EQ(t.bytes, b.bytes) << name << " is frozen";  // the shared decay included
      continue;
    }
    ASSERT_EQ(t.shape, (std::vector<index_t>{3, 12})) << name;
    trained += t.numel();
    added += t.numel() - b.numel();
    const auto rows = t.to<double>(name), row = b.to<double>(name);
    double moved = 0;
    for (size_t i = 0; i < rows.size(); ++i)
      moved = std::max(moved, std::abs(rows[i] - row[i % 12]));
    EXPECT_GT(moved, 0.0) << name << " trains";
    EXPECT_LT(moved, 0.1) << name << " from the base's row";
  }
  EXPECT_EQ(result["parameters"]["trained"].get<index_t>(), trained);
  EXPECT_EQ(result["parameters"]["perspective"].get<index_t>(), added);
  // 2 layers × 5 mixes (head) or 3 (layer) × 2 more rows × W, and the selectors (K,W) +
  // (K): one at the head, one per layer.
  const index_t selector = 3 * 12 + 3;
  if (combine == "head")
    EXPECT_EQ(added, 2 * 5 * 2 * 12 + selector);
  else
    EXPECT_EQ(added, 2 * 3 * 2 * 12 + 2 * selector);
}

TEST(Protocol, AuthorsVariantFromAK1Base) {
  expect_authors_variant_from_k1_base("head");
}

TEST(Protocol, TokenShiftPerPerspectiveInEveryLayerFromAK1Base) {
  expect_authors_variant_from_k1_base("layer");
}

// Growing K again: token-shift rows of a K = 3 model fill a K = 5 model with their mean,
// as its decays do; the summary names what grew and what is new.
TEST(Protocol, TokenShiftRowsGrowFromAnotherK) {
  test::TempDir dir;
  TrainConfig k3 = small((dir.path() / "k3").string(), 3);
  k3.cell = "rwkv";
  k3.per_perspective = "both";
  k3.steps = 4;
  k3.lr = 0.05;  // rows that differ after a few steps
  run_training(k3);
  TrainConfig k5 = k3;
  k5.perspectives = 5;
  const std::string path = k3.out + "/model.safetensors";
  const SafeTensors file = SafeTensors::load(path);
  const auto model = registry().mixer("rwkv", "learned").model(k5, 32);  // mqar: 32 tokens
  model->init(0);
  const StateDictReport r = load_state_dict(file, path, model->params(), 0.0, true);
  const std::string mix = "blocks.1.att.time_mix_v";
  EXPECT_NE(std::find(r.expanded.begin(), r.expanded.end(), mix), r.expanded.end());
  EXPECT_NE(std::find(r.expanded.begin(), r.expanded.end(), "blocks.1.att.decay"),
            r.expanded.end());
  EXPECT_NE(std::find(r.fresh.begin(), r.fresh.end(), "blocks.1.att.selector.weight"),
            r.fresh.end());
  const std::vector<double> stored = file.at(mix).to<double>(mix);  // (3,12)
  const CView<float> rows = std::as_const(model->params()).value(model->params().find(mix));
  ASSERT_EQ(rows.numel(), 5 * 12);
  double spread = 0;
  for (index_t c = 0; c < 12; ++c) {
    const double mean = (stored[c] + stored[12 + c] + stored[24 + c]) / 3;
    spread = std::max(spread, std::abs(stored[c] - stored[24 + c]));
    for (index_t k = 0; k < 5; ++k) EXPECT_NEAR(rows[k * 12 + c], mean, 1e-6) << k << "," << c;
  }
  EXPECT_GT(spread, 1e-4) << "the K = 3 rows were trained apart";
  // Into a model with one set of mixes they do not go: the error names the flag.
  TrainConfig decay = k3;
  decay.per_perspective = "decay";
  const auto plain = registry().mixer("rwkv", "learned").model(decay, 32);
  plain->init(0);
  try {
    load_state_dict(file, path, plain->params(), 0.0, true);
    ADD_FAILURE() << "rows per perspective loaded into one set of mixes";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--per-perspective shift or both"), std::string::npos)
        << e.what();
  }
  k5.out = (dir.path() / "k5").string();
  k5.init_from = path;
  k5.freeze = "base";
  k5.steps = 1;
  testing::internal::CaptureStdout();
  run_training(k5);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("grown to this K (blocks.0.att.time_mix_k, blocks.0.att.time_mix_v, "
                     "blocks.0.att.time_mix_r and 5 more)"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("new (blocks.0.att.selector.weight"), std::string::npos) << out;
}

// Every combination the two axes allow trains; the others are refused naming the flag.
TEST(Protocol, CombineAndPerPerspectiveAxes) {
  test::TempDir dir;
  int runs = 0;
  for (const char* cell : {"rwkv", "gru"})
    for (const char* combine : {"layer", "head"})
      for (const char* pp : {"decay", "shift", "both"}) {
        TrainConfig c =
            small((dir.path() / fmt::format("{}-{}-{}", cell, combine, pp)).string(), 3);
        c.cell = cell;
        c.combine = combine;
        c.per_perspective = pp;
        c.steps = 3;
        const bool allowed = std::string(pp) == "decay" || std::string(cell) == "rwkv";
        if (allowed) {
          const nlohmann::json r = run_training(c);
          EXPECT_TRUE(std::isfinite(r["validation"]["loss"].get<double>())) << c.out;
          ++runs;
        } else {
          try {
            run_training(c);
            ADD_FAILURE() << "ran " << c.out;
          } catch (const UsageError& e) {
            EXPECT_NE(std::string(e.what()).find("--per-perspective"), std::string::npos)
                << e.what();
          }
        }
      }
  EXPECT_EQ(runs, 8);
  TrainConfig bad = small((dir.path() / "bad").string(), 3);
  bad.combine = "tail";
  EXPECT_THROW(run_training(bad), UsageError);
}

// A task with groups reports them per run, in task order (the report reads them).
TEST(TrainingResult, LagRecallReportsAccuracyPerLag) {
  test::TempDir dir;
  TrainConfig c = small((dir.path() / "lag").string(), 2);
  c.task = "lag-recall";
  c.vocab = 8;
  c.seq_len = 40;
  c.lags = {1, 4, 16};
  const nlohmann::json r = run_training(c);
  const auto& groups = r.at("validation").at("groups");
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0].at("name"), "lag 1");
  EXPECT_EQ(groups[2].at("name"), "lag 16");
  long long labelled = 0;
  for (const auto& g : groups) labelled += g.at("labelled").get<long long>();
  EXPECT_EQ(labelled, r.at("validation").at("labelled").get<long long>());
}

}  // namespace
}  // namespace mtp::exp
