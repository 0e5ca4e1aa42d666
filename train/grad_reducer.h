// Data-parallel gradient averaging, overlapped with backward (research/distributed_and_style.md
// A.3, DDP's reducer): the trainable parameters are grouped into size-capped buckets in reverse
// order (the order backward produces gradients); a post-accumulate-grad hook on each parameter
// copies its gradient into its bucket, and a bucket whose gradients are all in is all-reduced
// (averaged) at once while backward continues. Buckets are launched strictly in bucket order, so
// every rank issues the same collectives in the same order even when gradients arrive in another
// order. finish() fills in parameters that got no gradient this step (unused branches) with zeros,
// launches what is left, waits, and returns the averaged gradient of the flat space. Micro-steps
// of gradient accumulation run without communication (prepare(false)).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "train/communicator.h"
#include "train/flat_parameters.h"

namespace t4g {

struct GradReducerOptions {
  int64_t bucket_bytes = 25ll << 20;  // cap on a bucket's size (DDP's default 25 MiB); a larger parameter gets its own
};

class GradientReducer {
 public:
  // Installs the hooks on every parameter of `params` (which must outlive the reducer, as must
  // `comm`). Bucket buffers have the gradients' dtype (as DDP), so bf16 training sends bf16.
  GradientReducer(const FlatParameters& params, Communicator& comm, const GradReducerOptions& options = {});
  ~GradientReducer();  // removes the hooks
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Call before each backward: sync = true on the micro-step that ends an optimizer step (its
  // gradients are reduced), false on accumulation micro-steps (gradients just accumulate).
  void prepare(bool sync);
  // After the sync backward: the averaged gradients as float32 [numel] on the parameters' device,
  // and the parameters' .grad cleared (the buckets hold them now).
  torch::Tensor finish();

  size_t bucket_count() const { return buckets_.size(); }
  // Parameter indices of bucket b, in the order they were placed (reverse of the flat order).
  const std::vector<size_t>& bucket_params(size_t b) const { return buckets_[b].params; }
  // Buckets launched from inside backward (not by finish) in the last sync step: the overlap.
  int64_t launched_during_backward() const { return launched_in_backward_; }

 private:
  struct Bucket {
    std::vector<size_t> params;   // indices into params_
    std::vector<int64_t> offsets; // element offset of each param inside the buffer
    torch::Tensor buffer;         // flat, gradient dtype
    size_t pending = 0;           // params whose gradient has not arrived yet
    std::unique_ptr<PendingCollective> work;
  };
  void on_gradient(size_t param_index);
  void mark_ready(size_t param_index, bool zero);
  void launch_ready_buckets();

  const FlatParameters& params_;
  Communicator& comm_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;      // param index -> bucket
  std::vector<size_t> slot_of_;        // param index -> position in its bucket
  std::vector<bool> ready_;            // param has been copied this step
  size_t next_launch_ = 0;             // buckets launch in index order
  bool sync_ = false;
  bool in_finish_ = false;
  int64_t launched_in_backward_ = 0;
};

}  // namespace t4g
