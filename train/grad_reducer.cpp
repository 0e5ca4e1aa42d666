// Bucketed, hook-driven gradient all-reduce or reduce-scatter (see grad_reducer.h).
#include "train/grad_reducer.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "common/error.h"

namespace t4g {
namespace {

// The post-accumulate-grad hook: runs after the parameter's .grad has been updated by backward.
class ReducerHook : public torch::autograd::PostAccumulateGradHook {
 public:
  ReducerHook(std::function<void()> fn) : fn_(std::move(fn)) {}
  void operator()(const torch::autograd::Variable&) override { fn_(); }

 private:
  std::function<void()> fn_;
};

// Index of the first parameter whose flat range ends after `at` (offsets ascend): binary search.
size_t first_param_ending_after(const FlatParameters& params, int64_t at) {
  size_t lo = 0, hi = params.size();
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (params.offset(mid) + params.param_numel(mid) <= at) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

}  // namespace

GradientReducer::GradientReducer(const FlatParameters& params, Communicator& comm, const GradReducerOptions& options)
    : params_(params), comm_(comm), mode_(options.mode) {
  T4G_CHECK(options.bucket_bytes > 0, "gradient reducer: bucket size must be positive, got ", options.bucket_bytes);
  const size_t n = params.size();
  pieces_.assign(n, {});
  ready_.assign(n, false);
  if (mode_ == GradReduceMode::kAllReduce) {
    plan_all_reduce(options.bucket_bytes);
  } else {
    plan_reduce_scatter(options.bucket_bytes);
  }
  for (Bucket& b : buckets_) b.pending = b.pieces;
  for (size_t k = 0; k < n; ++k) {
    torch::autograd::impl::set_post_acc_grad_hooks(params.param(k),
                                                   std::make_unique<ReducerHook>([this, k] { on_gradient(k); }));
  }
}

void GradientReducer::plan_all_reduce(int64_t bucket_bytes) {
  // Reverse order: the last layers' gradients arrive first in backward. One piece per parameter.
  const size_t n = params_.size();
  Bucket current;
  int64_t current_bytes = 0;
  auto close = [&] {
    if (current.params.empty()) return;
    buckets_.push_back(std::move(current));
    current = Bucket();
    current_bytes = 0;
  };
  for (size_t k = n; k-- > 0;) {
    const torch::Tensor& p = params_.param(k);
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    const bool mixes_dtype =
        !current.params.empty() && params_.param(current.params.front()).scalar_type() != p.scalar_type();
    if (!current.params.empty() && (current_bytes + bytes > bucket_bytes || mixes_dtype)) close();
    current.params.push_back(k);
    current_bytes += bytes;
  }
  close();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Bucket& bucket = buckets_[b];
    int64_t offset = 0;
    for (const size_t k : bucket.params) {
      pieces_[k].push_back(Piece{b, 0, offset, params_.param_numel(k)});
      offset += params_.param_numel(k);
    }
    bucket.pieces = bucket.params.size();
    const torch::Tensor& first = params_.param(bucket.params.front());
    bucket.buffer = torch::zeros({offset}, first.options().requires_grad(false));
  }
}

void GradientReducer::plan_reduce_scatter(int64_t bucket_bytes) {
  const int world = comm_.world_size();
  const int64_t total = params_.numel();
  const int64_t per = params_.shard_range(0, world).second;  // padded shard length, the same for every rank
  const auto [own_begin, own_end] = params_.shard_range(comm_.rank(), world);
  shard_numel_ = own_end - own_begin;
  const torch::TensorOptions options =
      torch::TensorOptions().dtype(params_.uniform_dtype()).device(params_.device()).requires_grad(false);
  shard_grad_ = torch::zeros({per}, options);
  const int64_t element = static_cast<int64_t>(c10::elementSize(params_.uniform_dtype()));
  const int64_t slice = std::max<int64_t>(1, bucket_bytes / (element * world));  // per-rank chunk of a bucket
  // Shard-local slices from the end of the shard backwards: backward produces the gradients of
  // the last parameters first, and the last rank's region ends the model.
  for (int64_t hi = per; hi > 0;) {
    const int64_t lo = std::max<int64_t>(0, hi - slice);
    const size_t b = buckets_.size();
    Bucket bucket;
    const int64_t len = hi - lo;
    bucket.buffer = torch::zeros({world * len}, options);  // padding past the flat space stays zero
    bucket.output = shard_grad_.narrow(0, lo, len);
    for (int q = 0; q < world; ++q) {
      const int64_t region_lo = std::min(total, q * per + lo);
      const int64_t region_hi = std::min(total, q * per + hi);
      // Parameters overlapping [region_lo, region_hi).
      for (size_t k = first_param_ending_after(params_, region_lo); k < params_.size() && params_.offset(k) < region_hi;
           ++k) {
        const int64_t from = std::max(region_lo, params_.offset(k));
        const int64_t to = std::min(region_hi, params_.offset(k) + params_.param_numel(k));
        if (from >= to) continue;
        pieces_[k].push_back(Piece{b, from - params_.offset(k), q * len + (from - (q * per + lo)), to - from});
        if (bucket.params.empty() || bucket.params.back() != k) bucket.params.push_back(k);
        ++bucket.pieces;
      }
    }
    buckets_.push_back(std::move(bucket));
    hi = lo;
  }
}

GradientReducer::~GradientReducer() {
  for (size_t k = 0; k < params_.size(); ++k) {
    torch::autograd::impl::set_post_acc_grad_hooks(params_.param(k), nullptr);
  }
}

void GradientReducer::prepare(bool sync) {
  sync_ = sync;
  if (!sync) return;
  std::fill(ready_.begin(), ready_.end(), false);
  for (Bucket& b : buckets_) {
    b.pending = b.pieces;
    b.work.reset();
  }
  next_launch_ = 0;
  launched_in_backward_ = 0;
}

void GradientReducer::on_gradient(size_t k) {
  if (!sync_ || ready_[k]) return;
  mark_ready(k, false);
  launch_ready_buckets();
}

void GradientReducer::mark_ready(size_t k, bool zero) {
  ready_[k] = true;
  const torch::Tensor& g = params_.param(k).grad();
  torch::NoGradGuard no_grad;
  const bool none = zero || !g.defined();
  const torch::Tensor flat_grad = none ? torch::Tensor() : g.reshape({-1});
  for (const Piece& piece : pieces_[k]) {
    Bucket& b = buckets_[piece.bucket];
    torch::Tensor slot = b.buffer.narrow(0, piece.buffer_offset, piece.length);
    if (none) {
      slot.zero_();
    } else {
      slot.copy_(flat_grad.narrow(0, piece.param_offset, piece.length));
    }
    --b.pending;
  }
  // The bucket holds the gradient now: release the parameter's own copy at once rather than at
  // finish(), so backward never holds the whole gradient twice (a bf16 copy of the model: 11 GiB
  // at 5B). The copy above is queued on the same stream, so the allocator reuses the memory safely.
  if (!none) {
    torch::Tensor p = params_.param(k);
    p.mutable_grad() = torch::Tensor();
  }
}

void GradientReducer::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    Bucket& b = buckets_[next_launch_];
    b.work = mode_ == GradReduceMode::kAllReduce ? comm_.all_reduce_async(b.buffer, ReduceOp::kAvg)
                                                 : comm_.reduce_scatter_async(b.buffer, b.output, ReduceOp::kAvg);
    if (!in_finish_) ++launched_in_backward_;
    ++next_launch_;
  }
}

torch::Tensor GradientReducer::finish() {
  T4G_CHECK(sync_, "GradientReducer::finish() after prepare(false): accumulation steps are not reduced");
  in_finish_ = true;
  // Parameters without a gradient this step still take part, as zeros, so no bucket waits.
  for (size_t k = params_.size(); k-- > 0;) {
    if (!ready_[k]) mark_ready(k, !params_.param(k).grad().defined());
  }
  launch_ready_buckets();
  in_finish_ = false;
  const torch::TensorOptions f32 = torch::TensorOptions().dtype(torch::kFloat32).device(params_.device());
  torch::Tensor out;
  if (mode_ == GradReduceMode::kAllReduce) {
    out = torch::empty({params_.numel()}, f32);
    for (Bucket& b : buckets_) b.work->wait();
    for (size_t k = 0; k < params_.size(); ++k) {
      for (const Piece& piece : pieces_[k]) {
        out.narrow(0, params_.offset(k) + piece.param_offset, piece.length)
            .copy_(buckets_[piece.bucket].buffer.narrow(0, piece.buffer_offset, piece.length));
      }
    }
  } else {
    for (Bucket& b : buckets_) b.work->wait();
    out = torch::empty({shard_numel_}, f32);
    out.copy_(shard_grad_.narrow(0, 0, shard_numel_));
  }
  params_.zero_grads();
  sync_ = false;
  return out;
}

}  // namespace t4g
