// The flat parameter space (see flat_parameters.h).
#include "train/flat_parameters.h"

#include <algorithm>
#include <set>

#include "common/error.h"

namespace t4g {

FlatParameters::FlatParameters(std::vector<std::pair<std::string, torch::Tensor>> params) : params_(std::move(params)) {
  std::set<std::string> seen;
  for (const auto& [name, p] : params_) {
    T4G_CHECK(seen.insert(name).second, "trainable parameter listed twice: ", name);
    T4G_CHECK(p.defined() && p.is_floating_point(), "trainable parameter ", name, " is not a floating tensor");
    offsets_.push_back(total_);
    total_ += p.numel();
  }
}

torch::Device FlatParameters::device() const { return params_.empty() ? torch::Device(torch::kCPU) : params_.front().second.device(); }

torch::ScalarType FlatParameters::uniform_dtype() const {
  if (params_.empty()) return torch::kFloat32;
  const torch::ScalarType first = params_.front().second.scalar_type();
  for (const auto& item : params_) {
    if (item.second.scalar_type() != first) return torch::kFloat32;
  }
  return first;
}

torch::Tensor FlatParameters::gather_values() const {
  torch::NoGradGuard no_grad;
  if (params_.empty()) return torch::zeros({0}, torch::kFloat32);
  std::vector<torch::Tensor> parts;
  for (const auto& item : params_) parts.push_back(item.second.detach().reshape({-1}).to(torch::kFloat32));
  return torch::cat(parts);
}

void FlatParameters::scatter_values(const torch::Tensor& flat, int64_t begin, int64_t end) const {
  torch::NoGradGuard no_grad;
  T4G_CHECK(flat.numel() == end - begin, "scatter_values: range holds ", end - begin, " values, tensor ", flat.numel());
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t lo = std::max(begin, offsets_[i]);
    const int64_t hi = std::min(end, offsets_[i] + param_numel(i));
    if (lo >= hi) continue;
    torch::Tensor dst = params_[i].second.detach().view({-1}).narrow(0, lo - offsets_[i], hi - lo);
    dst.copy_(flat.narrow(0, lo - begin, hi - lo));
  }
}

torch::Tensor FlatParameters::gather_grads() const {
  std::vector<torch::Tensor> parts;
  for (const auto& [name, p] : params_) {
    const torch::Tensor& g = p.grad();
    parts.push_back(g.defined() ? g.reshape({-1}).to(torch::kFloat32)
                                : torch::zeros({p.numel()}, p.options().dtype(torch::kFloat32)));
  }
  if (parts.empty()) return torch::zeros({0}, torch::kFloat32);
  return torch::cat(parts);
}

void FlatParameters::zero_grads() const {
  for (const auto& item : params_) {
    torch::Tensor p = item.second;
    p.mutable_grad() = torch::Tensor();
  }
}

std::vector<std::pair<std::string, torch::Tensor>> FlatParameters::named_views(const torch::Tensor& flat,
                                                                               int64_t begin) const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  const int64_t end = begin + flat.numel();
  for (size_t i = 0; i < params_.size(); ++i) {
    if (offsets_[i] < begin || offsets_[i] + param_numel(i) > end) continue;  // not wholly inside
    out.emplace_back(params_[i].first, flat.narrow(0, offsets_[i] - begin, param_numel(i)).view(params_[i].second.sizes()));
  }
  return out;
}

std::pair<int64_t, int64_t> FlatParameters::shard_range(int rank, int world) const {
  const int64_t per = (total_ + world - 1) / std::max(world, 1);
  const int64_t begin = std::min<int64_t>(total_, per * rank);
  return {begin, std::min<int64_t>(total_, begin + per)};
}

}  // namespace t4g
