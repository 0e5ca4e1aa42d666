// What trains in a fine-tuning run (issue 6 item 4): the whole transformer, a list of its blocks,
// only its LoRA adapters, or nothing (the refiner and its projection, which the trainer always
// trains, are separate modules). One function sets requires_grad and returns the trainable
// parameters in a fixed order that the optimizer, the gradient reducer and checkpoints rely on.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace t4g {

// Which parameters of the transformer train.
enum class TrainMode {
  kFull,    // every parameter (LoRA adapters included when present)
  kBlocks,  // every parameter under transformer_blocks.<i>. for the listed blocks
  kLora,    // only the LoRA adapters (add_lora first)
  kNone,    // nothing: only the refiner trains
};

// "full" / "blocks" / "lora" / "none" <-> TrainMode; parse also takes "refiner" (the recipe's
// train.trainable spelling of kNone) and throws t4g::Error for anything else.
std::string train_mode_name(TrainMode mode);
TrainMode parse_train_mode(const std::string& name);

// The choice of trainable parameters.
struct TrainableOptions {
  TrainMode mode = TrainMode::kLora;  // what trains
  std::vector<int64_t> blocks;        // block indices for kBlocks (each in [0, number of blocks))
};

// A named parameter list in module (state-dict) order.
using NamedParameters = std::vector<std::pair<std::string, torch::Tensor>>;

// Sets requires_grad on every parameter of `transformer` (a CogVideoXTransformer3DModel or any
// module with diffusers' names) as `options` says and returns the trainable ones, in the order of
// named_parameters() (the state-dict order). Errors: kBlocks with no block or a block index the
// model does not have, kLora on a model without adapters.
NamedParameters set_trainable(torch::nn::Module& transformer, const TrainableOptions& options);

}  // namespace t4g
