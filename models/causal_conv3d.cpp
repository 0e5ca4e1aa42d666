// CogVideoX's causal Conv3d with its chunk-to-chunk temporal cache (see causal_conv3d.h).
#include "models/causal_conv3d.h"

#include "common/error.h"

namespace t4g {

torch::Tensor& ConvCache::next() {
  if (!seen_chunk_) {
    slots_.emplace_back();
    cursor_ = slots_.size();
    return slots_.back();
  }
  T4G_CHECK(cursor_ < slots_.size(), "conv cache: a chunk used more causal convolutions (", cursor_ + 1,
            ") than the first chunk (", slots_.size(), ")");
  return slots_[cursor_++];
}

void ConvCache::rewind() {
  T4G_CHECK(cursor_ == slots_.size(), "conv cache: a chunk used ", cursor_, " of ", slots_.size(),
            " cached convolutions");
  seen_chunk_ = true;
  cursor_ = 0;
}

torch::Tensor safe_conv3d(torch::nn::Conv3dImpl& conv, const torch::Tensor& input, int64_t max_elements) {
  // diffusers: memory_count = numel * 2 / 1024^3; split when > 2, into int(memory_count / 2) + 1
  // parts, i.e. when numel > 2^30, into numel / 2^30 + 1 parts (exact in integers).
  const int64_t numel = input.numel();
  if (numel <= max_elements) return conv.forward(input);
  const int64_t parts = numel / max_elements + 1;
  const int64_t kt = conv.options.kernel_size()->at(0);
  std::vector<torch::Tensor> chunks = torch::chunk(input, parts, 2);
  std::vector<torch::Tensor> outputs;
  outputs.reserve(chunks.size());
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (i == 0 || kt == 1) {
      outputs.push_back(conv.forward(chunks[i]));
    } else {
      const torch::Tensor& prev = chunks[i - 1];
      const int64_t t = prev.size(2);
      outputs.push_back(conv.forward(torch::cat({prev.slice(2, std::max<int64_t>(0, t - (kt - 1)), t), chunks[i]}, 2)));
    }
  }
  return torch::cat(outputs, 2);
}

CausalConv3dImpl::CausalConv3dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
    : kernel_size_(kernel_size) {
  T4G_CHECK(kernel_size >= 1 && kernel_size % 2 == 1, "CausalConv3d: kernel size must be odd, got ", kernel_size);
  const int64_t pad = (kernel_size - 1) / 2;
  conv = register_module("conv", torch::nn::Conv3d(torch::nn::Conv3dOptions(in_channels, out_channels, kernel_size)
                                                       .stride(1)
                                                       .padding({0, pad, pad})
                                                       .bias(true)));
}

torch::Tensor CausalConv3dImpl::forward(const torch::Tensor& x, ConvCache* cache) {
  const int64_t time_pad = kernel_size_ - 1;
  if (time_pad == 0) return safe_conv3d(*conv, x);
  torch::Tensor* slot = cache ? &cache->next() : nullptr;
  if (x.size(2) == 1 && !(slot && slot->defined())) {
    // One frame with nothing cached: every temporal tap sees a copy of that frame, so the Conv3d
    // equals a Conv2d with the taps summed (in float32). A third of the arithmetic and no padded
    // copy; this is the per-frame encoding that zero-shot tracking runs on every frame.
    const auto& weight = conv->weight;
    const auto summed = weight.to(torch::kFloat32).sum(2).to(weight.scalar_type());
    const int64_t pad = (kernel_size_ - 1) / 2;
    if (slot) *slot = x.expand({-1, -1, time_pad, -1, -1}).clone();
    return at::conv2d(x.squeeze(2), summed, conv->bias, 1, {pad, pad}).unsqueeze(2);
  }
  std::vector<torch::Tensor> parts;
  if (slot && slot->defined()) {
    parts = {*slot, x};
  } else {
    parts.assign(static_cast<size_t>(time_pad), x.slice(2, 0, 1));
    parts.push_back(x);
  }
  torch::Tensor padded = torch::cat(parts, 2);
  if (slot) {
    const int64_t t = padded.size(2);
    // A copy, so the cache does not keep the whole padded chunk alive.
    *slot = padded.slice(2, t - time_pad, t).clone();
  }
  return safe_conv3d(*conv, padded);
}

}  // namespace t4g
