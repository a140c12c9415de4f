// Command-line parsing shared by mtp-exp's commands: the train flags (also used by
// sweeps, which validate every run's flags before starting any), comma lists, and the
// help/usage conventions.
#pragma once

#include <boost/program_options.hpp>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "mtp/core/error.hpp"
#include "mtp/experiments/config.hpp"

namespace mtp::exp::cli {

namespace po = boost::program_options;

// A comma-separated list of numbers for `flag` (w1,...,wK; 2,8,32,128).
template <class T>
std::vector<T> parse_list(const char* flag, const std::string& s) {
  std::vector<T> out;
  std::stringstream ss(s);
  std::string item;
  if (!s.empty() && s.back() == ',')
    usage_fail("--{} '{}' ends with a comma (expected a,b,...)", flag, s);
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    T v{};
    try {
      if constexpr (std::is_integral_v<T>)
        v = T(std::stoll(item, &used));
      else
        v = T(std::stod(item, &used));
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size())
      usage_fail("--{}: '{}' is not {} (expected a,b,...)", flag, item,
                 std::is_integral_v<T> ? "an integer" : "a number");
    out.push_back(v);
  }
  if (out.empty()) usage_fail("--{} is empty (expected a,b,...)", flag);
  return out;
}

// Parses argv into `vm`, rejecting positional arguments. Returns false after --help
// (printed with `help_header`).
bool parse(int argc, const char* const* argv, const po::options_description& desc,
           po::variables_map& vm, const char* help_header);

// An empty string is a value like any other, and no flag takes it: `--resume ""` must not
// mean "no --resume". Throws UsageError naming the first flag given as "".
void reject_empty_values(const po::variables_map& vm);

// The flags every layer-level command shares: cell, K, aggregator and its options.
void add_layer_flags(po::options_description& d, std::string& cell, int& k, std::string& agg,
                     std::string& weights, std::string& noise_mode, int& top_k);

// The train command's flags, bound to a TrainConfig. One instance parses once.
class TrainFlags {
 public:
  TrainFlags();
  const po::options_description& description() const { return d_; }
  // Parses argv (argv[0] is the program name). Returns false after --help.
  bool parse(int argc, const char* const* argv, const char* help_header);
  // The parsed configuration, with the task's defaults for the sizes not given.
  const TrainConfig& config() const { return c_; }
  // The run folder given with --resume, or empty.
  const std::string& resume() const { return resume_; }
  // Whether --overwrite asks to replace a run already in the --out folder.
  bool overwrite() const { return overwrite_; }
  // Whether `name` is a train flag, and whether it is an on/off switch.
  bool has(const std::string& name) const;
  bool is_switch(const std::string& name) const;

 private:
  void finish(const po::variables_map& vm);
  TrainConfig c_;
  std::string weights_, lags_, resume_;
  long long seed_ = 0;
  bool no_ffn_ = false, overwrite_ = false;
  std::map<std::string, std::string> task_flags_;  // every registered task's own flags
  po::options_description d_{"train flags (default command)"};
};

// Parses train flags given without a program name (a sweep run's), strictly.
TrainConfig parse_train_args(const std::vector<std::string>& args);

}  // namespace mtp::exp::cli
