// Model checkpoints: every parameter under its name (DESIGN §3), float32, with the run
// configuration and progress in __metadata__.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "mtp/core/param_store.hpp"
#include "mtp/core/safetensors.hpp"

namespace mtp::exp {

inline constexpr const char* kCheckpointFormat = "mtp-checkpoint-1";

void save_checkpoint(const std::string& path, const ParamStore<float>& params,
                     const nlohmann::json& config, long long step);

// Reads the run configuration stored in a checkpoint written by save_checkpoint.
nlohmann::json checkpoint_config(const SafeTensors& file, const std::string& path);

// Copies every parameter of `params` from the file; each must be present with the
// same shape, and the file may hold nothing else.
void load_parameters(const SafeTensors& file, const std::string& path, ParamStore<float>& params);

}  // namespace mtp::exp
