// Synthetic training and held-out sets (see datasets.h).
#include "train/datasets.h"

#include "common/fs.h"
#include "common/rng.h"
#include "data/prepare.h"

namespace t4g {
namespace {

constexpr uint64_t kStreamHeldOut = 5;  // seed stream of the held-out videos (the trainer's streams are 1-4 and 6)

void write_synthetic(const Config& c, const std::string& dir, int64_t videos, uint64_t seed) {
  data::PrepareOptions prep;
  prep.out = dir;
  prep.synthetic = videos;
  prep.seed = seed;
  prep.synthetic_options.frames = c.data.frames;
  prep.synthetic_options.height = c.data.height;
  prep.synthetic_options.width = c.data.width;
  prep.synthetic_options.sprites = c.data.synthetic.sprites;
  prep.synthetic_options.grid_step = c.data.synthetic.grid_step;
  prep.videos_per_shard = 4;
  data::prepare_dataset(prep);
}

}  // namespace

std::string prepare_training_set(const Config& c, bool main_rank) {
  if (!c.data.shards.empty()) return c.data.shards;
  const std::string dir = path_join(c.run.out_dir, "data/train");
  if (main_rank) write_synthetic(c, dir, c.data.synthetic.videos, static_cast<uint64_t>(c.run.seed));
  return dir;
}

std::string prepare_heldout_set(const Config& c, bool main_rank) {
  if (!c.eval.data.empty()) return c.eval.data;
  const std::string dir = path_join(c.run.out_dir, "data/heldout");
  if (main_rank) write_synthetic(c, dir, c.eval.videos, derive_seed(static_cast<uint64_t>(c.run.seed), {kStreamHeldOut}));
  return dir;
}

}  // namespace t4g
