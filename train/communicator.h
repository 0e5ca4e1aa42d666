// The Communicator: the few collectives training needs (all-reduce, reduce-scatter, broadcast,
// all-gather, barrier), behind one interface with two implementations (ARCHITECTURE.md "Distributed"; lesson
// B.6.15): NCCL through c10d::ProcessGroupNCCL on GPUs (train/nccl_communicator.h) and a CPU one
// that exchanges tensors through the job's TCPStore (train/store_communicator.h), for tests and
// the CPU demo, because the torch wheel ships no Gloo headers (research A.4).
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>  // c10d::Store, c10::intrusive_ptr

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "train/dist_env.h"

namespace t4g {

enum class ReduceOp { kSum, kAvg };

// A collective that was launched and may still be running. wait() returns once the result is in
// the tensor as far as the caller's next operations are concerned (for NCCL: ordered on the
// current CUDA stream; for the store: complete).
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual void wait() = 0;
};

// Collectives over all ranks of one job. Every rank must call the same collectives in the same
// order with tensors of the same shape and dtype (the usual c10d contract). Tensors are reduced
// in place. Not thread-safe: call from one thread at a time.
class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // "nccl" or "store".
  virtual std::string backend_name() const = 0;

  // Sum (or mean) of `tensor` over all ranks, written back into `tensor` on every rank.
  virtual void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::kSum) = 0;
  // Launches the same all-reduce and returns without waiting where the backend allows it (NCCL);
  // `tensor` must stay alive and untouched until wait().
  virtual std::unique_ptr<PendingCollective> all_reduce_async(torch::Tensor& tensor, ReduceOp op = ReduceOp::kSum) = 0;
  // Sum (or mean) over all ranks of the flat `input` [W * n], of which this rank receives chunk
  // `rank()`, i.e. input[rank * n, (rank + 1) * n) reduced, in `output` [n] (same dtype; contiguous).
  // Element for element the same values all_reduce would give (ZeRO-2's gradient path: each rank
  // materialises only its own shard). Every rank passes the same sizes.
  virtual void reduce_scatter(const torch::Tensor& input, torch::Tensor& output, ReduceOp op = ReduceOp::kSum) = 0;
  // The same, launched without waiting where the backend allows it (NCCL); `input` and `output`
  // must stay alive and untouched until wait().
  virtual std::unique_ptr<PendingCollective> reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output,
                                                                  ReduceOp op = ReduceOp::kSum) = 0;
  // Copies `tensor` of rank `root` into `tensor` on every rank.
  virtual void broadcast(torch::Tensor& tensor, int root = 0) = 0;
  // Every rank's `tensor`, in rank order (same shape and dtype on every rank).
  virtual std::vector<torch::Tensor> all_gather(const torch::Tensor& tensor) = 0;
  // Returns once every rank has called barrier().
  virtual void barrier() = 0;
  // Collective teardown, called once on every rank at a common point at the end: a final barrier,
  // then the backend is released. No collective may follow. Idempotent.
  virtual void shutdown() = 0;
};

enum class CommBackend {
  kAuto,   // NCCL when this build has it and CUDA devices are present, otherwise the store
  kStore,  // CPU, through the rendezvous store (tests, CPU demo)
  kNccl,   // c10d::ProcessGroupNCCL, one process per GPU (device = LOCAL_RANK)
};

struct CommunicatorOptions {
  CommBackend backend = CommBackend::kAuto;                                  // which implementation
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};               // bound on every collective
  std::string name = "default_pg";                                           // key namespace of this group in the store
  bool nccl_eager_init = true;                                               // NCCL: connect at construction, not at the first collective
};

// Parses "auto", "store", "nccl"; throws t4g::Error naming `key` otherwise.
CommBackend parse_comm_backend(const std::string& text, const std::string& key = "backend");

// The backend for a model on `model_device`: kAuto becomes kNccl for a CUDA model (NCCL moves CUDA
// tensors only) and kStore otherwise; an explicit choice is returned unchanged. The one rule the
// trainer, the benchmarks and the test workers share, so "auto" means the same everywhere.
CommBackend comm_backend_for(CommBackend requested, const torch::Device& model_device);

// Builds the communicator for this worker: `store` is the job's store (train/rendezvous.h),
// `env` gives rank, world size and LOCAL_RANK (the CUDA device for NCCL).
std::unique_ptr<Communicator> make_communicator(const DistEnv& env, c10::intrusive_ptr<c10d::Store> store,
                                                const CommunicatorOptions& options = {});

}  // namespace t4g
