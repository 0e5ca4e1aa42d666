// The causal 3D convolution of CogVideoX's VAE (diffusers CogVideoXCausalConv3d) and the
// per-layer temporal cache that lets a long video be processed in frame chunks: each chunk is
// padded in front with the last k_t - 1 frames of the previous chunk's padded input (or with
// copies of its own first frame when there is none), so chunk outputs join up as one causal pass.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace t4g {

// The temporal caches of one encoder or decoder pass over successive frame chunks, one slot per
// causal convolution with a temporal kernel > 1. Layers take their slot with next() in the same
// order in every chunk (the network's call order), so a flat list replaces diffusers' nested
// dicts. A fresh (empty) cache means "first chunk": layers pad with their first frame.
class ConvCache {
 public:
  // The next layer's slot: undefined on the first chunk, the previous chunk's frames after.
  torch::Tensor& next();
  // Call before each chunk after the first; checks that the previous chunk used every slot.
  void rewind();
  // Number of slots (= causal convolutions with k_t > 1 seen so far).
  size_t size() const { return slots_.size(); }

 private:
  std::vector<torch::Tensor> slots_;
  size_t cursor_ = 0;
  bool seen_chunk_ = false;
};

// Conv3d that splits its input along time when it has more than 2^30 elements (diffusers
// CogVideoXSafeConv3d: torch.chunk into floor(numel / 2^30) + 1 parts, every part after the first
// prefixed with the previous part's last k_t - 1 frames). The result equals one Conv3d call; the
// split bounds the workspace cuDNN needs and keeps the reference's per-call arithmetic.
// `max_elements` is the reference's limit; tests lower it to exercise the split.
constexpr int64_t kSafeConvMaxElements = int64_t{1} << 30;
torch::Tensor safe_conv3d(torch::nn::Conv3dImpl& conv, const torch::Tensor& input,
                          int64_t max_elements = kSafeConvMaxElements);

// diffusers CogVideoXCausalConv3d with stride 1 and dilation 1 (all CogVideoX uses). Its one
// child `conv` is a Conv3d with kernel (k, k, k) and zero padding (0, (k-1)/2, (k-1)/2), so the
// state-dict names are `<prefix>.conv.weight` and `<prefix>.conv.bias`. Time is padded causally
// in front by k - 1 frames (the cache, or copies of the first frame), so T_out = T_in.
class CausalConv3dImpl : public torch::nn::Module {
 public:
  CausalConv3dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel_size);

  // x: [B, C_in, T, H, W] -> [B, C_out, T, H, W]. With a cache (k > 1 only), takes the next slot,
  // pads with it when defined, and stores the last k - 1 frames of the padded input there.
  // Without one, pads with the first frame (a one-chunk pass). A k = 1 conv never touches the
  // cache (diffusers keeps a clone of the whole input for it that is never read). A one-frame
  // input without cached frames runs as the equivalent Conv2d (temporal taps summed).
  torch::Tensor forward(const torch::Tensor& x, ConvCache* cache = nullptr);

  int64_t kernel_size() const { return kernel_size_; }
  torch::nn::Conv3d conv{nullptr};

 private:
  int64_t kernel_size_;
};
TORCH_MODULE(CausalConv3d);

}  // namespace t4g
