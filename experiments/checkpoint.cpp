#include "mtp/experiments/checkpoint.hpp"

#include <algorithm>
#include <set>

namespace mtp::exp {

void save_checkpoint(const std::string& path, const ParamStore<float>& params,
                     const nlohmann::json& config, long long step) {
  SafeTensors out;
  for (const ParamInfo& p : params.infos())
    out.put(p.name, p.shape.dims(), params.values() + p.offset);
  out.metadata["format"] = kCheckpointFormat;
  out.metadata["config"] = config.dump();
  out.metadata["step"] = std::to_string(step);
  out.save(path);
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
    fail("{}: checkpoint configuration is not valid JSON ({})", path, e.what());
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
}

}  // namespace mtp::exp
