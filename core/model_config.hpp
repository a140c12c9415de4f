// The shape of a model (docs/contract.md §7): vocabulary, width, blocks, and the
// choices a cell's model family makes (names, ln0, init recipe). Its own header so that
// a cell can state its model-level hooks without the whole model.
#pragma once

#include <string>

#include "mtp/core/cell.hpp"

namespace mtp {

enum class ModelInit {
  standard,  // emb N(0,1), head U(±1/√W): PyTorch's defaults
  rwkv4,     // emb ≈ 1e-4 (orthogonal), head orthogonal with gain 0.5·√(V/W): RWKV-4
};

struct ModelConfig {
  MTP_DESIGNATED_ONLY;
  index_t vocab = 0;                 // V
  index_t width = 0;                 // W
  int layers = 1;                    // L
  bool ffn = true;                   // an FFN after each mixer
  std::string mixer_name = "mixer";  // "att" gives RWKV-4's names
  bool ln0 = false;                  // LayerNorm on the embeddings (RWKV-4)
  ModelInit init = ModelInit::standard;
};

}  // namespace mtp
