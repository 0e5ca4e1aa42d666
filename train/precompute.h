// Precomputed latents and text embeddings in the shards (the last step of docs/architecture.md's
// flow 1, which lives here because it needs the models; data/ only stores tensors). Every video's
// frames go through the model's VAE as the trainer encodes clips (posterior mean x scaling factor,
// [F', C, h, w], encode_frames_to_latents) and its prompt through the model's T5 ([L, D], the text
// length the transformer takes), in the model's compute dtype; both are written back into the
// video's shard (each shard rewritten atomically) with the models' identity in the shard's
// "precomputed" attribute. A run on these shards then skips the VAE and T5 for every step
// (data.latents auto uses latents when every video has them).
//
// Resumable: a shard whose attribute already names these models is skipped, so an interrupted
// run continues where it stopped. Under t4grun (or torchrun) rank r takes shard files r, r + W, ...
// and rank 0 rewrites index.json once every rank is done.
#pragma once

#include <cstdint>
#include <string>

#include "common/config.h"

namespace t4g {

struct PrecomputeOptions {
  std::string shards;  // dataset folder (index.json)
  bool force = false;  // recompute shards that already hold these models' tensors
};

struct PrecomputeReport {
  int64_t shards = 0;          // shard files in the dataset
  int64_t written = 0;         // rewritten by this rank
  int64_t skipped = 0;         // already precomputed with these models (this rank's share)
  int64_t videos = 0;          // videos encoded by this rank
  bool text = false;           // text embeddings were written (the model has a text encoder)
  double seconds = 0;          // this rank's encoding and writing
};

// Encodes the recipe's model (model.*; run.seed for random tiny / preset bases, as the trainer
// seeds them) into `options.shards`. Errors: a video whose frame count is not 4k+1 (the VAE's),
// a dataset folder without index.json, a model folder without a VAE.
PrecomputeReport precompute_shards(const Config& recipe, const PrecomputeOptions& options);

}  // namespace t4g
