// head_layer_norm: an autograd Function around the CUDA kernels of models/cuda/, with
// at::layer_norm (and apply_rotary_emb_joint) wherever they do not apply (CPU, no CUDA kernels in
// this build, wide rows, RoPE tables that require grad).
#include "models/head_layer_norm.h"

#include <optional>

#include "common/error.h"

#if T4G_HAVE_CUDA_KERNELS
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "models/cuda/head_layer_norm_kernels.h"
#endif

namespace t4g {

#if T4G_HAVE_CUDA_KERNELS
namespace {

cuda::ElementType element_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32:
      return cuda::ElementType::kFloat32;
    case torch::kBFloat16:
      return cuda::ElementType::kBFloat16;
    default:
      return cuda::ElementType::kFloat16;
  }
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The kernels' RoPE arguments for x = [B, S, heads, D] and float32 contiguous tables (undefined
// tables: no rotation, nullptr).
const cuda::HeadRope* rope_args(cuda::HeadRope& args, const torch::Tensor& x, const torch::Tensor& cos,
                                const torch::Tensor& sin, int64_t text_len) {
  if (!cos.defined()) return nullptr;
  args = {cos.data_ptr<float>(), sin.data_ptr<float>(), text_len, x.size(1), x.size(2)};
  return &args;
}

// cos/sin: the RoPE tables as float32 contiguous on x's device, or nullopt for no rotation
// (optional, since Function::apply reads the device of every Tensor argument).
struct HeadLayerNorm : public torch::autograd::Function<HeadLayerNorm> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, double eps, const std::optional<torch::Tensor>& cos,
                               const std::optional<torch::Tensor>& sin, int64_t text_len) {
    const c10::cuda::CUDAGuard guard(x.device());
    const auto input = x.contiguous();
    const int64_t d = input.size(-1);
    const int64_t rows = input.numel() / d;
    auto y = torch::empty_like(input);
    const auto stats = torch::TensorOptions().device(x.device()).dtype(torch::kFloat32);
    auto mean = torch::empty({rows}, stats);
    auto rstd = torch::empty({rows}, stats);
    cuda::HeadRope rope;
    const char* err = cuda::head_norm_forward(
        element_type(x.scalar_type()), input.data_ptr(), weight.contiguous().data_ptr(), bias.contiguous().data_ptr(),
        y.data_ptr(), mean.data_ptr<float>(), rstd.data_ptr<float>(), rows, static_cast<int>(d),
        static_cast<float>(eps),
        rope_args(rope, input, cos.value_or(torch::Tensor()), sin.value_or(torch::Tensor()), text_len),
        at::cuda::getCurrentCUDAStream().stream());
    T4G_CHECK(err == nullptr, "head LayerNorm forward kernel failed: ", err);
    ctx->save_for_backward({input, weight, mean, rstd, cos.value_or(torch::Tensor()), sin.value_or(torch::Tensor())});
    ctx->saved_data["text_len"] = text_len;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& input = saved[0];
    const auto& weight = saved[1];
    const c10::cuda::CUDAGuard guard(input.device());
    cuda::HeadRope rope;
    const auto* rope_ptr = rope_args(rope, input, saved[4], saved[5], ctx->saved_data["text_len"].toInt());
    const auto dy = grads[0].contiguous();
    const int64_t d = input.size(-1);
    const int64_t rows = input.numel() / d;
    auto dx = torch::empty_like(input);
    const auto partial = torch::TensorOptions().device(input.device()).dtype(torch::kFloat32);
    const int64_t blocks = cuda::head_norm_backward_blocks(rows);
    auto dweight = torch::empty({blocks, d}, partial);
    auto dbias = torch::empty({blocks, d}, partial);
    const char* err = cuda::head_norm_backward(
        element_type(input.scalar_type()), dy.data_ptr(), input.data_ptr(), weight.contiguous().data_ptr(),
        saved[2].data_ptr<float>(), saved[3].data_ptr<float>(), dx.data_ptr(), dweight.data_ptr<float>(),
        dbias.data_ptr<float>(), rows, static_cast<int>(d), rope_ptr, at::cuda::getCurrentCUDAStream().stream());
    T4G_CHECK(err == nullptr, "head LayerNorm backward kernel failed: ", err);
    return {dx,
            dweight.sum(0).to(weight.scalar_type()),
            dbias.sum(0).to(weight.scalar_type()),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace
#endif

bool head_layer_norm_uses_kernel(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
#if T4G_HAVE_CUDA_KERNELS
  const auto t = x.scalar_type();
  return x.is_cuda() && x.numel() > 0 && x.dim() >= 1 && x.size(-1) <= cuda::kHeadNormMaxDim && weight.defined() &&
         bias.defined() && weight.scalar_type() == t && bias.scalar_type() == t && weight.device() == x.device() &&
         bias.device() == x.device() && weight.numel() == x.size(-1) && bias.numel() == x.size(-1) &&
         (t == torch::kFloat32 || t == torch::kBFloat16 || t == torch::kHalf);
#else
  (void)x;
  (void)weight;
  (void)bias;
  return false;
#endif
}

torch::Tensor head_layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                              double eps) {
#if T4G_HAVE_CUDA_KERNELS
  if (head_layer_norm_uses_kernel(x, weight, bias)) {
    return HeadLayerNorm::apply(x, weight, bias, eps, std::nullopt, std::nullopt, 0);
  }
#endif
  return at::layer_norm(x, {x.size(-1)}, weight, bias, eps);
}

bool head_layer_norm_rope_uses_kernel(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                      const RotaryEmbedding& rope, int64_t text_len) {
  // The kernel rotates with the tables as given but passes no gradient to them.
  return head_layer_norm_uses_kernel(x, weight, bias) && x.dim() == 4 && x.size(-1) % 2 == 0 && rope.defined() &&
         !rope.cos.requires_grad() && !rope.sin.requires_grad() && rope.cos.dim() == 2 &&
         rope.cos.sizes() == rope.sin.sizes() && rope.cos.size(0) + text_len == x.size(1) &&
         rope.cos.size(1) == x.size(-1) && text_len >= 0;
}

torch::Tensor head_layer_norm_rope(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                   double eps, const RotaryEmbedding& rope, int64_t text_len) {
#if T4G_HAVE_CUDA_KERNELS
  if (head_layer_norm_rope_uses_kernel(x, weight, bias, rope, text_len)) {
    auto table = [&](const torch::Tensor& t) { return t.to(x.device(), torch::kFloat32).contiguous(); };
    return HeadLayerNorm::apply(x, weight, bias, eps, std::optional<torch::Tensor>(table(rope.cos)),
                                std::optional<torch::Tensor>(table(rope.sin)), text_len);
  }
#endif
  return apply_rotary_emb_joint(head_layer_norm(x, weight, bias, eps), rope, text_len);
}

}  // namespace t4g
