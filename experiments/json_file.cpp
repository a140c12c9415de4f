#include "mtp/experiments/json_file.hpp"

#include "mtp/core/file_io.hpp"

namespace mtp::exp {

nlohmann::json parse_json(std::string_view text, const std::string& where) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({})", where, json_error_text(e));
  }
}

nlohmann::json read_json_file(const std::string& path) {
  // Run files are small; a larger one is not one mtp wrote.
  const std::vector<std::uint8_t> bytes =
      read_file_bytes(path, "", std::uint64_t(256) << 20, /*pipes=*/false);
  return parse_json(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                    path);
}

std::string json_excerpt(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

const nlohmann::json& json_member(const nlohmann::json& j, std::string_view key,
                                  const std::string& where) {
  if (!j.is_object()) fail("{}: expected an object, found {}", where, json_excerpt(j));
  const auto it = j.find(key);
  if (it == j.end()) fail("{}: no '{}'", where, key);
  return *it;
}

}  // namespace mtp::exp
