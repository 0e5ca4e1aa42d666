// Data-parallel gradient averaging, overlapped with backward (research/distributed_and_style.md
// A.3, DDP's reducer): the trainable parameters are grouped into size-capped buckets in reverse
// order (the order backward produces gradients); a post-accumulate-grad hook on each parameter
// copies its gradient into its bucket, and a bucket whose gradients are all in is averaged over
// the ranks at once while backward continues. Buckets are launched strictly in bucket order, so
// every rank issues the same collectives in the same order even when gradients arrive in another
// order. finish() fills in parameters that got no gradient this step (unused branches) with zeros,
// launches what is left, waits, and returns the averaged gradient. Micro-steps of gradient
// accumulation run without communication (prepare(false)).
//
// Two modes. kAllReduce (DDP, ZeRO stages 0 and 1): buckets are runs of whole parameters,
// all-reduced, and finish() returns the whole flat gradient. kReduceScatter (ZeRO stage 2): a
// bucket is the same slice [lo, hi) of EVERY rank's shard (FlatParameters::shard_range, shard-local
// offsets counted from the shard's end, so backward fills the first buckets first), laid out as W
// equal chunks, so one reduce-scatter hands rank r the averaged values of its own shard's slice and
// nothing else; finish() returns the float32 gradient of this rank's shard only. The price: a
// bucket needs gradients from W places of the model, so less of the communication overlaps
// backward (about the last 1/W of it) than with all-reduce buckets.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "train/communicator.h"
#include "train/flat_parameters.h"

namespace t4g {

enum class GradReduceMode {
  kAllReduce,      // every rank receives the whole averaged gradient
  kReduceScatter,  // each rank receives the averaged gradient of its own shard only (ZeRO-2)
};

struct GradReducerOptions {
  int64_t bucket_bytes = 25ll << 20;                 // bucket cap (DDP's 25 MiB); a bigger parameter gets its own
  GradReduceMode mode = GradReduceMode::kAllReduce;  // what finish() returns, see the top of this file
};

class GradientReducer {
 public:
  // Installs the hooks on every parameter of `params` (which must outlive the reducer, as must
  // `comm`). Bucket buffers have the gradients' dtype (as DDP), so bf16 training sends bf16;
  // kReduceScatter buckets mix parameters, so they use FlatParameters::uniform_dtype().
  GradientReducer(const FlatParameters& params, Communicator& comm, const GradReducerOptions& options = {});
  ~GradientReducer();  // removes the hooks
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Call before each backward: sync = true on the micro-step that ends an optimizer step (its
  // gradients are reduced), false on accumulation micro-steps (gradients just accumulate).
  void prepare(bool sync);
  // After the sync backward: the averaged gradients as float32 on the parameters' device, and
  // the parameters' .grad cleared (the buckets hold them now). kAllReduce: [numel], the whole flat
  // space; kReduceScatter: [end - begin] of this rank's shard_range(rank, world).
  torch::Tensor finish();

  GradReduceMode mode() const { return mode_; }

  size_t bucket_count() const { return buckets_.size(); }
  // Parameter indices of bucket b, in the order they were placed (reverse of the flat order).
  const std::vector<size_t>& bucket_params(size_t b) const { return buckets_[b].params; }
  // Buckets launched from inside backward (not by finish) in the last sync step: the overlap.
  int64_t launched_during_backward() const { return launched_in_backward_; }

 private:
  // A contiguous run of one parameter's flattened gradient that lands in one bucket.
  struct Piece {
    size_t bucket = 0;
    int64_t param_offset = 0;   // first element inside the parameter
    int64_t buffer_offset = 0;  // first element inside the bucket's buffer
    int64_t length = 0;
  };
  struct Bucket {
    std::vector<size_t> params;  // indices into params_, in the order they were placed
    torch::Tensor buffer;        // flat; kReduceScatter: W chunks of equal length
    torch::Tensor output;        // kReduceScatter: this rank's slice of shard_grad_
    size_t pieces = 0;           // pieces that fill the buffer
    size_t pending = 0;          // pieces whose gradient has not arrived yet
    std::unique_ptr<PendingCollective> work;
  };
  void plan_all_reduce(int64_t bucket_bytes);
  void plan_reduce_scatter(int64_t bucket_bytes);
  void on_gradient(size_t param_index);
  void mark_ready(size_t param_index, bool zero);
  void launch_ready_buckets();

  const FlatParameters& params_;
  Communicator& comm_;
  GradReduceMode mode_;
  std::vector<Bucket> buckets_;
  std::vector<std::vector<Piece>> pieces_;  // param index -> where its gradient goes
  std::vector<bool> ready_;                 // param has been copied this step
  torch::Tensor shard_grad_;                // kReduceScatter: this rank's padded shard, buffer dtype
  int64_t shard_numel_ = 0;                 // kReduceScatter: its unpadded length
  size_t next_launch_ = 0;                  // buckets launch in index order
  bool sync_ = false;
  bool in_finish_ = false;
  int64_t launched_in_backward_ = 0;
};

}  // namespace t4g
