// ZeRO stages 0-2 over the flat parameter space (see sharded_optimizer.h). The arithmetic is
// FlatAdamW's and FlatEma's on this rank's range; what this file adds is who owns which range,
// the collectives that keep the replicas' parameters whole, and full-state gathering for saving.
#include "train/sharded_optimizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/error.h"

namespace t4g {
namespace {

// Float32 values of the flat range [begin, end), without building the whole flat tensor (which
// under ZeRO would cost a full copy of the model in float32 on every rank).
torch::Tensor range_values(const FlatParameters& params, int64_t begin, int64_t end) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t lo = std::max(begin, params.offset(i));
    const int64_t hi = std::min(end, params.offset(i) + params.param_numel(i));
    if (lo >= hi) continue;
    parts.push_back(
        params.param(i).detach().reshape({-1}).narrow(0, lo - params.offset(i), hi - lo).to(torch::kFloat32));
  }
  if (parts.empty()) {
    return torch::zeros({0}, torch::TensorOptions().dtype(torch::kFloat32).device(params.device()));
  }
  return torch::cat(parts).clone();
}

// Checks that `named` holds every parameter of `params` by name with its number of elements,
// and nothing else; errors name the tensor and `source`.
void check_named(const FlatParameters& params, const std::map<std::string, torch::Tensor>& named, const char* what,
                 const std::string& source) {
  for (size_t i = 0; i < params.size(); ++i) {
    const auto it = named.find(params.name(i));
    ErrorContext ctx;
    ctx.file = source;
    ctx.tensor = params.name(i);
    T4G_CHECK_CTX(it != named.end(), ctx, "the checkpoint's ", what, " lack a trainable parameter of this recipe");
    ctx.expected = str(params.param_numel(i), " values");
    ctx.got = str(it->second.numel());
    T4G_CHECK_CTX(it->second.numel() == params.param_numel(i), ctx, "the checkpoint's ", what,
                  " hold a tensor of another size");
  }
  if (named.size() == params.size()) return;
  std::string extra;
  for (const auto& item : named) {
    bool known = false;
    for (size_t i = 0; i < params.size() && !known; ++i) known = params.name(i) == item.first;
    if (!known) extra += (extra.empty() ? "" : ", ") + item.first;
  }
  ErrorContext ctx;
  ctx.file = source;
  ctx.tensor = extra;
  ctx.expected = str(params.size(), " tensors");
  ctx.got = str(named.size());
  T4G_CHECK_CTX(false, ctx, "the checkpoint's ", what, " hold tensors this recipe does not train");
}

// The flat range [begin, end) of checked named tensors as float32 on `device`, cut straight from
// the named tensors (no whole flat copy).
torch::Tensor range_from_named(const FlatParameters& params, const std::map<std::string, torch::Tensor>& named,
                               int64_t begin, int64_t end, torch::Device device) {
  std::vector<torch::Tensor> parts;
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t lo = std::max(begin, params.offset(i));
    const int64_t hi = std::min(end, params.offset(i) + params.param_numel(i));
    if (lo >= hi) continue;
    parts.push_back(
        named.at(params.name(i)).reshape({-1}).narrow(0, lo - params.offset(i), hi - lo).to(torch::kFloat32));
  }
  if (parts.empty()) return torch::zeros({0}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  return torch::cat(parts).to(device);
}

}  // namespace

ZeroStage zero_stage_from_int(int64_t stage, const std::string& key) {
  if (stage >= 0 && stage <= 2) return static_cast<ZeroStage>(stage);
  ErrorContext ctx;
  ctx.key = key;
  ctx.expected = "0, 1 or 2";
  ctx.got = std::to_string(stage);
  throw Error("unknown ZeRO stage", ctx);
}

ShardedOptimizer::ShardedOptimizer(const FlatParameters& params, Communicator* comm,
                                   const ShardedOptimizerOptions& options)
    : params_(params), comm_(comm), options_(options) {
  T4G_CHECK(options.gather_bytes > 0, "sharded optimizer: gather_bytes must be positive, got ", options.gather_bytes);
  if (comm_ != nullptr) {
    rank_ = comm_->rank();
    world_ = comm_->world_size();
  }
  begin_ = 0;
  end_ = params_.numel();
  if (sharded()) std::tie(begin_, end_) = params_.shard_range(rank_, world_);
  const torch::Tensor values = range_values(params_, begin_, end_);
  adam_ = FlatAdamW(values, begin_, options_.adam);
  ema_ = FlatEma(values, options_.ema_decay);
}

bool ShardedOptimizer::sharded() const { return options_.stage != ZeroStage::k0 && world_ > 1; }

GradReduceMode ShardedOptimizer::reduce_mode() const {
  return options_.stage == ZeroStage::k2 ? GradReduceMode::kReduceScatter : GradReduceMode::kAllReduce;
}

int64_t ShardedOptimizer::state_numel() const {
  return 3 * adam_.master().numel() + (ema_.enabled() ? ema_.values().numel() : 0);
}

double ShardedOptimizer::grad_norm(const torch::Tensor& grad) {
  torch::NoGradGuard no_grad;
  if (grad.numel() == params_.numel()) return grad.norm().item<double>();
  ErrorContext ctx;
  ctx.tensor = "gradient";
  ctx.expected = str(params_.numel(), " values (whole) or ", end_ - begin_, " (this rank's shard)");
  ctx.got = str(grad.numel());
  T4G_CHECK_CTX(sharded() && grad.numel() == end_ - begin_, ctx, "sharded optimizer: gradient of the wrong size");
  // Sum of squares in float64 over the shards, so the norm is the global one on every rank.
  const double local = grad.numel() == 0 ? 0.0 : grad.norm().item<double>();
  torch::Tensor squares =
      torch::full({1}, local * local, torch::TensorOptions().dtype(torch::kFloat64).device(grad.device()));
  comm_->all_reduce(squares, ReduceOp::kSum);
  return std::sqrt(squares.item<double>());
}

void ShardedOptimizer::step(const torch::Tensor& grad, double lr, double grad_scale) {
  torch::NoGradGuard no_grad;
  torch::Tensor g;
  if (grad.numel() == params_.numel()) {
    g = grad.reshape({-1}).narrow(0, begin_, end_ - begin_);
  } else {
    ErrorContext ctx;
    ctx.tensor = "gradient";
    ctx.expected = str(params_.numel(), " values (whole) or ", end_ - begin_, " (this rank's shard)");
    ctx.got = str(grad.numel());
    T4G_CHECK_CTX(sharded() && grad.numel() == end_ - begin_, ctx, "sharded optimizer: gradient of the wrong size");
    g = grad.reshape({-1});
  }
  // The same float32 product as torch.nn.utils.clip_grad_norm_'s in-place scaling.
  if (grad_scale != 1.0) g = g.to(torch::kFloat32) * grad_scale;
  adam_.step(g, lr);
  refresh_parameters();
  ema_.update(adam_.master());
}

template <typename Sink>
void ShardedOptimizer::gather_rounds(const torch::Tensor& local, torch::ScalarType dtype, Sink&& sink) {
  const int64_t total = params_.numel();
  const int64_t per = params_.shard_range(0, world_).second;  // padded shard length
  const int64_t round = std::max<int64_t>(1, options_.gather_bytes / static_cast<int64_t>(c10::elementSize(dtype)));
  for (int64_t off = 0; off < per; off += round) {
    const int64_t len = std::min(round, per - off);
    // Equal shapes for all_gather: a short (last) shard is padded with zeros.
    torch::Tensor piece = torch::zeros({len}, local.options().dtype(dtype));
    const int64_t mine = std::clamp<int64_t>(local.numel() - off, 0, len);
    if (mine > 0) piece.narrow(0, 0, mine).copy_(local.narrow(0, off, mine));
    const std::vector<torch::Tensor> all = comm_->all_gather(piece);
    for (int q = 0; q < world_; ++q) {
      const int64_t at = q * per + off;
      const int64_t valid = std::clamp<int64_t>(total - at, 0, len);
      if (valid > 0) sink(at, all[q].narrow(0, 0, valid));
    }
  }
}

void ShardedOptimizer::refresh_parameters() {
  torch::NoGradGuard no_grad;
  if (!sharded()) {
    params_.scatter_values(adam_.master(), begin_, end_);
    return;
  }
  // Gathered in the parameters' own dtype when they share one (bf16 training sends half the
  // bytes); the values written are the same casts of the masters either way.
  gather_rounds(adam_.master(), params_.uniform_dtype(), [&](int64_t at, const torch::Tensor& values) {
    params_.scatter_values(values, at, at + values.numel());
  });
}

void ShardedOptimizer::broadcast_parameters(int root) {
  torch::NoGradGuard no_grad;
  if (comm_ != nullptr && world_ > 1) {
    // In rounds, straight into the parameters: no whole float32 copy of the model.
    const int64_t round = std::max<int64_t>(1, options_.gather_bytes / 4);
    for (int64_t off = 0; off < params_.numel(); off += round) {
      const int64_t len = std::min(round, params_.numel() - off);
      torch::Tensor values = range_values(params_, off, off + len);
      comm_->broadcast(values, root);
      params_.scatter_values(values, off, off + len);
    }
  }
  const torch::Tensor values = range_values(params_, begin_, end_);
  adam_ = FlatAdamW(values, begin_, options_.adam);
  ema_ = FlatEma(values, options_.ema_decay);
}

FullOptimizerState ShardedOptimizer::gather_state(int root) {
  torch::NoGradGuard no_grad;
  T4G_CHECK(root >= 0 && root < world_, "gather_state: root ", root, " is outside [0, ", world_, ")");
  const bool receive = rank_ == root;
  auto gather = [&](const torch::Tensor& local) {
    torch::Tensor out;
    if (!sharded()) {
      if (receive) out = local.to(torch::kCPU, torch::kFloat32, false, /*copy=*/true);
      return out;
    }
    if (receive) out = torch::empty({params_.numel()}, torch::kFloat32);
    gather_rounds(local, torch::kFloat32, [&](int64_t at, const torch::Tensor& values) {
      if (receive) out.narrow(0, at, values.numel()).copy_(values);
    });
    return out;
  };
  FullOptimizerState state;
  state.master = gather(adam_.master());
  state.exp_avg = gather(adam_.exp_avg());
  state.exp_avg_sq = gather(adam_.exp_avg_sq());
  if (ema_.enabled()) state.ema = gather(ema_.values());
  return state;
}

void ShardedOptimizer::gather_checkpoint(CheckpointTensors& tensors, int root) {
  const FullOptimizerState state = gather_state(root);
  if (rank_ != root) return;
  for (auto& [name, view] : params_.named_views(state.master)) tensors.weights[name] = view;
  for (auto& [name, view] : params_.named_views(state.exp_avg)) tensors.exp_avg[name] = view;
  for (auto& [name, view] : params_.named_views(state.exp_avg_sq)) tensors.exp_avg_sq[name] = view;
  if (state.ema.defined()) {
    for (auto& [name, view] : params_.named_views(state.ema)) tensors.ema[name] = view;
  }
}

void ShardedOptimizer::load_checkpoint(const CheckpointTensors& tensors, int64_t optimizer_steps, int64_t ema_updates,
                                       const std::string& source) {
  torch::NoGradGuard no_grad;
  check_named(params_, tensors.weights, "weights", source);
  check_named(params_, tensors.exp_avg, "exp_avg", source);
  check_named(params_, tensors.exp_avg_sq, "exp_avg_sq", source);
  const bool has_ema = ema_.enabled() && !tensors.ema.empty();
  if (has_ema) check_named(params_, tensors.ema, "EMA weights", source);
  const torch::Device device = params_.device();
  const torch::Tensor master = range_from_named(params_, tensors.weights, begin_, end_, device);
  adam_.load(master, range_from_named(params_, tensors.exp_avg, begin_, end_, device),
             range_from_named(params_, tensors.exp_avg_sq, begin_, end_, device), optimizer_steps);
  ema_.load(has_ema ? range_from_named(params_, tensors.ema, begin_, end_, device) : master, has_ema ? ema_updates : 0);
  // Every rank holds every tensor of the checkpoint, so each parameter is written without
  // communication, one at a time.
  for (size_t i = 0; i < params_.size(); ++i) {
    const torch::Tensor values = tensors.weights.at(params_.name(i)).reshape({-1}).to(device, torch::kFloat32);
    params_.scatter_values(values, params_.offset(i), params_.offset(i) + params_.param_numel(i));
  }
}

}  // namespace t4g
