#include "mtp/experiments/checkpoint.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "mtp/core/head_model.hpp"
#include "mtp/experiments/json_file.hpp"
#include "mtp/experiments/run_folder.hpp"

namespace mtp::exp {

namespace {

nlohmann::json data_files_json(const std::vector<DataFile>& files) {
  nlohmann::json j = nlohmann::json::array();
  for (const DataFile& f : files)
    j.push_back({{"flag", f.flag}, {"path", f.path}, {"bytes", f.bytes}, {"sha256", f.sha256}});
  return j;
}

}  // namespace

std::vector<std::uint8_t> checkpoint_bytes(const ParamStore<float>& params,
                                           const nlohmann::json& config, long long step,
                                           const std::vector<DataFile>& data) {
  SafeTensors out;
  for (const ParamInfo& p : params.infos())
    out.put(p.name, p.shape.dims(), params.values() + p.offset);
  out.metadata["format"] = kCheckpointFormat;
  out.metadata["config"] = config.dump();
  out.metadata["step"] = std::to_string(step);
  out.metadata["data_files"] = data_files_json(data).dump();
  return out.serialize();
}

nlohmann::json checkpoint_config(const SafeTensors& file, const std::string& path) {
  auto fmt_it = file.metadata.find("format");
  MTP_CHECK(fmt_it != file.metadata.end() && fmt_it->second == kCheckpointFormat,
            "{}: not an mtp checkpoint (no '{}' format in its metadata)", path, kCheckpointFormat);
  auto it = file.metadata.find("config");
  MTP_CHECK(it != file.metadata.end(), "{}: checkpoint has no run configuration", path);
  try {
    return nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: checkpoint configuration is not valid JSON ({})", path, json_error_text(e));
  }
}

std::vector<DataFile> checkpoint_data_files(const SafeTensors& file, const std::string& path) {
  std::vector<DataFile> files;
  const auto it = file.metadata.find("data_files");
  if (it == file.metadata.end()) return files;
  const std::string where = path + ": data_files";
  const nlohmann::json j = parse_json(it->second, where);
  MTP_CHECK(j.is_array(), "{} is not a JSON array", where);
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string at = where + "[" + std::to_string(i) + "]";
    files.push_back({json_field<std::string>(j[i], "flag", at),
                     json_field<std::string>(j[i], "path", at),
                     json_field<std::uint64_t>(j[i], "bytes", at),
                     json_field<std::string>(j[i], "sha256", at)});
  }
  return files;
}

void load_parameters(const SafeTensors& file, const std::string& path, ParamStore<float>& params) {
  std::set<std::string> expected;
  for (const ParamInfo& p : params.infos()) {
    expected.insert(p.name);
    MTP_CHECK(file.has(p.name), "{}: missing tensor '{}'", path, p.name);
    const StoredTensor& t = file.at(p.name);
    MTP_CHECK(t.shape == p.shape.dims(), "{}: tensor '{}' has shape {}, the model needs {}", path,
              p.name, shape_str(t.shape), p.shape.str());
    const std::vector<float> v = t.to<float>(path + ": tensor '" + p.name + "'");
    std::copy(v.begin(), v.end(), params.values() + p.offset);
  }
  for (const auto& [name, t] : file.tensors)
    MTP_CHECK(expected.count(name), "{}: unexpected tensor '{}' for this model", path, name);
  params.mark_all_set();
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Fills `out` (K,D) from `rows` stored rows of width D: their mean, spread over K as §3's
// decay rows are (spread 0: every row the mean, as token-shift mixes grow).
void expand_rows(const std::vector<float>& stored, index_t rows, View<float> out, double spread) {
  const index_t K = out.dim(0), D = out.dim(1);
  for (index_t c = 0; c < D; ++c) {
    double base = 0;
    for (index_t r = 0; r < rows; ++r) base += stored[r * D + c];
    base /= double(rows);
    for (index_t k = 0; k < K; ++k)
      out[k * D + c] = float(base + spread * (double(k) - double(K - 1) / 2.0));
  }
}

// How many rows of `row`'s shape a stored tensor holds: 1 for `row` itself (RWKV-4's
// (1,1,C) included), K' for (K',row...), 0 for anything else.
index_t stored_rows(const std::vector<index_t>& stored, const std::vector<index_t>& row) {
  std::vector<index_t> s = stored;
  while (s.size() > row.size() + 1 && s.front() == 1) s.erase(s.begin());
  if (s.size() == row.size()) return s == row ? 1 : 0;
  if (s.size() == row.size() + 1 && s.front() > 0 &&
      std::equal(row.begin(), row.end(), s.begin() + 1))
    return s.front();
  return 0;
}

}  // namespace

StateDictReport load_state_dict(const SafeTensors& file, const std::string& path,
                                ParamStore<float>& params, double decay_spread,
                                bool fresh_perspectives) {
  // Shapes agree once leading 1s are dropped: RWKV-4 stores its time mixes as (1,1,C).
  auto squeezed = [](std::vector<index_t> d) {
    while (d.size() > 1 && d.front() == 1) d.erase(d.begin());
    return d;
  };
  StateDictReport report;
  std::set<std::string> used;
  for (const ParamInfo& p : params.infos()) {
    View<float> dst(params.values() + p.offset, p.shape);
    // A decay (K,D) (or, shared by a head model's streams, (1,D) of the base).
    const bool is_decay = ends_with(p.name, "decay") && p.shape.rank() == 2;
    // A row per perspective of what the file holds once (a head model's token shift).
    std::vector<index_t> row = p.shape.dims();
    if (!row.empty()) row.erase(row.begin());  // empty for a vector
    const index_t D = is_decay ? p.shape[1] : 0;
    if (file.has(p.name)) {
      const StoredTensor& t = file.at(p.name);
      const std::string what = path + ": tensor '" + p.name + "'";
      if (squeezed(t.shape) == squeezed(p.shape.dims())) {
        const std::vector<float> v = t.to<float>(what);
        std::copy(v.begin(), v.end(), dst.data);
        params.mark_set(params.find(p.name));
        report.loaded.push_back(p.name);
      } else if (is_decay && t.shape.size() == 2 && t.shape[1] == D && t.shape[0] > 0) {
        expand_rows(t.to<float>(what), t.shape[0], dst, decay_spread);  // another K
        params.mark_set(params.find(p.name));
        report.expanded.push_back(p.name);
      } else if (is_shift_param(p.name) && p.role == ParamRole::perspective && !row.empty() &&
                 stored_rows(t.shape, row) > 0) {
        // A K = 1 model's mix in every row, or another K's rows: their mean in every row
        // (as decays grow from their mean, without the spread).
        const index_t K = p.shape[0];
        expand_rows(t.to<float>(what), stored_rows(t.shape, row),
                    View<float>(dst.data, {K, dst.numel() / K}), 0.0);
        params.mark_set(params.find(p.name));
        report.expanded.push_back(p.name);
      } else if (fresh_perspectives && p.role == ParamRole::perspective) {
        report.fresh.push_back(p.name);
      } else if (is_shift_param(p.name) && stored_rows(t.shape, p.shape.dims()) > 1) {
        fail(
            "{}: tensor '{}' has a row per perspective {}, the model needs one {}: the file's "
            "model had token-shift mixes per perspective; give this one --per-perspective "
            "shift or both (and the file's --combine)",
            path, p.name, shape_str(t.shape), p.shape.str());
      } else {
        fail(
            "{}: tensor '{}' has shape {}, the model needs {} (a model of another cell, width "
            "or vocabulary? --width and --layers must be the stored model's)",
            path, p.name, shape_str(t.shape), p.shape.str());
      }
      used.insert(p.name);
      continue;
    }
    const std::string time_decay =
        is_decay ? p.name.substr(0, p.name.size() - 5) + "time_decay" : "";
    if (is_decay && file.has(time_decay)) {
      const StoredTensor& t = file.at(time_decay);
      MTP_CHECK(squeezed(t.shape) == std::vector<index_t>{D},
                "{}: tensor '{}' has shape {}, the model's {} needs ({})", path, time_decay,
                shape_str(t.shape), p.name, D);
      expand_rows(t.to<float>(path + ": tensor '" + time_decay + "'"), 1, dst, decay_spread);
      params.mark_set(params.find(p.name));
      report.expanded.push_back(p.name);
      used.insert(time_decay);
      continue;
    }
    report.missing.push_back(p.name);
  }
  for (const auto& [name, t] : file.tensors)
    if (!used.count(name)) report.unused.push_back(name);
  return report;
}

namespace {

// A double for JSON, which has no NaN: null stands for it.
nlohmann::json number_or_null(double v) {
  return std::isnan(v) ? nlohmann::json() : nlohmann::json(v);
}
double number_or_nan(const nlohmann::json& j) {
  return j.is_null() ? NAN : j.get<double>();
}

inline constexpr const char* kTrainingStateFormat = "mtp-training-state-1";

}  // namespace

nlohmann::json TrainTally::to_json() const {
  nlohmann::json r = nlohmann::json::array();
  for (const MetricsRow& m : rows)
    r.push_back({m.step, m.split, number_or_null(m.loss), number_or_null(m.accuracy),
                 number_or_null(m.bpb), number_or_null(m.lr), number_or_null(m.grad_norm),
                 number_or_null(m.tokens_per_s), number_or_null(m.elapsed_s)});
  nlohmann::json j = {{"rows", r}};
#define X(type, name) j[#name] = name;
  MTP_TALLY_SUMS(X)
#undef X
  return j;
}

TrainTally TrainTally::from_json(const nlohmann::json& j) {
  TrainTally t;
  for (const nlohmann::json& m : j.at("rows"))
    t.rows.push_back({m.at(0).get<long long>(), m.at(1).get<std::string>(), number_or_nan(m.at(2)),
                      number_or_nan(m.at(3)), number_or_nan(m.at(4)), number_or_nan(m.at(5)),
                      number_or_nan(m.at(6)), number_or_nan(m.at(7)), number_or_nan(m.at(8))});
#define X(type, name) t.name = j.at(#name).get<type>();
  MTP_TALLY_SUMS(X)
#undef X
  return t;
}

namespace {

// A resumed run must see the data the run started on: same size, same hash, file by
// file (a corpus edited or replaced in between would silently change the run).
void check_same_data(const std::vector<DataFile>& recorded, const std::vector<DataFile>& now,
                     const std::string& where) {
  MTP_CHECK(recorded.size() == now.size(), "{}: records {} data files, the run reads {}", where,
            recorded.size(), now.size());
  for (size_t i = 0; i < now.size(); ++i)
    if (recorded[i].bytes != now[i].bytes || recorded[i].sha256 != now[i].sha256)
      fail(
          "{} {} changed since the run started ({} bytes, sha256 {}... then; {} bytes, sha256 "
          "{}... now): resuming needs the same data",
          now[i].flag, now[i].path, recorded[i].bytes, recorded[i].sha256.substr(0, 12),
          now[i].bytes, now[i].sha256.substr(0, 12));
}

}  // namespace

// The training state: parameters under their names, the AdamW moments under
// optimizer.m.<name> / optimizer.v.<name>, the carried stream state under
// stream.<group>.<i>, and the configuration and tally in the metadata. Written
// atomically (temporary file, fsync, rename): a kill leaves the previous one intact.
void save_training_state(const std::filesystem::path& path, const ParamStore<float>& params,
                         AdamW<float>& opt, const ModelState<float>& state,
                         const nlohmann::json& config, const TrainTally& tally,
                         const std::vector<DataFile>& data) {
  SafeTensors out;
  for (const ParamInfo& p : params.infos()) {
    out.put(p.name, p.shape.dims(), params.values() + p.offset);
    out.put("optimizer.m." + p.name, p.shape.dims(), opt.first_moment().data() + p.offset);
    out.put("optimizer.v." + p.name, p.shape.dims(), opt.second_moment().data() + p.offset);
  }
  for (const auto& [group, tensors] : {std::pair{"mixer", &state.mixer}, {"ffn", &state.ffn}})
    for (size_t i = 0; i < tensors->size(); ++i)
      if ((*tensors)[i].numel() > 0)
        out.put(fmt::format("stream.{}.{}", group, i), (*tensors)[i].shape().dims(),
                (*tensors)[i].data());
  out.metadata["format"] = kTrainingStateFormat;
  out.metadata["config"] = config.dump();
  out.metadata["optimizer_steps"] = std::to_string(opt.steps_taken());
  out.metadata["tally"] = tally.to_json().dump();
  out.metadata["data_files"] = data_files_json(data).dump();
  out.save(path.string());
}

// Restores what save_training_state wrote into a model built from the same
// configuration; anything missing or of another shape is an error naming the file.
TrainTally load_training_state(const std::filesystem::path& path, ParamStore<float>& params,
                               AdamW<float>& opt, ModelState<float>& state,
                               const nlohmann::json& config, const std::vector<DataFile>& data) {
  const std::string where = path.string();
  const SafeTensors file = SafeTensors::load(where);
  auto meta = [&](const char* key) {
    auto it = file.metadata.find(key);
    MTP_CHECK(it != file.metadata.end(), "{}: no '{}' in its metadata", where, key);
    return it->second;
  };
  MTP_CHECK(meta("format") == kTrainingStateFormat, "{}: not an mtp training state", where);
  // The settings must be the run's; the thread count and the folder may differ.
  const nlohmann::json stored = run_settings(nlohmann::json::parse(meta("config"), nullptr, false));
  const nlohmann::json wanted = run_settings(config);
  if (stored != wanted) {
    std::vector<std::string> differ;
    for (const auto& [key, value] : wanted.items())
      if (!stored.is_object() || !stored.contains(key) || stored[key] != value)
        differ.push_back(key);
    fail(
        "{}: written by a run with other settings than {} ({}); restore them, or start over "
        "with --overwrite",
        where, (path.parent_path() / kConfigFile).string(),
        differ.empty() ? "unreadable" : fmt::format("{}", fmt::join(differ, ", ")));
  }
  // Written before data files were recorded: nothing to compare.
  if (file.metadata.count("data_files"))
    check_same_data(checkpoint_data_files(file, where), data, where);
  auto restore = [&](const std::string& name, const Shape& shape, float* to) {
    MTP_CHECK(file.has(name), "{}: missing tensor '{}'", where, name);
    const StoredTensor& t = file.at(name);
    MTP_CHECK(t.shape == shape.dims(), "{}: tensor '{}' has shape {}, expected {}", where, name,
              shape_str(t.shape), shape.str());
    MTP_CHECK(t.dtype == DType::F32, "{}: tensor '{}' is {}, expected F32", where, name,
              dtype_name(t.dtype));
    const std::vector<float> v = t.to<float>(where + ": " + name);
    std::copy(v.begin(), v.end(), to);
  };
  for (const ParamInfo& p : params.infos()) {
    restore(p.name, p.shape, params.values() + p.offset);
    restore("optimizer.m." + p.name, p.shape, opt.first_moment().data() + p.offset);
    restore("optimizer.v." + p.name, p.shape, opt.second_moment().data() + p.offset);
  }
  params.mark_all_set();
  for (const auto& [group, tensors] : {std::pair{"mixer", &state.mixer}, {"ffn", &state.ffn}})
    for (size_t i = 0; i < tensors->size(); ++i)
      if ((*tensors)[i].numel() > 0)
        restore(fmt::format("stream.{}.{}", group, i), (*tensors)[i].shape(), (*tensors)[i].data());
  TrainTally tally;
  const auto optimizer_steps =
      json_to<long long>(parse_json(meta("optimizer_steps"), where + ": optimizer_steps"),
                         where + ": optimizer_steps");
  try {
    tally = TrainTally::from_json(parse_json(meta("tally"), where + ": tally"));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed training progress in its metadata ({})", where, json_error_text(e));
  }
  const auto steps = json_field<long long>(config, "steps", where + ": config");
  MTP_CHECK(tally.step >= 1 && tally.step <= steps && optimizer_steps == tally.step,
            "{}: inconsistent progress (step {}, {} optimizer steps, of {})", where, tally.step,
            optimizer_steps, steps);
  opt.set_steps_taken(optimizer_steps);
  return tally;
}

std::string metrics_csv(const std::vector<MetricsRow>& rows) {
  std::string s = "step,split,loss,accuracy,bpb,lr,grad_norm,tokens_per_s,elapsed_s\n";
  auto num = [](double v) { return std::isnan(v) ? std::string() : fmt::format("{:.6g}", v); };
  for (const MetricsRow& r : rows)
    s +=
        fmt::format("{},{},{},{},{},{},{},{},{}\n", r.step, r.split, num(r.loss), num(r.accuracy),
                    num(r.bpb), num(r.lr), num(r.grad_norm), num(r.tokens_per_s), num(r.elapsed_s));
  return s;
}

}  // namespace mtp::exp
