// The training loader over a shard dataset (data/shards.h): a distributed sampler with exactly
// torch's DistributedSampler order (seeded shuffle per epoch, padding by repetition, rank r takes
// every world_size-th index), batches of clips collated with their tracks, optional augmentation
// (random temporal window, random crop and horizontal flip that move the tracks with the pixels),
// and worker threads that read and build batches ahead of the trainer.
//
// Every batch is a pure function of (options, epoch, batch index): the sample order comes from
// the seeded sampler and each sample's augmentation from a generator seeded by (seed, epoch,
// rank, position). So the number of workers never changes the data, and a run resumed from a
// saved LoaderPosition sees exactly the batches it would have seen.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/shards.h"

namespace t4g::data {

struct SamplerOptions {
  int64_t rank = 0;        // this process's rank, in [0, world_size)
  int64_t world_size = 1;  // number of processes sharing the dataset
  uint64_t seed = 0;       // shuffle seed; epoch e uses seed + e (as torch does)
  bool shuffle = true;     // shuffle per epoch (false: dataset order)
  bool drop_last = false;  // drop the tail that does not divide evenly (false: pad by repetition)
};

// The dataset positions rank `options.rank` visits in `epoch`, exactly as
// torch.utils.data.DistributedSampler(num_replicas, rank, shuffle, seed, drop_last) after
// set_epoch(epoch): every rank gets the same count, and ranks are disjoint except for the
// repeated padding.
std::vector<int64_t> distributed_indices(int64_t dataset_size, int64_t epoch, const SamplerOptions& options);

// Augmentation applied per sample; tracks and visibility move with the pixels.
struct AugmentOptions {
  int64_t clip_frames = 0;        // a random window of this many consecutive frames (0 = the whole video)
  int64_t crop_height = 0;        // random crop of this size (0 = no crop; both or neither)
  int64_t crop_width = 0;
  double flip_probability = 0.0;  // horizontal flip with this probability (x becomes W - x)
};

// Whether batches carry precomputed VAE latents instead of frames.
enum class LatentMode {
  kAuto,     // latents when every video in the dataset has them, frames otherwise
  kNever,    // always frames
  kRequire,  // latents; a dataset without them is an error
};
// "auto" | "never" | "require"; throws t4g::Error otherwise.
LatentMode parse_latent_mode(const std::string& text);

struct LoaderOptions {
  std::string dataset;              // shard dataset folder (with index.json)
  int64_t batch_size = 1;           // clips per batch (per rank)
  bool drop_last_batch = false;     // drop each epoch's final partial batch
  int64_t workers = 2;              // prefetch threads (0 = build batches in next() on the caller's thread)
  int64_t prefetch_batches = 4;     // batches built ahead of the consumer (ready or in progress)
  SamplerOptions sampler;           // rank, world size, seed, shuffle
  int64_t tracks_per_clip = 0;      // tracks sampled per clip among those visible in it (0 = all, padded per batch)
  LatentMode latents = LatentMode::kAuto;  // frames or precomputed latents
  AugmentOptions augment;           // crops, flips and windows (frames only)
};

// Where a loader is: the next batch it will return. Saved in checkpoints.
struct LoaderPosition {
  int64_t epoch = 0;  // epoch of the next batch
  int64_t batch = 0;  // index of the next batch within its epoch
  bool operator==(const LoaderPosition& o) const { return epoch == o.epoch && batch == o.batch; }
};

// A collated batch of B clips. Tracks are padded to a common count N with track_mask false.
struct Batch {
  LoaderPosition position;              // which batch this is
  std::vector<std::string> ids;         // video ids, in batch order
  std::vector<int64_t> dataset_indices; // positions in the dataset's index
  std::vector<std::string> prompts;     // captions
  torch::Tensor frames;                 // uint8 [B, F, H, W, 3] RGB (undefined when latents are used)
  torch::Tensor latents;                // [B, F', C, H', W'] as stored (undefined unless latents are used)
  torch::Tensor text_embedding;         // [B, L, D] when every clip has one of one shape, else undefined
  torch::Tensor tracks;                 // float32 [B, N, F, 2] (x, y) pixels of the (cropped) frames
  torch::Tensor visibility;             // bool [B, N, F]
  torch::Tensor track_mask;             // bool [B, N]: true for real tracks, false for padding
};

// Builds batch `batch` of `epoch` synchronously: what a worker thread does. Deterministic.
// `uses_latents` is the loader's resolved LatentMode.
Batch load_batch(const ShardReader& reader, const LoaderOptions& options, const std::vector<int64_t>& epoch_indices,
                 int64_t epoch, int64_t batch, bool uses_latents);

// Batches without end, epoch after epoch, starting at `start`. next() may be called from several
// threads; each batch is handed out once, in order.
class Loader {
 public:
  explicit Loader(const LoaderOptions& options, LoaderPosition start = {});
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch; waits for the workers. A worker's error is rethrown here, at its batch.
  Batch next();
  // The position of the batch the next call to next() returns.
  LoaderPosition position() const;
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  int64_t samples_per_epoch() const { return samples_per_epoch_; }  // this rank's, padding included
  bool uses_latents() const { return uses_latents_; }
  const ShardReader& reader() const { return reader_; }

 private:
  struct State;
  // The rank's index list for an epoch (cached: a shuffle of a large dataset is not free).
  std::shared_ptr<const std::vector<int64_t>> indices_for(int64_t epoch);
  Batch build(int64_t sequence);
  void worker_loop();

  LoaderOptions options_;
  ShardReader reader_;
  bool uses_latents_ = false;
  int64_t samples_per_epoch_ = 0;
  int64_t batches_per_epoch_ = 0;
  int64_t first_sequence_ = 0;  // start position as epoch * batches_per_epoch + batch
  std::unique_ptr<State> state_;
};

}  // namespace t4g::data
