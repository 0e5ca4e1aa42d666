// Bucketed, hook-driven gradient all-reduce (see grad_reducer.h).
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

}  // namespace

GradientReducer::GradientReducer(const FlatParameters& params, Communicator& comm, const GradReducerOptions& options)
    : params_(params), comm_(comm) {
  const size_t n = params.size();
  bucket_of_.assign(n, 0);
  slot_of_.assign(n, 0);
  ready_.assign(n, false);
  // Reverse order: the last layers' gradients arrive first in backward.
  Bucket current;
  int64_t current_bytes = 0;
  auto close = [&] {
    if (current.params.empty()) return;
    buckets_.push_back(std::move(current));
    current = Bucket();
    current_bytes = 0;
  };
  for (size_t k = n; k-- > 0;) {
    const torch::Tensor& p = params.param(k);
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    const bool mixes_dtype = !current.params.empty() && params.param(current.params.front()).scalar_type() != p.scalar_type();
    if (!current.params.empty() && (current_bytes + bytes > options.bucket_bytes || mixes_dtype)) close();
    current.params.push_back(k);
    current_bytes += bytes;
  }
  close();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Bucket& bucket = buckets_[b];
    int64_t offset = 0;
    for (size_t s = 0; s < bucket.params.size(); ++s) {
      const size_t k = bucket.params[s];
      bucket_of_[k] = b;
      slot_of_[k] = s;
      bucket.offsets.push_back(offset);
      offset += params.param_numel(k);
    }
    const torch::Tensor& first = params.param(bucket.params.front());
    bucket.buffer = torch::zeros({offset}, first.options().requires_grad(false));
  }
  for (size_t k = 0; k < n; ++k) {
    torch::autograd::impl::set_post_acc_grad_hooks(params.param(k),
                                                   std::make_unique<ReducerHook>([this, k] { on_gradient(k); }));
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
    b.pending = b.params.size();
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
  Bucket& b = buckets_[bucket_of_[k]];
  torch::Tensor slot = b.buffer.narrow(0, b.offsets[slot_of_[k]], params_.param_numel(k));
  const torch::Tensor& g = params_.param(k).grad();
  torch::NoGradGuard no_grad;
  if (zero || !g.defined()) {
    slot.zero_();
  } else {
    slot.copy_(g.reshape({-1}));
  }
  --b.pending;
}

void GradientReducer::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    Bucket& b = buckets_[next_launch_];
    b.work = comm_.all_reduce_async(b.buffer, ReduceOp::kAvg);
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
  torch::Tensor flat = torch::empty({params_.numel()}, torch::TensorOptions().dtype(torch::kFloat32).device(params_.device()));
  for (Bucket& b : buckets_) {
    b.work->wait();
    for (size_t s = 0; s < b.params.size(); ++s) {
      const size_t k = b.params[s];
      flat.narrow(0, params_.offset(k), params_.param_numel(k))
          .copy_(b.buffer.narrow(0, b.offsets[s], params_.param_numel(k)));
    }
  }
  params_.zero_grads();
  sync_ = false;
  return flat;
}

}  // namespace t4g
