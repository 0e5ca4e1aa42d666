// DiffTrack's analysis (research/methods.md 1.7) over a grid of layers x timesteps, on videos with
// ground-truth tracks (the shards' exact synthetic tracks, flow tracks, or TAP-Vid): matching
// accuracy of query-key descriptors and of intermediate hidden features, the confidence score and
// the attention score, their harmonic mean, and the best (layer, timestep). One transformer
// forward per (video, timestep) captures every analysed layer at once.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/json.h"
#include "eval/zero_shot_tracker.h"
#include "models/model_components.h"

namespace t4g {

struct AnalysisOptions {
  std::vector<int64_t> layers;            // blocks analysed; empty = every block
  std::vector<int64_t> timestep_indices;  // indices into set_timesteps(num_steps); empty = all of them
  int64_t num_steps = 50;                 // the timestep grid
  bool add_noise = true;                  // noise the clean latents to each timestep (analyze_real.py); false = clean
  uint64_t seed = 42;                     // noise draws (one stream per video and timestep)
  int64_t height = 480;                   // model input height (frames are resized to it)
  int64_t width = 720;                    // model input width
  int64_t frames = 0;                     // 4k+1 frames per video (0 = the most each video allows); shorter videos are skipped
  double accuracy_threshold_px = 8.0;     // a match is correct within this distance, in model-input pixels (the reference: 8 at 720x480)
  bool hidden_features = true;            // also score the blocks' output hidden states (cosine matching)
  bool reference_readout = true;          // DiffTrack's read-out with its margin quirk (else the exact raster mapping)
  int64_t query_chunk = 64;               // query points per joint-attention softmax (confidence/attention scores)
  int64_t max_videos = 0;                 // analyse only the first N videos (0 = all)
  torch::Tensor text_embedding;           // [S, D] empty-prompt embedding; undefined = zeros
  bool show_progress = true;
};

// One (timestep, layer) cell, averaged over videos. Accuracies are percentages; scores are in [0, 1].
struct AnalysisCell {
  int64_t timestep_index = 0;
  int64_t timestep = 0;
  int64_t layer = 0;
  double qk_accuracy = 0;      // query-key matching accuracy (% of visible points within the threshold)
  double hidden_accuracy = 0;  // hidden-state matching accuracy (NaN when not computed)
  double confidence_text = 0, confidence_self = 0, confidence_cross = 0;  // max attention to text / own frame / other frames
  double attention_text = 0, attention_self = 0, attention_cross = 0;     // attention mass on each (sums to 1)
  double harmonic_mean = 0;    // of min-max normalised qk_accuracy, confidence_cross, attention_cross (utils/harmonic_mean.py)
};

struct AnalysisResult {
  std::vector<AnalysisCell> cells;    // timestep-major, then layer
  std::vector<int64_t> layers;        // the grid's columns
  std::vector<int64_t> timestep_indices;  // the grid's rows
  int64_t videos = 0;                 // videos analysed (skipped ones excluded)
  size_t best = 0;                    // index of the cell with the highest harmonic mean
  size_t best_accuracy = 0;           // index of the cell with the highest qk_accuracy
};

// Runs the analysis. Errors: layer or timestep index out of range, videos without tracks, NaN.
AnalysisResult analyze_difftrack(ModelComponents& components, const TrackingVideoSource& source,
                                 const AnalysisOptions& options);

// The table as CSV: one header line, one line per cell.
std::string analysis_csv(const AnalysisResult& result);

// A heatmap of one column of the table (rows = timestep indices top to bottom, columns = layers
// left to right, `cell` pixels per entry, dark blue = the minimum, yellow = the maximum; NaN grey)
// as uint8 [rows * cell, cols * cell, 3].
torch::Tensor analysis_heatmap(const AnalysisResult& result, double AnalysisCell::*metric, int64_t cell = 16);

// Writes ANALYSIS.csv, ANALYSIS.json (grid, best cells) and heatmap_{qk_accuracy,hidden_accuracy,
// harmonic_mean}.png into `dir`; returns the JSON document.
Json write_analysis(const std::string& dir, const AnalysisResult& result);

}  // namespace t4g
