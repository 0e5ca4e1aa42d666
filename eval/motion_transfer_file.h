// The library side of `t4g transfer`: load the recipe's model, read and encode the reference video
// (a video file through OpenCV, an HDF5 file with dataset `frames` such as `t4g sample` writes, or
// SHARDS_DIR:ID), read the prompt embeddings, run the guided generation (eval/motion_transfer.h;
// KV injection included, on by default as in DiTFlow's code) and write the video (as `t4g sample`
// does), a JSON report with the AMF loss of every optimiser iteration (and, where OpenCV's optical
// flow is present, the result's Motion Fidelity against the reference from flow-chained tracks),
// and for target posemb the optimised positional embeddings.
#pragma once

#include <string>
#include <vector>

#include "common/config.h"
#include "eval/motion_transfer.h"

namespace t4g {

// How `t4g transfer` runs.
struct TransferFileOptions {
  std::string reference;  // VIDEO file, FRAMES.h5 (dataset frames [F, H, W, 3]) or SHARDS_DIR:ID
  std::string
      prompt_embeds;   // safetensors: prompt_embeds, negative_prompt_embeds, empty_prompt_embeds; "" = tiny's zeros
  std::string out;     // output video: .mp4 (needs OpenCV) or .h5
  std::string report;  // JSON report ("" = <out without extension>.json)
  std::string save_posemb;  // target posemb: where the optimised tables go ("" = <out stem>.posemb.safetensors)
  std::string load_posemb;  // zero-shot: reuse these tables (implies target posemb), no optimisation; the reference
                            // is still needed for KV injection (transfer.injection_blocks), not without it
  double fps = 8;   // frame rate of an mp4
  bool dynamic_cfg_auto = false;   // true: dynamic CFG on iff the model uses RoPE (DiTFlow: 5B yes, 2B no)
  MotionTransferOptions transfer;  // the guided generation (frames 0: from the reference, see below)
  ComponentRequest components;     // what to load (components.refiner = false: a trained model's backbone alone)
};

// What was written.
struct TransferFileReport {
  std::vector<std::string> files;  // video, report, positional embeddings
  double first_loss = 0;           // AMF loss of the first iteration (0 without optimisation)
  double last_loss = 0;            // ... of the last iteration
  double seconds = 0;              // denoising (guidance included) and decoding
  double motion_fidelity = 0;      // against the reference, from flow tracks (NaN-free form); 0 without OpenCV
};

// Reads the reference frames named by `spec` (see TransferFileOptions::reference): uint8 [F, H, W, 3].
// Errors name the file (and the id for shards).
torch::Tensor read_reference_frames(const std::string& spec);

// The first `frames` reference frames, resized (bilinear, antialiased; the reference stretches
// with PIL) to height x width when their size differs. An error names the reference when it has
// fewer than `frames` frames.
torch::Tensor fit_reference_frames(const torch::Tensor& frames, int64_t count, int64_t height, int64_t width,
                                   const std::string& spec);

// The frame count a transfer uses when none is given: the largest 4k+1 <= the reference's frame
// count, at most the model's sample_frames (a 24-frame reference -> 21 frames, 6 latent frames,
// as DiTFlow's 24-frame input).
int64_t default_transfer_frames(int64_t reference_frames, const CogVideoXTransformerConfig& config);

// Loads recipe.model, runs the transfer, writes the files.
TransferFileReport transfer_to_file(const Config& recipe, const TransferFileOptions& options);

}  // namespace t4g
