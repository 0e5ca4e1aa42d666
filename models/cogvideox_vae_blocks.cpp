// CogVideoX VAE building blocks (see cogvideox_vae_blocks.h). Each forward uses the same ATen
// operations as the diffusers reference (GroupNorm, nearest upsampling, average pooling of frame
// pairs, per-frame Conv2d), so fp32 results agree to rounding and bf16 follows the same roundings.
// Temporaries are updated in place where the reference makes a fresh tensor (SiLU, the residual
// sum, the spatial-norm affine), which gives the same values with less peak memory.
#include "models/cogvideox_vae_blocks.h"

#include "common/error.h"

namespace t4g {
namespace {

torch::nn::GroupNorm make_group_norm(int64_t groups, int64_t channels, double eps) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(eps).affine(true));
}

// Nearest resize of a [B, C, T, H, W] tensor to (t, h, w), as F.interpolate(x, size=...) does.
torch::Tensor nearest_resize(const torch::Tensor& x, int64_t t, int64_t h, int64_t w) {
  const std::vector<int64_t> size{t, h, w};
  return at::upsample_nearest3d(x, c10::IntArrayRef(size), c10::nullopt, c10::nullopt, c10::nullopt);
}

// In-place updates only on tensors autograd does not track (the VAE normally runs without
// gradients; with them, the out-of-place forms keep backward correct).
torch::Tensor silu_maybe_inplace(torch::Tensor x) { return x.requires_grad() ? torch::silu(x) : torch::silu_(x); }

// Conv2d applied to every frame of [B, C, T, H, W]; returns [B, C', T, H', W'] (a permuted view,
// as the reference returns).
torch::Tensor conv_per_frame(torch::nn::Conv2dImpl& conv, const torch::Tensor& frames_btchw, int64_t b, int64_t t) {
  torch::Tensor y = conv.forward(frames_btchw);
  return y.reshape({b, t, y.size(1), y.size(2), y.size(3)}).permute({0, 2, 1, 3, 4});
}

}  // namespace

CogVideoXSpatialNorm3DImpl::CogVideoXSpatialNorm3DImpl(int64_t f_channels, int64_t zq_channels, int64_t groups) {
  norm_layer = register_module("norm_layer", make_group_norm(groups, f_channels, 1e-6));
  conv_y = register_module("conv_y", CausalConv3d(zq_channels, f_channels, 1));
  conv_b = register_module("conv_b", CausalConv3d(zq_channels, f_channels, 1));
}

torch::Tensor CogVideoXSpatialNorm3DImpl::forward(const torch::Tensor& f, const torch::Tensor& zq) {
  const int64_t t = f.size(2), h = f.size(3), w = f.size(4);
  torch::Tensor z;
  if (t > 1 && t % 2 == 1) {
    z = torch::cat({nearest_resize(zq.slice(2, 0, 1), 1, h, w), nearest_resize(zq.slice(2, 1), t - 1, h, w)}, 2);
  } else {
    z = nearest_resize(zq, t, h, w);
  }
  torch::Tensor y = conv_y->forward(z);
  torch::Tensor b = conv_b->forward(z);
  z = torch::Tensor();
  torch::Tensor n = norm_layer->forward(f);
  if (n.requires_grad() || y.requires_grad() || b.requires_grad()) return n * y + b;
  return n.mul_(y).add_(b);
}

CogVideoXResnetBlock3DImpl::CogVideoXResnetBlock3DImpl(int64_t in_channels, int64_t out_channels, int64_t groups,
                                                       double eps, int64_t spatial_norm_channels) {
  if (spatial_norm_channels > 0) {
    spatial_norm1_ = register_module("norm1", CogVideoXSpatialNorm3D(in_channels, spatial_norm_channels, groups));
    spatial_norm2_ = register_module("norm2", CogVideoXSpatialNorm3D(out_channels, spatial_norm_channels, groups));
  } else {
    group_norm1_ = register_module("norm1", make_group_norm(groups, in_channels, eps));
    group_norm2_ = register_module("norm2", make_group_norm(groups, out_channels, eps));
  }
  conv1_ = register_module("conv1", CausalConv3d(in_channels, out_channels, 3));
  conv2_ = register_module("conv2", CausalConv3d(out_channels, out_channels, 3));
  if (in_channels != out_channels) {
    conv_shortcut_ =
        register_module("conv_shortcut",
                        torch::nn::Conv3d(torch::nn::Conv3dOptions(in_channels, out_channels, 1).stride(1).padding(0)));
  }
}

torch::Tensor CogVideoXResnetBlock3DImpl::norm(int which, const torch::Tensor& x, const torch::Tensor& zq) {
  if (spatial_norm1_) {
    T4G_CHECK(zq.defined(), "CogVideoX VAE decoder resnet: the spatial norm needs the latent chunk");
    return (which == 1 ? spatial_norm1_ : spatial_norm2_)->forward(x, zq);
  }
  return (which == 1 ? group_norm1_ : group_norm2_)->forward(x);
}

torch::Tensor CogVideoXResnetBlock3DImpl::forward(const torch::Tensor& x, const torch::Tensor& zq, ConvCache* cache) {
  torch::Tensor h = norm(1, x, zq);
  h = conv1_->forward(silu_maybe_inplace(h), cache);
  h = norm(2, h, zq);
  h = conv2_->forward(silu_maybe_inplace(h), cache);  // dropout is 0 in every CogVideoX VAE
  torch::Tensor shortcut = conv_shortcut_ ? safe_conv3d(*conv_shortcut_, x) : x;
  return h.requires_grad() || shortcut.requires_grad() ? h + shortcut : h.add_(shortcut);
}

CogVideoXDownsample3DImpl::CogVideoXDownsample3DImpl(int64_t channels, bool compress_time)
    : compress_time_(compress_time) {
  conv =
      register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, 3).stride(2).padding(0)));
}

torch::Tensor CogVideoXDownsample3DImpl::forward(const torch::Tensor& input) {
  torch::Tensor x = input;
  if (compress_time_) {
    // Mean of frame pairs. diffusers runs avg_pool1d over a (B*H*W, C, T) copy: the sum of each
    // pair in float (the op-math type), halved, rounded once to the dtype. The same here without
    // the permuted copy (avg_pool3d would do, but has no bf16 kernel on CPU).
    auto pool = [](const torch::Tensor& v) {
      const torch::Tensor pairs = v.unflatten(2, {v.size(2) / 2, 2});
      if (v.scalar_type() == torch::kFloat32 || v.scalar_type() == torch::kFloat64) {
        return (pairs.select(3, 0) + pairs.select(3, 1)).div_(2);
      }
      return (pairs.select(3, 0).to(torch::kFloat32) + pairs.select(3, 1).to(torch::kFloat32))
          .div_(2)
          .to(v.scalar_type());
    };
    const int64_t t = x.size(2);
    if (t % 2 == 1) {
      x = t > 1 ? torch::cat({x.slice(2, 0, 1), pool(x.slice(2, 1))}, 2) : x;
    } else {
      x = pool(x);
    }
  }
  x = torch::constant_pad_nd(x, {0, 1, 0, 1}, 0);
  const int64_t b = x.size(0), c = x.size(1), t = x.size(2);
  x = x.permute({0, 2, 1, 3, 4}).reshape({b * t, c, x.size(3), x.size(4)});
  return conv_per_frame(*conv, x, b, t);
}

CogVideoXUpsample3DImpl::CogVideoXUpsample3DImpl(int64_t channels, bool compress_time) : compress_time_(compress_time) {
  conv =
      register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, 3).stride(1).padding(1)));
}

torch::Tensor CogVideoXUpsample3DImpl::forward(const torch::Tensor& input) {
  const int64_t b = input.size(0), c = input.size(1), t = input.size(2), h = input.size(3), w = input.size(4);
  auto up2d = [&](const torch::Tensor& v) {  // [N, C, H, W] -> [N, C, 2H, 2W]
    return at::upsample_nearest2d(v, {2 * h, 2 * w}, 2.0, 2.0);
  };
  torch::Tensor x;
  if (compress_time_ && t > 1) {
    auto up3d = [&](const torch::Tensor& v) {
      return at::upsample_nearest3d(v, {2 * v.size(2), 2 * h, 2 * w}, 2.0, 2.0, 2.0);
    };
    x = t % 2 == 1 ? torch::cat({up2d(input.select(2, 0)).unsqueeze(2), up3d(input.slice(2, 1))}, 2) : up3d(input);
    const int64_t t2 = x.size(2);
    x = x.permute({0, 2, 1, 3, 4}).reshape({b * t2, c, 2 * h, 2 * w});
    return conv_per_frame(*conv, x, b, t2);
  }
  // Spatial only (also a single frame with compress_time): upsample every frame.
  x = up2d(input.permute({0, 2, 1, 3, 4}).reshape({b * t, c, h, w}));
  return conv_per_frame(*conv, x, b, t);
}

CogVideoXDownBlock3DImpl::CogVideoXDownBlock3DImpl(const VaeBlockOptions& o) {
  auto list = register_module("resnets", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_layers; ++i) {
    resnets_.push_back(CogVideoXResnetBlock3D(i == 0 ? o.in_channels : o.out_channels, o.out_channels, o.groups, o.eps,
                                              o.spatial_norm_channels));
    list->push_back(resnets_.back());
  }
  if (o.resample) {
    downsampler_ = CogVideoXDownsample3D(o.out_channels, o.compress_time);
    register_module("downsamplers", torch::nn::ModuleList(downsampler_));
  }
}

torch::Tensor CogVideoXDownBlock3DImpl::forward(const torch::Tensor& input, ConvCache* cache) {
  torch::Tensor x = input;
  for (auto& resnet : resnets_) x = resnet->forward(x, torch::Tensor(), cache);
  return downsampler_ ? downsampler_->forward(x) : x;
}

CogVideoXMidBlock3DImpl::CogVideoXMidBlock3DImpl(const VaeBlockOptions& o) {
  auto list = register_module("resnets", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_layers; ++i) {
    resnets_.push_back(CogVideoXResnetBlock3D(o.in_channels, o.in_channels, o.groups, o.eps, o.spatial_norm_channels));
    list->push_back(resnets_.back());
  }
}

torch::Tensor CogVideoXMidBlock3DImpl::forward(const torch::Tensor& input, const torch::Tensor& zq, ConvCache* cache) {
  torch::Tensor x = input;
  for (auto& resnet : resnets_) x = resnet->forward(x, zq, cache);
  return x;
}

CogVideoXUpBlock3DImpl::CogVideoXUpBlock3DImpl(const VaeBlockOptions& o) {
  auto list = register_module("resnets", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_layers; ++i) {
    resnets_.push_back(CogVideoXResnetBlock3D(i == 0 ? o.in_channels : o.out_channels, o.out_channels, o.groups, o.eps,
                                              o.spatial_norm_channels));
    list->push_back(resnets_.back());
  }
  if (o.resample) {
    upsampler_ = CogVideoXUpsample3D(o.out_channels, o.compress_time);
    register_module("upsamplers", torch::nn::ModuleList(upsampler_));
  }
}

torch::Tensor CogVideoXUpBlock3DImpl::forward(const torch::Tensor& input, const torch::Tensor& zq, ConvCache* cache) {
  torch::Tensor x = input;
  for (auto& resnet : resnets_) x = resnet->forward(x, zq, cache);
  return upsampler_ ? upsampler_->forward(x) : x;
}

}  // namespace t4g
