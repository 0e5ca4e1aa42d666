// kept_attention: the private ATen entry points of SDPA's fused kernels, forward with log-sum-exp
// and the matching backward, behind one autograd Function.
#include "models/kept_attention.h"

#include <optional>

#include "common/error.h"

namespace t4g {
namespace {

using Kernel = KeptAttention::Kernel;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// SDPA's backend numbering (sdp::SDPBackend in ATen/native/transformers/sdp_utils_cpp.h).
constexpr int64_t kSdpFlash = 1, kSdpEfficient = 2, kSdpCudnn = 3;

std::optional<torch::Tensor> maybe(const torch::Tensor& t) {
  return t.defined() ? std::optional<torch::Tensor>(t) : std::nullopt;
}

// The kept output enters as an input (returned as a view of itself: no copy) together with the
// kernel state; only q, k and v receive gradients.
struct KeptAttentionFunction : public torch::autograd::Function<KeptAttentionFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& out, const torch::Tensor& lse,
                               const std::optional<torch::Tensor>& philox_seed,
                               const std::optional<torch::Tensor>& philox_offset,
                               const std::optional<torch::Tensor>& cum_seq_q,
                               const std::optional<torch::Tensor>& cum_seq_k, int64_t kernel, int64_t max_q,
                               int64_t max_k) {
    ctx->save_for_backward({q, k, v, out, lse, philox_seed.value_or(torch::Tensor()),
                            philox_offset.value_or(torch::Tensor()), cum_seq_q.value_or(torch::Tensor()),
                            cum_seq_k.value_or(torch::Tensor())});
    ctx->saved_data["kernel"] = kernel;
    ctx->saved_data["max_q"] = max_q;
    ctx->saved_data["max_k"] = max_k;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto& [q, k, v, out, lse] = std::tie(s[0], s[1], s[2], s[3], s[4]);
    const auto& [seed, offset, cum_q, cum_k] = std::tie(s[5], s[6], s[7], s[8]);
    const auto kernel = static_cast<Kernel>(ctx->saved_data["kernel"].toInt());
    const int64_t max_q = ctx->saved_data["max_q"].toInt();
    const int64_t max_k = ctx->saved_data["max_k"].toInt();
    const auto& grad = grads[0];
    torch::Tensor dq, dk, dv;
    switch (kernel) {
      case Kernel::kCudnn:
        std::tie(dq, dk, dv) = at::_scaled_dot_product_cudnn_attention_backward(
            grad, q, k, v, out, lse, seed, offset, /*attn_bias=*/torch::Tensor(), cum_q, cum_k, max_q, max_k,
            /*dropout_p=*/0.0, /*is_causal=*/false);
        break;
      case Kernel::kFlash:
        std::tie(dq, dk, dv) = at::_scaled_dot_product_flash_attention_backward(
            grad, q, k, v, out, lse, cum_q, cum_k, max_q, max_k, /*dropout_p=*/0.0, /*is_causal=*/false, seed, offset);
        break;
      case Kernel::kEfficient:
        std::tie(dq, dk, dv, std::ignore) = at::_scaled_dot_product_efficient_attention_backward(
            grad, q, k, v, /*attn_bias=*/torch::Tensor(), out, lse, seed, offset, /*dropout_p=*/0.0,
            {true, true, true, false});
        break;
      case Kernel::kCpuFlash:
        std::tie(dq, dk, dv) = at::_scaled_dot_product_flash_attention_for_cpu_backward(grad, q, k, v, out, lse,
                                                                                        /*dropout_p=*/0.0,
                                                                                        /*is_causal=*/false);
        break;
      case Kernel::kNone:
        T4G_CHECK(false, "kept attention: backward without a kept kernel");
    }
    return {dq, dk, dv, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  }
};

// The cuDNN and flash forwards return the same nine: out, lse, cum_seq_q, cum_seq_k, max_q, max_k,
// philox_seed, philox_offset, debug mask.
template <typename Nine>
KeptAttention from_nine(Kernel kernel, const Nine& r) {
  KeptAttention kept;
  kept.kernel = kernel;
  kept.out = std::get<0>(r);
  kept.lse = std::get<1>(r);
  kept.cum_seq_q = std::get<2>(r);
  kept.cum_seq_k = std::get<3>(r);
  kept.max_q = std::get<4>(r).expect_int();
  kept.max_k = std::get<5>(r).expect_int();
  kept.philox_seed = std::get<6>(r);
  kept.philox_offset = std::get<7>(r);
  return kept;
}

}  // namespace

std::vector<torch::Tensor> KeptAttention::tensors() const {
  return {out, lse, philox_seed, philox_offset, cum_seq_q, cum_seq_k};
}

KeptAttention KeptAttention::from(Kernel kernel, const std::vector<torch::Tensor>& t, int64_t max_q, int64_t max_k) {
  T4G_CHECK(t.size() == 6, "kept attention: expected 6 tensors, got ", t.size());
  return {kernel, t[0], t[1], t[2], t[3], t[4], t[5], max_q, max_k};
}

KeptAttention attention_to_keep(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const torch::NoGradGuard no_grad;
  KeptAttention kept;
  if (!q.is_cuda()) {
    auto [out, lse] = at::_scaled_dot_product_flash_attention_for_cpu(q, k, v);
    kept.kernel = Kernel::kCpuFlash;
    kept.out = out;
    kept.lse = lse;
    return kept;
  }
  switch (at::_fused_sdp_choice(q, k, v)) {
    case kSdpCudnn:
      return from_nine(Kernel::kCudnn, at::_scaled_dot_product_cudnn_attention(q, k, v, /*attn_bias=*/std::nullopt,
                                                                               /*compute_log_sumexp=*/true));
    case kSdpFlash:
      return from_nine(Kernel::kFlash, at::_scaled_dot_product_flash_attention(q, k, v));
    case kSdpEfficient: {
      auto r = at::_scaled_dot_product_efficient_attention(q, k, v, /*attn_bias=*/std::nullopt,
                                                           /*compute_log_sumexp=*/true);
      kept.kernel = Kernel::kEfficient;
      kept.out = std::get<0>(r);
      kept.lse = std::get<1>(r);
      kept.philox_seed = std::get<2>(r);
      kept.philox_offset = std::get<3>(r);
      return kept;
    }
    default:
      return kept;  // SDPA's math path: nothing fused to keep
  }
}

torch::Tensor kept_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const KeptAttention& kept) {
  T4G_CHECK(kept.defined(), "kept attention: nothing was kept");
  T4G_CHECK(kept.out.sizes() == q.sizes() && k.sizes() == v.sizes(), "kept attention: output ", kept.out.sizes(),
            " does not fit q ", q.sizes(), " / k ", k.sizes(), " / v ", v.sizes());
  return KeptAttentionFunction::apply(q, k, v, kept.out, kept.lse, maybe(kept.philox_seed), maybe(kept.philox_offset),
                                      maybe(kept.cum_seq_q), maybe(kept.cum_seq_k), static_cast<int64_t>(kept.kernel),
                                      kept.max_q, kept.max_k);
}

}  // namespace t4g
