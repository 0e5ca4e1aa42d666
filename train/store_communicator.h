// The CPU Communicator: collectives through the job's c10d store (TCPStore), because the torch
// wheel ships no Gloo headers (research/distributed_and_style.md A.4). Each collective call gets a
// sequence number; every rank sets its bytes under "<name>/<seq>/<rank>", reads everybody's, and
// reduces in rank order 0..N-1, so results are bit-identical on every rank. The last rank to read
// deletes the keys (reduce-scatter: each rank deletes the chunks addressed to it). Meant for tests
// and the CPU demo (small tensors), never for GPU training.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "train/communicator.h"

namespace t4g {

struct StoreCommunicatorOptions {
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};  // bound on each wait for the other ranks
  std::string name = "default_pg";                             // key namespace of this group in the store
};

class StoreCommunicator : public Communicator {
 public:
  // `store` is shared by all ranks (train/rendezvous.h gives it per attempt). Throws t4g::Error when
  // rank or world size are out of range.
  StoreCommunicator(c10::intrusive_ptr<c10d::Store> store, int rank, int world_size,
                    StoreCommunicatorOptions options = {});
  ~StoreCommunicator() override;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend_name() const override { return "store"; }

  void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::kSum) override;
  // Runs synchronously: the store offers no overlap, and the returned handle is already complete.
  std::unique_ptr<PendingCollective> all_reduce_async(torch::Tensor& tensor, ReduceOp op = ReduceOp::kSum) override;
  // Rank q writes chunk j of its input under a key only rank j reads ("<seq>/<q>/to/<j>"); rank j
  // sums the W chunks in rank order 0..W-1 (as all_reduce does, so the values are bit-identical to
  // the all_reduce of the whole input) and deletes the keys it read.
  void reduce_scatter(const torch::Tensor& input, torch::Tensor& output, ReduceOp op = ReduceOp::kSum) override;
  // Runs synchronously, like all_reduce_async.
  std::unique_ptr<PendingCollective> reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output,
                                                          ReduceOp op = ReduceOp::kSum) override;
  void broadcast(torch::Tensor& tensor, int root = 0) override;
  std::vector<torch::Tensor> all_gather(const torch::Tensor& tensor) override;
  void barrier() override;
  // Final barrier, then every rank but 0 leaves a "gone" key that rank 0 waits for, so a store
  // hosted by rank 0 outlives every peer's last request.
  void shutdown() override;

 private:
  // Sets this rank's payload for the next collective (in chunks of at most 4 MiB, the store's
  // message limit being 8 MiB), waits for all ranks' payloads and returns them in rank order,
  // then counts this rank as done reading.
  std::vector<std::vector<uint8_t>> exchange(const char* what, std::vector<uint8_t> payload);
  // Waits (bounded) for `keys`; a timeout becomes a t4g::Error naming the missing ranks.
  void wait_for(const std::string& what, const std::vector<std::string>& keys, const std::vector<int>& ranks);
  // Counts this rank as done with call `seq`; the last one deletes `keys` and the counter.
  void finish(uint64_t seq, const std::vector<std::string>& keys);
  std::string key(uint64_t seq, const std::string& leaf) const;
  void check_open(const char* what) const;

  c10::intrusive_ptr<c10d::Store> store_;
  int rank_;
  int world_size_;
  StoreCommunicatorOptions options_;
  uint64_t seq_ = 0;  // collectives issued so far: the same on every rank when call orders agree
  bool closed_ = false;
  std::mutex mutex_;
};

}  // namespace t4g
