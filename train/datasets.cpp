// Synthetic training and held-out sets (see datasets.h).
#include "train/datasets.h"

#include "common/fs.h"
#include "common/rng.h"
#include "common/error.h"
#include "data/prepare.h"
#include "data/shards.h"

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

DataFit check_data_fit(const Config& c, const std::string& shards) {
  const data::ShardReader reader(shards);
  DataFit fit;
  const std::string clip = t4g::str(c.data.frames, " x ", c.data.height, " x ", c.data.width);
  for (const data::ShardIndexEntry& e : reader.entries()) {
    ErrorContext ctx;
    ctx.file = shards;
    ctx.key = e.id;
    ctx.expected = "at least " + clip + " (data.frames x data.height x data.width)";
    ctx.got = t4g::str(e.frames, " x ", e.height, " x ", e.width);
    T4G_CHECK_CTX(e.frames >= c.data.frames && e.height >= c.data.height && e.width >= c.data.width, ctx,
                  "a training video is shorter or smaller than the recipe's clips (prepare it at least that large, "
                  "or set data.* to its size)");
    const bool latents = e.has_latents && c.data.latents != "never";
    if (latents) {
      // Precomputed latents cover the whole video: no window can be cut from them.
      ctx.key = "data.frames";
      ctx.expected = t4g::str(c.data.frames, " frames (data.frames)");
      ctx.got = t4g::str(e.frames, " frames with precomputed latents in video ", e.id);
      T4G_CHECK_CTX(e.frames == c.data.frames, ctx,
                    "precomputed latents are of the whole video: set data.frames to its length, or data.latents=never");
    }
    if (e.height == c.data.height && e.width == c.data.width) continue;
    ctx.key = "data.fit";
    ctx.expected = t4g::str(c.data.height, " x ", c.data.width, " frames (data.height x data.width)");
    ctx.got = t4g::str(e.height, " x ", e.width, " in video ", e.id);
    T4G_CHECK_CTX(c.data.fit == "crop", ctx,
                  "the shards' frames are larger than the recipe's: prepare them at the recipe's size (`t4g prepare "
                  "--video-height H --video-width W`), set data.height/width to theirs, or set data.fit=crop to train "
                  "on random crops");
    ctx.got = t4g::str("precomputed latents in video ", e.id);
    T4G_CHECK_CTX(!latents, ctx, "data.fit=crop cannot crop precomputed latents: set data.latents=never or prepare "
                                 "the shards at the recipe's size");
    fit.crop = true;
  }
  return fit;
}

}  // namespace t4g
