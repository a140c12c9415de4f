// Model checkpoints: every parameter under its name (docs/contract.md §11.2), float32, with the run
// configuration and progress in __metadata__.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mtp/core/param_store.hpp"
#include "mtp/core/safetensors.hpp"

namespace mtp::exp {

inline constexpr const char* kCheckpointFormat = "mtp-checkpoint-1";

// The bytes of a model file: every parameter, with the run configuration and step in
// its metadata.
std::vector<std::uint8_t> checkpoint_bytes(const ParamStore<float>& params,
                                           const nlohmann::json& config, long long step);

// Reads the run configuration stored in a checkpoint written from checkpoint_bytes.
nlohmann::json checkpoint_config(const SafeTensors& file, const std::string& path);

// Copies every parameter of `params` from the file; each must be present with the
// same shape, and the file may hold nothing else.
void load_parameters(const SafeTensors& file, const std::string& path, ParamStore<float>& params);

// What load_state_dict did.
struct StateDictReport {
  std::vector<std::string> loaded;    // model tensors filled from the file
  std::vector<std::string> expanded;  // perspective decays filled from another K or time_decay
  std::vector<std::string> missing;   // model tensors the file does not have (left as they were)
  std::vector<std::string> fresh;     // perspective tensors of another shape (left as they were)
  std::vector<std::string> unused;    // file tensors the model has no place for
};

// Loads a state dict saved as safetensors (PyTorch, RWKV-4, another mtp run) by name.
// A tensor fits when its shape matches once leading 1s are dropped (RWKV-4's (1,1,C)
// time mixes fill (C)); any other shape is an error naming the file and tensor.
// A perspective decay `<p>decay` (K,D) is filled, in this order of preference, from a
// stored `<p>decay` of the same shape; else from a stored `<p>decay` with K' rows or
// from RWKV-4's `<p>time_decay` (D): row k = base + spread·(k − (K−1)/2), base the
// loaded rows' mean. Other perspective tensors (the selector) whose shape depends on K
// and differs start fresh when `fresh_perspectives` is set (a K = 1 base grown to K = 3);
// any other shape that does not fit is an error naming the file and tensor.
StateDictReport load_state_dict(const SafeTensors& file, const std::string& path,
                                ParamStore<float>& params, double decay_spread,
                                bool fresh_perspectives = false);

}  // namespace mtp::exp
