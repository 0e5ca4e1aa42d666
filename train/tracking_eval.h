// The trainer's periodic tracking evaluation (issue 6 item 7, issue 8 item 5): on held-out videos
// (a TAP-Vid pickle, held-out shards, or synthetic videos from another seed), TAP-Vid metrics of
// (a) DiffTrack's zero-shot query-key tracking at the probe layer and (b) tracking with the
// Track4Gen refiner's features, both at the recipe's timestep. Videos are sharded over ranks
// (rank r takes videos r, r + W, ...) and the per-video metrics averaged over all of them. The
// held-out set comes from train/datasets.h.
#pragma once

#include <map>
#include <string>

#include "common/config.h"
#include "train/trainer.h"

namespace t4g {

class Communicator;

// Metrics named "qk/<tapnet metric>" and "refined/<tapnet metric>" (the latter when the model
// has a refiner), averaged over the held-out videos; plus, with a refiner,
// "refined_softargmax/{pixel_error, pts_within_N, average_pts_within_thresh}": the refined
// features read out as the correspondence loss reads them (the clip encoded with the VAE's
// temporal compression, soft-argmax, latent k <-> frame 4k, tracks visible at frame 0), errors in
// 256x256 raster pixels pooled over all (track, frame) pairs. The zero-shot tracker's protocol
// (each frame its own latent, argmax at cell resolution) is the first; this one measures what
// the refiner is trained for.
std::map<std::string, double> evaluate_model_tracking(const Config& config, TrainingModel& model,
                                                      const std::string& heldout, int rank = 0, int world_size = 1,
                                                      Communicator* comm = nullptr);

// VBench dimensions of eval.vbench_videos videos sampled from the model being trained (empty
// prompt, eval.sample_steps steps, the refiner's residual applied as in training, i.e. what
// `t4g sample` and t4g_diffusers.py give for the export): "vbench/temporal_flickering", plus
// "vbench/subject_consistency" with eval.dino. Videos are split over ranks. Empty when
// eval.vbench_videos is 0.
std::map<std::string, double> evaluate_model_vbench(const Config& config, TrainingModel& model, int rank = 0,
                                                    int world_size = 1, Communicator* comm = nullptr);

// The trainer's hook: evaluate_model_tracking plus evaluate_model_vbench for `config`.
EvaluationHook make_tracking_eval_hook(const Config& config, const std::string& heldout, int rank = 0,
                                       int world_size = 1, Communicator* comm = nullptr);

}  // namespace t4g
