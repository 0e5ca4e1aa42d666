// HDF5 shards: the on-disk training set. A dataset is a folder of shard files (several videos
// each, written atomically) plus index.json listing every video, so a reader finds a video by
// id without opening every shard. data/ writes whatever tensors it is given: latents and text
// embeddings are optional and written by whoever has the models (train/).
//
// Schema, version 1 (kShardSchemaVersion; documented for users in docs/data.md):
//   /                     attrs: format = "t4g-shards" (string), schema_version = 1 (int64),
//                                writer = "t4g <version>" (string), recipe = JSON string describing
//                                how the shard was made (used to resume `t4g prepare`),
//                                precomputed = JSON naming the models of the optional latents and
//                                text embeddings ("" or absent: none; `t4g precompute`)
//   /videos/<id>/         one group per video; <id> has no '/'. attrs: fps (float64, 0 = unknown),
//                                stride (int64, source frames per stored frame), height, width,
//                                frames (int64, the stored frame size and count)
//     frames              uint8   [F, H, W, 3] RGB, chunked one frame per chunk, shuffle + gzip
//     tracks              float32 [N, F, 2] (x, y) pixels, TAP-Vid raster convention (0 = left/top
//                                edge of the stored frame), chunked + gzip
//     visibility          bool    [N, F] (uint8 with attr t4g_dtype = "bool"), true = visible
//     prompt              variable-length UTF-8 string (may be empty)
//     source              variable-length UTF-8 string: where the video came from
//     latents             optional: VAE latents of the frames, any float dtype (bf16/f16 as uint16
//                                with attr t4g_dtype), layout [F', C, H', W']
//     text_embedding      optional: text-encoder output for the prompt, [L, D], any float dtype
//   index.json (folder):  {"format": "t4g-shards", "schema_version": 1,
//                          "shards": [{"file", "videos", "bytes"}],
//                          "videos": [{"id", "shard", "frames", "height", "width", "tracks",
//                                      "visible_fraction", "fps", "stride", "prompt", "source",
//                                      "has_latents", "has_text_embedding"}]}
// A reader accepts schema versions <= kShardSchemaVersion and refuses newer ones by name.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace t4g::data {

constexpr int64_t kShardSchemaVersion = 1;
constexpr const char* kShardFormat = "t4g-shards";
constexpr const char* kShardIndexName = "index.json";

// One video as stored in a shard.
struct ShardVideo {
  std::string id;                // unique in the dataset; no '/'
  torch::Tensor frames;          // uint8 [F, H, W, 3] RGB
  torch::Tensor tracks;          // float32 [N, F, 2] pixels
  torch::Tensor visibility;      // bool [N, F], true = visible
  std::string prompt;            // caption (may be empty)
  std::string source;            // provenance: "synthetic:seed=...", a file path, "tapvid:FILE#name"
  double fps = 0;                // frames per second of the stored frames; 0 = unknown
  int64_t stride = 1;            // source frames per stored frame
  torch::Tensor latents;         // optional (undefined = absent)
  torch::Tensor text_embedding;  // optional (undefined = absent)
};

struct ShardWriteOptions {
  int gzip_level = 4;   // deflate level for frames and tracks (0..9; -1 = uncompressed)
  std::string recipe;   // JSON describing how the shard was made, stored in the "recipe" attribute
  std::string precomputed;  // JSON naming the models that made `latents` / `text_embedding` ("" = none),
                            // stored in the "precomputed" attribute (train/precompute.h)
};

// Checks a video against the schema (dtypes, shapes, finite tracks, id); throws t4g::Error
// naming `where` and the tensor.
void validate_shard_video(const ShardVideo& video, const std::string& where);

// Writes `videos` to `path` atomically (temporary name, renamed when complete).
void write_shard(const std::string& path, const std::vector<ShardVideo>& videos, const ShardWriteOptions& options = {});

// One video's entry in index.json.
struct ShardIndexEntry {
  std::string id;
  std::string shard;  // file name relative to the dataset folder
  int64_t frames = 0, height = 0, width = 0, tracks = 0;
  double visible_fraction = 0;  // fraction of true in visibility
  double fps = 0;
  int64_t stride = 1;
  std::string prompt, source;
  bool has_latents = false, has_text_embedding = false;
};

// Header of one shard file: its recipe and its videos' index entries (reads metadata and
// visibility only, never frames). Validates format and schema version.
struct ShardHeader {
  std::string file;    // path as opened
  std::string recipe;  // the "recipe" attribute ("" if absent)
  std::string precomputed;  // the "precomputed" attribute ("" if absent)
  int64_t schema_version = 0;
  std::vector<ShardIndexEntry> videos;
};
ShardHeader read_shard_header(const std::string& path);

// Scans `dir` for *.h5 shard files (sorted by name), checks that ids are unique, and writes
// dir/index.json atomically. Returns the entries in index order.
std::vector<ShardIndexEntry> write_shard_index(const std::string& dir);

// A dataset folder opened through its index.json: random access to videos by id or position.
class ShardReader {
 public:
  explicit ShardReader(const std::string& dir);
  const std::string& dir() const { return dir_; }
  size_t size() const { return entries_.size(); }
  const std::vector<ShardIndexEntry>& entries() const { return entries_; }
  bool contains(const std::string& id) const { return by_id_.count(id) != 0; }
  const ShardIndexEntry& entry(const std::string& id) const;
  // Reads and validates one video (frames, tracks, visibility, strings, optional tensors).
  ShardVideo read(const std::string& id) const;
  ShardVideo read(size_t index) const { return read(entries_.at(index).id); }

 private:
  std::string dir_;
  std::vector<ShardIndexEntry> entries_;
  std::map<std::string, size_t> by_id_;
};

// What `t4g inspect shards DIR` prints.
struct ShardSummary {
  int64_t shards = 0, videos = 0, frames = 0, tracks = 0, bytes = 0;
  double visible_fraction = 0;            // over all points and frames
  std::map<std::string, int64_t> sizes;   // "HxW" -> number of videos
  std::map<int64_t, int64_t> lengths;     // frames per video -> number of videos
  int64_t with_latents = 0, with_text_embedding = 0, with_prompt = 0;
};
ShardSummary summarize_shards(const std::string& dir);
// Several human-readable lines.
std::string format_shard_summary(const std::string& dir, const ShardSummary& summary);

}  // namespace t4g::data
