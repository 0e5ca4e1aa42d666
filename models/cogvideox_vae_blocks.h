// The building blocks of CogVideoX's 3D causal VAE, one LibTorch module per diffusers class, with
// the same child names so that state-dict names match diffusers' exactly: the spatially
// conditioned norm of the decoder, the resnet block, time+space down- and upsampling, and the
// down / mid / up blocks (research/cogvideox.md 3.1). Every causal convolution with a temporal
// kernel > 1 takes its slot in the ConvCache passed down, so a video can be run in frame chunks.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "models/causal_conv3d.h"

namespace t4g {

// diffusers CogVideoXSpatialNorm3D: GroupNorm(f) * conv_y(zq) + conv_b(zq), where zq (the latent
// chunk being decoded) is resized to f's (T, H, W) by nearest interpolation; when T_f > 1 is odd
// the first latent frame is resized alone to 1 frame and the rest to T_f - 1 frames.
// Children: norm_layer (GroupNorm, eps 1e-6), conv_y, conv_b (CausalConv3d, k = 1).
class CogVideoXSpatialNorm3DImpl : public torch::nn::Module {
 public:
  CogVideoXSpatialNorm3DImpl(int64_t f_channels, int64_t zq_channels, int64_t groups);
  torch::Tensor forward(const torch::Tensor& f, const torch::Tensor& zq);

  torch::nn::GroupNorm norm_layer{nullptr};
  CausalConv3d conv_y{nullptr};
  CausalConv3d conv_b{nullptr};
};
TORCH_MODULE(CogVideoXSpatialNorm3D);

// diffusers CogVideoXResnetBlock3D without time embedding (the VAE has none):
// norm1 -> SiLU -> conv1 -> norm2 -> SiLU -> conv2, plus the input (through conv_shortcut, a
// plain 1x1x1 Conv3d, when the channel counts differ). norm1/norm2 are GroupNorm in the encoder
// (spatial_norm_channels == 0) and CogVideoXSpatialNorm3D in the decoder.
class CogVideoXResnetBlock3DImpl : public torch::nn::Module {
 public:
  CogVideoXResnetBlock3DImpl(int64_t in_channels, int64_t out_channels, int64_t groups, double eps,
                             int64_t spatial_norm_channels);
  // zq: the latent chunk (decoder only; undefined in the encoder).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& zq, ConvCache* cache);

 private:
  torch::Tensor norm(int which, const torch::Tensor& x, const torch::Tensor& zq);

  torch::nn::GroupNorm group_norm1_{nullptr}, group_norm2_{nullptr};
  CogVideoXSpatialNorm3D spatial_norm1_{nullptr}, spatial_norm2_{nullptr};
  CausalConv3d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::Conv3d conv_shortcut_{nullptr};
};
TORCH_MODULE(CogVideoXResnetBlock3D);

// diffusers CogVideoXDownsample3D: with compress_time, average pairs of frames (an odd count keeps
// frame 0 alone: T -> 1 + (T - 1) / 2; an even count: T -> T / 2); then zero-pad right and bottom
// by one and apply `conv` (Conv2d 3x3, stride 2, no padding) to every frame: H, W -> H / 2, W / 2.
class CogVideoXDownsample3DImpl : public torch::nn::Module {
 public:
  CogVideoXDownsample3DImpl(int64_t channels, bool compress_time);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv{nullptr};

 private:
  bool compress_time_;
};
TORCH_MODULE(CogVideoXDownsample3D);

// diffusers CogVideoXUpsample3D: nearest x2 in H and W, and with compress_time also in time
// (T > 1 odd: frame 0 is not repeated, T -> 2T - 1; T > 1 even: T -> 2T; T == 1 stays 1); then
// `conv` (Conv2d 3x3, padding 1) on every frame.
class CogVideoXUpsample3DImpl : public torch::nn::Module {
 public:
  CogVideoXUpsample3DImpl(int64_t channels, bool compress_time);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv{nullptr};

 private:
  bool compress_time_;
};
TORCH_MODULE(CogVideoXUpsample3D);

// Options shared by the down, mid and up blocks.
struct VaeBlockOptions {
  int64_t in_channels = 0;            // channels into the first resnet
  int64_t out_channels = 0;           // channels out of every resnet
  int64_t num_layers = 1;             // resnets in the block
  int64_t groups = 32;                // GroupNorm groups
  double eps = 1e-6;                  // GroupNorm eps of the resnets
  int64_t spatial_norm_channels = 0;  // latent channels for the decoder's spatial norm; 0: GroupNorm
  bool resample = false;              // add a down- or upsampler after the resnets
  bool compress_time = false;         // the resampler also halves / doubles time
};

// diffusers CogVideoXDownBlock3D (children `resnets`, `downsamplers`), CogVideoXMidBlock3D
// (`resnets` only) and CogVideoXUpBlock3D (`resnets`, `upsamplers`): resnets in sequence, then the
// optional resampler.
class CogVideoXDownBlock3DImpl : public torch::nn::Module {
 public:
  explicit CogVideoXDownBlock3DImpl(const VaeBlockOptions& options);
  torch::Tensor forward(const torch::Tensor& x, ConvCache* cache);

 private:
  std::vector<CogVideoXResnetBlock3D> resnets_;
  CogVideoXDownsample3D downsampler_{nullptr};
};
TORCH_MODULE(CogVideoXDownBlock3D);

class CogVideoXMidBlock3DImpl : public torch::nn::Module {
 public:
  explicit CogVideoXMidBlock3DImpl(const VaeBlockOptions& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& zq, ConvCache* cache);

 private:
  std::vector<CogVideoXResnetBlock3D> resnets_;
};
TORCH_MODULE(CogVideoXMidBlock3D);

class CogVideoXUpBlock3DImpl : public torch::nn::Module {
 public:
  explicit CogVideoXUpBlock3DImpl(const VaeBlockOptions& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& zq, ConvCache* cache);

 private:
  std::vector<CogVideoXResnetBlock3D> resnets_;
  CogVideoXUpsample3D upsampler_{nullptr};
};
TORCH_MODULE(CogVideoXUpBlock3D);

}  // namespace t4g
