// DiffTrack zero-shot point tracking (research/methods.md 1.2-1.5, 1.10): per-frame VAE latents,
// one transformer forward per chunk at a chosen timestep, query/key of the video tokens at chosen
// layers, per-head softmax cost maps between the anchor frame and every other frame (chunked,
// never the full attention), overlapping chunks averaged, argmax and DiffTrack's bilinear
// read-out to pixels, plus a cycle-consistency occlusion rule so that AJ and OA mean something.
// The read-out is generic: it takes cost maps or per-frame feature maps, so the trainer can score
// the Track4Gen refiner's features with the same code (evaluate_tracking's feature extractor).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "eval/tapvid_metrics.h"
#include "eval/tapvid_score.h"
#include "models/cogvideox_vae.h"
#include "models/model_components.h"

namespace t4g {

// How the frames other than the anchor are grouped into chunks (methods.md 1.4.3).
enum class ChunkMode {
  kFrameInterval,  // --chunk_frame_interval (every released script): frames `interval` apart, start moves by 1
  kStride,         // consecutive frames, start moves by `stride`
};

struct ChunkOptions {
  int64_t chunk_len = 13;                      // frames per chunk, the prepended anchor frame included
  ChunkMode mode = ChunkMode::kFrameInterval;  // the reference's released setting
  int64_t stride = 12;                         // kStride: chunk start step (the reference's --chunk_stride default)
};

// The reference's chunk loop for a video of `num_frames` frames: the non-anchor frames (1..T-1)
// of each chunk, in order; the caller prepends the anchor. Equal to the reference wherever the
// reference runs; where it would index past the video (a first chunk longer than the video)
// the first chunk is clipped to T-1 like every later one. Errors: interval mode on a video
// shorter than chunk_len - 1 frames (the reference divides by zero there), a stride that would
// skip frames (the reference loops forever), fewer than 2 frames.
std::vector<std::vector<int64_t>> difftrack_chunks(int64_t num_frames, const ChunkOptions& options);

// How matches are read out of a cost map and turned into pixels.
struct ReadoutOptions {
  // DiffTrack's read-out (methods.md 1.5): latent coordinate x / stride, normalised with the
  // margin m = W / (64 * stride) as (x / stride) / (w - m) * 2 - 1, sampled with grid_sample
  // (bilinear, align_corners = true, zero padding), times stride. The m term shrinks predictions
  // toward the origin by ~0.7 % (about -4.7 px at x = 700 of 720) and points within ~m cells of
  // the right/bottom edge blend with the zero padding; kept on by default to reproduce the
  // reference's numbers. false: the exact raster mapping of common/pixel_grid.h (cell k's centre
  // is pixel (k + 0.5) * stride), border clamped.
  bool reference_readout = true;
};

// Occlusion prediction.
enum class OcclusionRule {
  kNone,              // everything visible (the reference: its AJ and OA are degenerate)
  kCycleConsistency,  // track back from frame k to the anchor with the reverse argmax; occluded when
                      // the round trip misses the query by more than threshold_cells
};

struct OcclusionOptions {
  OcclusionRule rule = OcclusionRule::kCycleConsistency;
  double threshold_cells = 1.5;  // round-trip error allowed, in cost-map cells (16 px at 2B size)
};

struct MatchOptions {
  ReadoutOptions readout;
  OcclusionOptions occlusion;
};

// Positions in one target frame of queries from the anchor frame.
struct FrameMatches {
  torch::Tensor positions;  // float32 [Q, 2] (x, y) pixels
  torch::Tensor occluded;   // bool [Q]
};

// For every source cell (row-major over grid_height x grid_width), the (column, row) of the
// target cell with the highest cost: cost [target cells, source cells] -> float32 [2, h, w].
torch::Tensor argmax_match_map(const torch::Tensor& cost, int64_t grid_height, int64_t grid_width);

// Bilinear read-out of a match map [2, h, w] (cell units) at pixel points [Q, 2] (x, y) of an
// image_height x image_width frame -> [Q, 2] pixels (ReadoutOptions says how).
torch::Tensor read_out_matches(const torch::Tensor& match_map, const torch::Tensor& points, int64_t image_height,
                               int64_t image_width, const ReadoutOptions& options);

// Matches of anchor-frame queries [Q, 2] (x, y pixels) through one cost map C [target cells,
// source cells] on a grid_height x grid_width grid over image_height x image_width pixels:
// argmax + read-out, and the occlusion rule (its reverse map is the argmax over sources of C).
// A cost map holding NaN or infinity is an error naming `what`.
FrameMatches match_through_cost_map(const torch::Tensor& cost, int64_t grid_height, int64_t grid_width,
                                    int64_t image_height, int64_t image_width, const torch::Tensor& query_xy,
                                    const MatchOptions& options, const std::string& what = "cost map");

// Point tracks of a set of queries.
struct PointTracks {
  torch::Tensor tracks;    // float32 [Q, T, 2] (x, y) pixels
  torch::Tensor occluded;  // bool [Q, T]
};

// Queries [Q, 3] as (t, y, x) (tapnet's order; t rounded to a frame) -> for each anchor frame the
// indices of its queries, in query order.
std::map<int64_t, std::vector<int64_t>> queries_by_frame(const torch::Tensor& query_points, int64_t num_frames);

// Tracking with per-frame feature maps [T, C, h, w] of frames image_height x image_width: cost
// C[j, i] = cosine(feature_k(j), feature_anchor(i)), then match_through_cost_map for every frame.
// The query frame's prediction is the query itself (visible). NaN features are an error.
PointTracks track_with_features(const torch::Tensor& features, const torch::Tensor& query_points,
                                int64_t image_height, int64_t image_width, const MatchOptions& options);

// A per-frame feature extractor for tracking: uint8 frames [T, H, W, 3] at the tracker's input
// size -> features [T, C, h, w] (any stride; h and w must divide H and W). The trainer passes one
// that runs its refiner; the tracker then skips the VAE and the attention probes.
using FeatureExtractor = std::function<torch::Tensor(const torch::Tensor& frames)>;

// DiffTrack's procedure and its options; the defaults reproduce the released 2B/5B scripts
// except where noted.
struct ZeroShotTrackerOptions {
  std::vector<int64_t> layers = {17};         // blocks whose Q/K are the descriptors (several: concatenated along channels)
  std::vector<int64_t> timestep_indices = {49};  // indices into set_timesteps(num_steps) (several: one forward each, concatenated)
  int64_t num_steps = 50;                     // inference steps the timestep grid is made for
  ChunkOptions chunks;                        // chunking of the frames after the anchor
  bool average_overlapping = true;            // average a frame's maps over all chunks holding it (else the first wins)
  int64_t height = 480;                       // model input height (multiple of 16)
  int64_t width = 720;                        // model input width (multiple of 16)
  bool resize_via_256 = true;                 // resize to 256x256 first, as the reference does (loses detail)
  int64_t max_frames = 0;                     // use only the first N frames (the reference's video_max_len); 0 = all
  LatentSampling latent_sampling = LatentSampling::kMean;  // the reference draws a posterior sample (kSample)
  uint64_t seed = 42;                         // posterior samples and add_noise draws (per frame / per chunk streams)
  bool vae_tiling = true;                     // tiled VAE encode, as the reference (changes latents slightly)
  int64_t vae_batch = 4;                      // frames per VAE call (each is still its own 1-frame video)
  bool add_noise = false;                     // noise the clean latents to the timestep (the reference feeds them clean)
  double softmax_scale = 0.0;                 // 0 = the reference's 1/sqrt(heads) (not 1/sqrt(head_dim): methods.md 1.10)
  bool bidirectional = true;                  // average the anchor->k and k->anchor softmaxes (the reference); false = anchor->k only
  int64_t query_chunk = 2048;                 // cost-map query rows per matmul (bounds the working set)
  MatchOptions match;                         // read-out and occlusion
  torch::Tensor text_embedding;               // [S, D] or [1, S, D] embedding of the empty prompt; undefined = zeros
};

// Tracks queries [Q, 3] (t, y, x in pixels of `frames`) through uint8 frames [T, H, W, 3] of any
// size with the model's attention (or the extractor's features when one is given). Per anchor
// frame (the query frames present; DiffTrack itself only has frame 0) the other frames are
// chunked as the reference chunks frames 1..T-1 and the anchor is prepended to each chunk. Each
// distinct frame is VAE-encoded once (as its own 1-frame video) and reused by every chunk; the
// transformer runs batch 1 (the reference's CFG batch of two identical empty prompts computes the
// same Q/K twice) and stops after the last probed layer. Returns tracks in pixels of `frames`.
// Errors: layer or timestep index out of range, a video too short for the chunking, NaN maps.
PointTracks track_video(ModelComponents& components, const torch::Tensor& frames, const torch::Tensor& query_points,
                        const ZeroShotTrackerOptions& options, const FeatureExtractor& extractor = nullptr);

// Frames [T, H, W, 3] uint8 -> float32 [T, height, width, 3] in [0, 255], bilinear
// (align_corners = false, no antialiasing) through 256x256 first when via_256 (the reference).
torch::Tensor resize_frames_for_tracking(const torch::Tensor& frames, int64_t height, int64_t width, bool via_256);

// One evaluation video with ground truth in t4g's conventions.
struct TrackingVideo {
  std::string name;          // group name in PRED.h5 / METRICS.json
  torch::Tensor frames;      // uint8 [T, H, W, 3]
  torch::Tensor tracks;      // float32 [N, T, 2] (x, y) pixels of frames
  torch::Tensor visibility;  // bool [N, T]
};

// A lazily loaded list of evaluation videos (TAP-Vid pickles and shard folders are large).
struct TrackingVideoSource {
  size_t count = 0;
  std::function<TrackingVideo(size_t)> load;
};

// The videos of a shard folder (data::ShardReader), in index order, at most max_videos (0 = all).
TrackingVideoSource tracking_videos_from_shards(const std::string& dir, int64_t max_videos = 0);
// The videos of a TAP-Vid pickle, named as PRED.h5 names them (tapvid_group_name).
TrackingVideoSource tracking_videos_from_tapvid(const std::string& path, int64_t max_videos = 0);

struct TrackingEvalOptions {
  ZeroShotTrackerOptions tracker;
  QueryMode query_mode = QueryMode::kFirst;  // tapnet's protocol (tapvid_metrics.h)
  int64_t query_stride = 5;                  // 'strided' mode
  bool frame0_queries_only = false;          // DiffTrack's protocol: only queries at frame 0 (its table's numbers)
  bool show_progress = true;                 // a progress bar over videos
};

// One video's evaluation.
struct TrackingVideoResult {
  std::string name;
  TapVidQueries queries;                 // in 256x256 pixels, after the frame-0 filter when asked
  TapVidPrediction prediction;           // tracks in 256x256 pixels (PRED.h5 contents)
  std::map<std::string, double> metrics; // tapnet's names
  double seconds = 0;                    // tracking time
};

// Called after each video with the video (frames at their stored size) and its result: lets a
// caller draw or save per-video output without evaluate_tracking keeping every video in memory.
using TrackingVideoCallback = std::function<void(const TrackingVideo& video, const TrackingVideoResult& result)>;

struct TrackingEvaluation {
  std::vector<TrackingVideoResult> videos;
  std::map<std::string, double> mean;  // unweighted mean over videos (NaN if any video's is NaN)
};

// Tracks every video of `source` and scores it with TAP-Vid's metrics at 256x256 (ground truth
// and predictions rescaled by 256/W, 256/H; queries sampled per query_mode). The trainer calls
// this every N steps on a held-out set, optionally with its refiner as `extractor`.
TrackingEvaluation evaluate_tracking(ModelComponents& components, const TrackingVideoSource& source,
                                     const TrackingEvalOptions& options, const FeatureExtractor& extractor = nullptr,
                                     const TrackingVideoCallback& on_video = nullptr);

}  // namespace t4g
