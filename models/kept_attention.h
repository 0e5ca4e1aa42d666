// Attention whose result survives gradient checkpointing. A checkpointed block normally reruns
// its whole forward in backward, attention included, and attention is most of a CogVideoX block
// (60 % of a 2B forward at 49 frames). A fused attention kernel's backward needs only q, k, v, the
// output and its log-sum-exp, so a block can keep those two from its no-grad forward and, in the
// recompute, rebuild q, k, v (cheap projections) and hand the kept output to autograd with the
// kernel's own backward: the recompute skips attention. The price is one activation per block
// ([B, S, heads * head_dim] plus [B, heads, S] float32). This is the "save the attention op"
// policy of selective activation checkpointing (torchtitan's op-level SAC).
#pragma once

#include <torch/torch.h>

namespace t4g {

// One fused attention call's output and the state its backward needs, by the kernel that ran.
struct KeptAttention {
  enum class Kernel : int64_t { kNone, kCudnn, kFlash, kEfficient, kCpuFlash };
  Kernel kernel = Kernel::kNone;  // kNone: no fused kernel applies, nothing kept
  torch::Tensor out;              // [B, heads, S, head_dim], as scaled_dot_product_attention gives it
  torch::Tensor lse;              // log-sum-exp per query row, the kernel's own layout
  torch::Tensor philox_seed, philox_offset, cum_seq_q, cum_seq_k;  // kernel state (may be undefined)
  int64_t max_q = 0, max_k = 0;

  bool defined() const { return kernel != Kernel::kNone; }

  // The six tensors in a fixed order (undefined ones included), for an autograd context's
  // save_for_backward, and the inverse with the three scalars.
  std::vector<torch::Tensor> tensors() const;
  static KeptAttention from(Kernel kernel, const std::vector<torch::Tensor>& tensors, int64_t max_q, int64_t max_k);
};

// scaled_dot_product_attention(q, k, v) (no mask, no dropout, default scale) through the fused
// kernel SDPA itself would pick (cuDNN, flash or memory-efficient on CUDA; the flash kernel on
// the CPU), keeping what its backward needs. Runs without autograd. Where SDPA would take its
// unfused math path, returns an undefined KeptAttention (the caller recomputes as usual).
KeptAttention attention_to_keep(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

// kept.out, differentiable with respect to q, k and v through the kept kernel's backward. q, k, v
// must equal (in value) those attention_to_keep saw: the recompute of the same block.
torch::Tensor kept_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const KeptAttention& kept);

}  // namespace t4g
