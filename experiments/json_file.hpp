// JSON files of runs and sweeps (config.json, result.json, sweep.json, metadata), read
// strictly: a missing field, a value of another type or out of range, or text that is
// not JSON is an mtp::Error naming the file, the field and the problem, never a library
// message or a silent conversion (3.5 read as 3, -1 as 2^64 − 1).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mtp/core/error.hpp"

namespace mtp::exp {

// Parses `text`; `where` names it in errors ("runs/x/result.json").
nlohmann::json parse_json(std::string_view text, const std::string& where);
// Reads and parses a file (bounded: see read_file_bytes).
nlohmann::json read_json_file(const std::string& path);

// A short rendering of a JSON value for messages: at most ~40 characters.
std::string json_excerpt(const nlohmann::json& v);

// `v` as T, or an mtp::Error "<where> must be <kind>, found <value>". Integers must be
// integral JSON numbers within T's range; floating-point values any finite number.
template <class T>
T json_to(const nlohmann::json& v, const std::string& where) {
  if constexpr (std::is_same_v<T, bool>) {
    if (v.is_boolean()) return v.get<bool>();
    fail("{} must be true or false, found {}", where, json_excerpt(v));
  } else if constexpr (std::is_integral_v<T>) {
    if (v.is_number_unsigned()) {
      const auto u = v.get<std::uint64_t>();
      if (u <= std::uint64_t(std::numeric_limits<T>::max())) return T(u);
    } else if (v.is_number_integer()) {
      const auto i = v.get<std::int64_t>();
      if constexpr (std::is_signed_v<T>) {
        if (i >= std::int64_t(std::numeric_limits<T>::min()) &&
            i <= std::int64_t(std::numeric_limits<T>::max()))
          return T(i);
      } else if (i >= 0 && std::uint64_t(i) <= std::uint64_t(std::numeric_limits<T>::max())) {
        return T(i);
      }
    }
    if constexpr (sizeof(T) >= 8)
      fail("{} must be {}an integer, found {}", where, std::is_signed_v<T> ? "" : "a non-negative ",
           json_excerpt(v));
    else
      fail("{} must be an integer in [{}, {}], found {}", where, std::numeric_limits<T>::min(),
           std::numeric_limits<T>::max(), json_excerpt(v));
  } else if constexpr (std::is_floating_point_v<T>) {
    if (v.is_number() && std::isfinite(v.get<double>()) &&
        std::abs(v.get<double>()) <= double(std::numeric_limits<T>::max()))
      return T(v.get<double>());
    fail("{} must be a finite number, found {}", where, json_excerpt(v));
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (v.is_string()) return v.get<std::string>();
    fail("{} must be a string, found {}", where, json_excerpt(v));
  } else if constexpr (requires { typename T::mapped_type; }) {
    static_assert(std::is_same_v<T, std::map<std::string, typename T::mapped_type>>,
                  "unsupported type");
    if (!v.is_object()) fail("{} must be an object, found {}", where, json_excerpt(v));
    T out;
    for (const auto& [key, value] : v.items())
      out.emplace(key, json_to<typename T::mapped_type>(value, where + "." + key));
    return out;
  } else {
    static_assert(std::is_same_v<T, std::vector<typename T::value_type>>, "unsupported type");
    if (!v.is_array()) fail("{} must be a list, found {}", where, json_excerpt(v));
    T out;
    for (size_t i = 0; i < v.size(); ++i)
      out.push_back(json_to<typename T::value_type>(v[i], where + "[" + std::to_string(i) + "]"));
    return out;
  }
}

// The member `key` of object `j`: an mtp::Error "<where>: no '<key>'" when `j` is not an
// object or lacks it.
const nlohmann::json& json_member(const nlohmann::json& j, std::string_view key,
                                  const std::string& where);

// json_to of a member: `<where>: '<key>' must be ...`.
template <class T>
T json_field(const nlohmann::json& j, std::string_view key, const std::string& where) {
  return json_to<T>(json_member(j, key, where), where + ": '" + std::string(key) + "'");
}

}  // namespace mtp::exp
