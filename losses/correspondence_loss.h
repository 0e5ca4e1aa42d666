// The Track4Gen correspondence loss (issue 6 item 2, research/methods.md 2.3): for query points of
// trajectories, the L2-normalised refined feature bilinearly sampled at the query is compared by
// cosine similarity with every position of each target frame; a softmax with a temperature and a
// soft-argmax give a predicted position, and a robust distance to the ground truth (where the
// query and the target are visible) is averaged over the valid (point, target frame) pairs.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace t4g {

// Which latent frame a query point is taken from.
enum class QueryFrameRule {
  kFirst,          // latent frame 0 (points not visible there are not queried)
  kRandomVisible,  // a uniformly drawn latent frame where the point is visible
};

// Which latent frames a query is compared against.
enum class TargetFrameRule {
  kAllOthers,     // every latent frame except the query's
  kRandomSubset,  // num_target_frames distinct frames except the query's, drawn per point
};

// The robust distance, applied to each coordinate of the error and summed over x and y (torch's
// huber_loss / l1_loss / mse_loss with reduction "none", summed over the last dimension).
enum class RobustLoss { kHuber, kL1, kL2 };

// Options of the correspondence loss. The constants are not from the paper (methods.md 2.2 lists
// them as unverified): they are this implementation's defaults.
struct CorrespondenceLossOptions {
  int64_t num_query_points = 256;                               // query points drawn per clip (all eligible when fewer)
  QueryFrameRule query_frame = QueryFrameRule::kFirst;          // where queries come from
  TargetFrameRule target_frames = TargetFrameRule::kAllOthers;  // what they are compared against
  int64_t num_target_frames = 4;                                // K of kRandomSubset
  double temperature = 0.05;                                    // softmax(cosine / temperature)
  RobustLoss loss = RobustLoss::kHuber;                         // robust distance
  double huber_delta = 1.0;                                     // Huber's delta, in feature cells (see below)
  int64_t stride = 16;                                          // pixels per feature cell (VAE 8 x patch 2)
  int64_t temporal_compression = 4;                             // video frames per latent frame (1 = one by one)

  // Throws t4g::Error naming the option when a value is out of range.
  void validate() const;
};

// Queries drawn from a batch of trajectories, mapped to latent frames (latent_frame_to_pixel_frame
// of common/pixel_grid.h) and ready for the loss. Q = min(num_query_points, N); a clip with fewer
// eligible tracks is padded with point_index -1 and no valid pair.
struct CorrespondenceQueries {
  torch::Tensor point_index;    // int64 [B, Q], index into the tracks' N; -1 = padding
  torch::Tensor query_frame;    // int64 [B, Q], latent frame of the query (0 for padding)
  torch::Tensor query_xy;       // float32 [B, Q, 2], raster pixels (0 for padding)
  torch::Tensor target_xy;      // float32 [B, Q, F, 2], ground truth at each latent frame's video frame
                                // (0 where the pair is not valid)
  torch::Tensor valid;          // bool [B, Q, F]: target frame chosen and visible, query visible, real track
  int64_t candidate_pairs = 0;  // (query, target frame) pairs of the real queries, valid or not
};

// Draws the queries of a batch. tracks float [B, N, F_pix, 2] (x, y raster pixels of the video),
// visibility bool [B, N, F_pix], track_mask bool [B, N] (data/loader.h Batch); latent_frames = F
// of the feature map. Latent frame k reads video frame latent_frame_to_pixel_frame(k,
// temporal_compression), which must exist. Every random choice comes from `generator` (CPU).
// Bad shapes are one t4g::Error naming the tensor.
CorrespondenceQueries sample_correspondence_queries(const torch::Tensor& tracks, const torch::Tensor& visibility,
                                                    const torch::Tensor& track_mask, int64_t latent_frames,
                                                    const CorrespondenceLossOptions& options,
                                                    torch::Generator generator);

// The loss and what to log.
struct CorrespondenceResult {
  torch::Tensor loss;              // scalar; 0 with a defined (zero) gradient when no pair is valid
  torch::Tensor predicted_xy;      // [B, Q, F, 2] soft-argmax positions in raster pixels
  torch::Tensor mean_pixel_error;  // 0-d, detached: mean Euclidean error (pixels) over valid pairs; 0 if none
  int64_t valid_pairs = 0;         // pairs averaged in the loss
  double fraction_valid = 0.0;     // valid_pairs / candidate_pairs (0 when there is no candidate)
};

// The loss of given queries on features [B, F, C, h, w] (the refined map, h = H / stride): the
// feature map is L2-normalised over C, sampled at the query with grid_sample (bilinear,
// align_corners=false, border) through raster_to_grid_sample, the sample re-normalised (so the
// dot products are cosines), softmax over the h*w positions of every frame at `temperature`,
// soft-argmax over the cell centres ((j + 0.5) * stride), and the robust distance of
// (predicted - ground truth) / stride, i.e. in feature cells so that its scale does not depend
// on the stride, averaged over valid pairs. Computed in the features' dtype.
CorrespondenceResult correspondence_loss(const torch::Tensor& features, const CorrespondenceQueries& queries,
                                         const CorrespondenceLossOptions& options);

// sample_correspondence_queries then the loss above.
CorrespondenceResult correspondence_loss(const torch::Tensor& features, const torch::Tensor& tracks,
                                         const torch::Tensor& visibility, const torch::Tensor& track_mask,
                                         const CorrespondenceLossOptions& options, torch::Generator generator);

}  // namespace t4g
