#include "mtp/experiments/checkpoint.hpp"

#include <algorithm>
#include <set>

namespace mtp::exp {

std::vector<std::uint8_t> checkpoint_bytes(const ParamStore<float>& params,
                                           const nlohmann::json& config, long long step) {
  SafeTensors out;
  for (const ParamInfo& p : params.infos())
    out.put(p.name, p.shape.dims(), params.values() + p.offset);
  out.metadata["format"] = kCheckpointFormat;
  out.metadata["config"] = config.dump();
  out.metadata["step"] = std::to_string(step);
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

// Fills decay (K,D) from `rows` stored rows of width D: their mean, spread over K.
void expand_decay(const std::vector<float>& stored, index_t rows, View<float> decay,
                  double spread) {
  const index_t K = decay.dim(0), D = decay.dim(1);
  for (index_t c = 0; c < D; ++c) {
    double base = 0;
    for (index_t r = 0; r < rows; ++r) base += stored[r * D + c];
    base /= double(rows);
    for (index_t k = 0; k < K; ++k)
      decay[k * D + c] = float(base + spread * (double(k) - double(K - 1) / 2.0));
  }
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
    const bool is_decay =
        ends_with(p.name, "decay") && p.shape.rank() == 2 && p.role == ParamRole::perspective;
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
        expand_decay(t.to<float>(what), t.shape[0], dst, decay_spread);  // another K
        params.mark_set(params.find(p.name));
        report.expanded.push_back(p.name);
      } else if (fresh_perspectives && p.role == ParamRole::perspective) {
        report.fresh.push_back(p.name);
      } else {
        fail("{}: tensor '{}' has shape {}, the model needs {}", path, p.name, shape_str(t.shape),
             p.shape.str());
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
      expand_decay(t.to<float>(path + ": tensor '" + time_decay + "'"), 1, dst, decay_spread);
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

}  // namespace mtp::exp
