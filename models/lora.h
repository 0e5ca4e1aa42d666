// LoRA adapters in PEFT's naming (issue 6 item 4): `lora_A` (in -> r) and `lora_B` (r -> out) are
// registered as children of each targeted torch::nn::Linear, so parameter names are exactly the
// keys PEFT and diffusers save (`transformer_blocks.0.attn1.to_q.lora_A.weight`). The model's
// Linear calls go through linear_forward, which adds scale * B(A(dropout(x))) where adapters
// exist. Saving and loading in PEFT's folder layout and diffusers' pytorch_lora_weights file, and
// merging into the base weights for export.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace t4g {

// Adapter shape and placement. Defaults are the (diffusers' CogVideoX LoRA script targets).
struct LoraConfig {
  int64_t rank = 64;     // r
  double alpha = 64.0;   // lora_alpha; the adapter's output is scaled by alpha / rank
  double dropout = 0.0;  // dropout on the adapter's input, in training mode only
  std::vector<std::string> target_modules = {"to_q", "to_k", "to_v", "to_out.0"};  // PEFT name matching

  double scale() const { return alpha / static_cast<double>(rank); }
  // Throws t4g::Error naming the field when a value is out of range.
  void validate() const;
};

// PEFT's matching rule for a list of target names: module `name` is targeted when it equals a
// target or ends with "." + target.
bool lora_targets(const std::string& name, const std::vector<std::string>& targets);

// The A factor of an adapter, registered as "lora_A": a bias-free Linear (weight [r, in]) that also
// carries the adapter's scale and input dropout, which linear_forward reads.
class LoraDownImpl : public torch::nn::Module {
 public:
  LoraDownImpl(int64_t in_features, int64_t rank, double scale, double dropout);
  // dropout(x) A^T.
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight;  // [r, in]
  double scale;          // alpha / r
  double dropout;        // input dropout probability
};
TORCH_MODULE(LoraDown);

// linear(x), plus scale * B(A(dropout(x))) when `linear` carries adapters. The adapter runs in its
// own dtype (x is cast to it) and its output is cast to the base output's dtype, so fp32 adapters
// work on a bf16 backbone. Every Linear of CogVideoXTransformer3DModel goes through this.
torch::Tensor linear_forward(const torch::nn::Linear& linear, const torch::Tensor& x);

// Whether a LoRA adapter is attached to `linear` (then fused kernels that bypass linear_forward,
// such as a GEMM with a GELU epilogue, must not be used).
bool has_lora_adapter(const torch::nn::Linear& linear);

// Adds adapters (A kaiming-uniform with a = sqrt(5) as PEFT, i.e. U(-1/sqrt(in), 1/sqrt(in)) from
// a generator seeded with `seed`, drawn in module order; B zero) to every Linear of `module` whose
// dotted name `lora_targets` matches, on the Linear's device and dtype. Returns the adapted module
// names in module order. Errors: nothing matched, a matched module that is not a Linear (PEFT could
// adapt a Conv2d; we do not), a Linear that already has adapters.
std::vector<std::string> add_lora(torch::nn::Module& module, const LoraConfig& config, uint64_t seed);

// Names of the modules that carry adapters, in module order.
std::vector<std::string> lora_module_names(torch::nn::Module& module);

// Folds every adapter into its Linear (W += scale * B A, computed in float32 and cast back) and
// removes the adapters, so the module holds only base weights (diffusers layout, for export).
// Returns the number of merged Linear layers.
int64_t merge_lora(torch::nn::Module& module);

// File names of the two layouts.
constexpr const char* kPeftAdapterWeights = "adapter_model.safetensors";
constexpr const char* kPeftAdapterConfig = "adapter_config.json";
constexpr const char* kDiffusersLoraWeights = "pytorch_lora_weights.safetensors";

// PEFT layout: `folder`/adapter_model.safetensors (keys base_model.model.<name>.lora_{A,B}.weight)
// and `folder`/adapter_config.json (peft_type LORA, r, lora_alpha, lora_dropout, target_modules,
// ...), as PeftModel.save_pretrained writes them; PeftModel.from_pretrained reads it. Each file is
// written atomically.
void save_lora_peft(const std::string& folder, torch::nn::Module& module, const LoraConfig& config);

// diffusers layout: `folder`/pytorch_lora_weights.safetensors with keys
// transformer.<name>.lora_{A,B}.weight and the adapter configuration in the header's
// "lora_adapter_metadata" entry (keys "transformer.r", ...), as CogVideoXPipeline.save_lora_weights
// writes it with transformer_lora_adapter_metadata; CogVideoXPipeline.load_lora_weights reads it.
void save_lora_diffusers(const std::string& folder, torch::nn::Module& module, const LoraConfig& config);

// Adds adapters to `module` and loads them strictly from either layout: a PEFT folder (has
// adapter_config.json), a folder holding pytorch_lora_weights.safetensors, or that file. A diffusers
// file without adapter metadata gets rank from the tensors, alpha = rank (diffusers' default) and
// exactly the modules it names as targets. Missing, unexpected or mis-shaped adapter tensors are one
// t4g::Error naming the file and the tensors. `module` must not carry adapters yet. Returns the
// configuration read.
LoraConfig load_lora(torch::nn::Module& module, const std::string& path);

}  // namespace t4g
