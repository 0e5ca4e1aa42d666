// The trainable parameters laid end to end in one fixed order, as one flat float32 space. The
// optimizer, EMA, gradient clipping, the gradient reducer's buckets and ZeRO's shards all index
// this space by [begin, end) offsets, so they agree on who owns which element without talking,
// and a checkpoint saved by name can be reloaded into a layout of any world size.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace t4g {

class FlatParameters {
 public:
  FlatParameters() = default;
  // `params` in the order that defines the layout (every rank must pass the same order). Each
  // must be a floating tensor that requires grad; names must be unique.
  explicit FlatParameters(std::vector<std::pair<std::string, torch::Tensor>> params);

  size_t size() const { return params_.size(); }
  int64_t numel() const { return total_; }
  const std::string& name(size_t i) const { return params_[i].first; }
  const torch::Tensor& param(size_t i) const { return params_[i].second; }
  int64_t offset(size_t i) const { return offsets_[i]; }
  int64_t param_numel(size_t i) const { return params_[i].second.numel(); }
  torch::Device device() const;
  // The parameters' dtype when they all share one, else float32: the dtype ZeRO gathers updated
  // values in and stage 2 reduces gradients in (narrower traffic, same values once cast back).
  torch::ScalarType uniform_dtype() const;

  // A float32 copy of every parameter, flat [numel], on the parameters' device.
  torch::Tensor gather_values() const;
  // Copies flat[begin, end) (float32, on the parameters' device) into the parameters it covers,
  // casting to each parameter's dtype. `flat` holds exactly that range.
  void scatter_values(const torch::Tensor& flat, int64_t begin, int64_t end) const;
  // Gradients as one float32 flat tensor (zeros where a parameter has no grad, e.g. unused).
  torch::Tensor gather_grads() const;
  // Sets every parameter's grad to undefined.
  void zero_grads() const;

  // Named views of the flat tensor `flat` [numel] (or of its range [begin, end) when `flat` holds
  // only that range), each shaped like its parameter: what a checkpoint stores per name.
  std::vector<std::pair<std::string, torch::Tensor>> named_views(const torch::Tensor& flat, int64_t begin = 0) const;

  // The contiguous range of the flat space rank `rank` of `world` owns: equal splits rounded up,
  // so the last rank may own less (or nothing).
  std::pair<int64_t, int64_t> shard_range(int rank, int world) const;

 private:
  std::vector<std::pair<std::string, torch::Tensor>> params_;
  std::vector<int64_t> offsets_;
  int64_t total_ = 0;
};

}  // namespace t4g
