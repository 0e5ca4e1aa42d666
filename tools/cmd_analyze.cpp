// t4g analyze: DiffTrack's analysis over a grid of layers x timesteps (matching accuracy of
// query-key and hidden features, confidence and attention scores) -> CSV, heatmaps, best cell.
#include <iostream>

#include "models/text_encoder.h"
#include "eval/difftrack_analysis.h"
#include "eval/track_run.h"
#include "tools/commands.h"
#include "tools/recipe_flags.h"

namespace t4g::tools {

void register_analyze(CLI::App& app) {
  static RecipeFlags recipe;
  static ModelFlags model;
  static AnalysisOptions o;
  static std::string data, out, readout = "reference", text_embedding;
  static int64_t height = 0, width = 0, seed = 42;
  static bool clean = false, no_hidden = false;
  CLI::App* analyze = app.add_subcommand(
      "analyze", "DiffTrack analysis: per layer x timestep matching accuracy, confidence and attention scores");
  add_recipe_flags(analyze, recipe);
  add_model_flags(analyze, model, "Size, dtype and device default to the model's own");
  analyze->add_option("--data", data, "shard folder (index.json) or TAP-Vid .pkl with ground-truth tracks")->required();
  analyze->add_option("--out", out, "output folder: ANALYSIS.csv, ANALYSIS.json, heatmap_*.png")->required();
  analyze->add_option("--layers", o.layers, "blocks to analyse (default: all)");
  analyze->add_option("--timestep-indices", o.timestep_indices, "indices into the --steps grid (default: all)");
  analyze->add_option("--steps", o.num_steps, "inference steps of the timestep grid")->capture_default_str();
  analyze->add_option("--frames", o.frames, "4k+1 frames per video (0 = as many as each video allows)");
  analyze->add_option("--height", height, "model input height (default: the model's own, 480 for CogVideoX 1.0)");
  analyze->add_option("--width", width, "model input width (default: the model's own, 720 for CogVideoX 1.0)");
  analyze->add_option("--threshold", o.accuracy_threshold_px, "match radius in model-input pixels")->capture_default_str();
  analyze->add_option("--readout", readout, "reference | exact")->check(CLI::IsMember({"reference", "exact"}));
  analyze->add_flag("--clean", clean, "feed clean latents at every timestep (default: noised to it, as analyze_real.py)");
  analyze->add_flag("--no-hidden", no_hidden, "skip the hidden-state matching");
  analyze->add_option("--seed", seed, "noise seed")->capture_default_str();
  analyze->add_option("--max-videos", o.max_videos, "analyse only the first N videos (0 = all)");
  analyze->add_option("--text-embedding", text_embedding,
                      "safetensors file with the empty prompt's T5 embedding; default: T5(\"\") from the model folder's text encoder, zeros without one");
  analyze->callback([] {
    Config config = load_model_recipe(recipe, model);
    o.reference_readout = readout == "reference";
    o.add_noise = !clean;
    o.hidden_features = !no_hidden;
    o.seed = static_cast<uint64_t>(seed);
    const TrackInputKind kind = detect_track_input(data);
    T4G_CHECK(kind != TrackInputKind::kVideo, "t4g analyze needs ground-truth tracks: --data must be a shard folder or a TAP-Vid .pkl (got ",
              data, ")");
    const TrackingVideoSource source =
        kind == TrackInputKind::kTapVid ? tracking_videos_from_tapvid(data, o.max_videos) : tracking_videos_from_shards(data, o.max_videos);
    ModelComponents components =
        load_model_components(config.model, static_cast<uint64_t>(config.run.seed), component_request(model));
    const ModelSampleSize own = model_sample_size(components);
    o.height = height > 0 ? height : own.height;
    o.width = width > 0 ? width : own.width;
    warn_if_untrained_size(components, 0, o.height, o.width, "analyze");
    o.text_embedding = empty_prompt_embedding(components, text_embedding);
    const AnalysisResult result = analyze_difftrack(components, source, o);
    const Json doc = write_analysis(out, result);
    std::cout << "best (harmonic mean): layer " << doc["best_harmonic_mean"]["layer"] << ", timestep index "
              << doc["best_harmonic_mean"]["timestep_index"] << "; best query-key accuracy: layer "
              << doc["best_qk_accuracy"]["layer"] << ", timestep index " << doc["best_qk_accuracy"]["timestep_index"]
              << " (" << doc["best_qk_accuracy"]["qk_accuracy"] << " %)\n";
  });
}

}  // namespace t4g::tools
