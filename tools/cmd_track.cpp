// t4g track: DiffTrack zero-shot point tracking with a CogVideoX model (or the tiny recipe) on a
// TAP-Vid pickle, a shard folder or one video; writes PRED.h5, METRICS.json and PNG track strips.
#include "common/log.h"
#include "models/text_encoder.h"
#include "eval/track_run.h"
#include "tools/commands.h"
#include "tools/recipe_flags.h"

namespace t4g::tools {

void register_track(CLI::App& app) {
  static RecipeFlags recipe;
  static ModelFlags model;
  static TrackRunOptions o;
  static std::vector<int64_t> layers;
  static std::string query_mode = "first", chunk_mode = "interval", readout = "reference",
                     occlusion = "cycle", latent = "mean", text_embedding;
  static int64_t height = 0, width = 0, seed = 42;
  static bool one_direction = false, first_chunk_wins = false, no_resize_256 = false, no_vae_tiling = false,
              no_strips = false;
  ZeroShotTrackerOptions& t = o.eval.tracker;  // flags bind to the static options
  CLI::App* track = app.add_subcommand(
      "track", "Zero-shot point tracking from the attention of a video diffusion transformer (DiffTrack)");
  add_recipe_flags(track, recipe);
  add_model_flags(track, model, "Size, dtype and device default to the model's own");
  track->add_option("--data", o.data, "TAP-Vid .pkl, shard folder (index.json) or a video file / frame folder")
      ->required();
  track->add_option("--out", o.out, "output folder: PRED.h5, METRICS.json, strips/*.png")->required();
  track->add_option("--layer", layers,
                    "transformer block(s) whose query/key are matched (repeat to concatenate); default: DiffTrack's "
                    "17, or the last block of a smaller model");
  track->add_option("--timestep-index", t.timestep_indices, "index into the --steps timestep grid (repeatable)")
      ->capture_default_str();
  track->add_option("--steps", t.num_steps, "inference steps of the timestep grid")->capture_default_str();
  track->add_option("--chunk-len", t.chunks.chunk_len,
                    "frames per chunk, the prepended query frame included; default: the model's latent frames "
                    "(13 for 49-frame models), at most the video's frames");
  track->add_option("--chunk-mode", chunk_mode, "interval (frames spread over the video) | stride (consecutive)")
      ->check(CLI::IsMember({"interval", "stride"}))
      ->capture_default_str();
  track->add_option("--chunk-stride", t.chunks.stride, "stride mode: chunk start step")->capture_default_str();
  track->add_flag("--first-chunk-wins", first_chunk_wins, "use a frame's first chunk instead of averaging all");
  track->add_option("--query-mode", query_mode, "TAP-Vid query protocol: first | strided")
      ->check(CLI::IsMember({"first", "strided"}))
      ->capture_default_str();
  track->add_option("--query-stride", o.eval.query_stride, "strided mode: query frame stride")->capture_default_str();
  track->add_flag("--frame0-queries", o.eval.frame0_queries_only,
                  "DiffTrack's protocol: only queries at frame 0 (PRED.h5 then holds those only)");
  track->add_option("--max-videos", o.max_videos, "track only the first N videos (0 = all)");
  track->add_option("--max-frames", t.max_frames, "use only the first N frames of each video (0 = all)");
  track->add_option("--height", height, "model input height (default: the model's own, 480 for CogVideoX 1.0)");
  track->add_option("--width", width, "model input width (default: the model's own, 720 for CogVideoX 1.0)");
  track->add_flag("--no-resize-256", no_resize_256, "resize straight to the model size (the reference goes via 256x256)");
  track->add_option("--readout", readout, "reference (DiffTrack's grid_sample with its margin) | exact (raster mapping)")
      ->check(CLI::IsMember({"reference", "exact"}))
      ->capture_default_str();
  track->add_option("--occlusion", occlusion, "cycle (round-trip consistency) | none (all visible, as DiffTrack)")
      ->check(CLI::IsMember({"cycle", "none"}))
      ->capture_default_str();
  track->add_option("--occlusion-threshold", t.match.occlusion.threshold_cells, "round-trip miss allowed, in latent cells")
      ->capture_default_str();
  track->add_option("--latent", latent, "mean | sample (the reference samples the VAE posterior, seed 42)")
      ->check(CLI::IsMember({"mean", "sample"}))
      ->capture_default_str();
  track->add_option("--seed", seed, "seed of posterior samples and --add-noise")->capture_default_str();
  track->add_flag("--no-vae-tiling", no_vae_tiling,
                  "encode frames whole (the reference tiles; frames its tiles do not fit are encoded whole anyway)");
  track->add_option("--vae-batch", t.vae_batch, "frames per VAE call")->capture_default_str();
  track->add_flag("--add-noise", t.add_noise, "noise the latents to the timestep (the reference feeds them clean)");
  track->add_option("--softmax-scale", t.softmax_scale, "cost softmax scale (0 = the reference's 1/sqrt(heads))")
      ->capture_default_str();
  track->add_flag("--one-direction", one_direction, "query frame -> frame k only (the reference averages both)");
  track->add_option("--text-embedding", text_embedding,
                    "safetensors file with the empty prompt's T5 embedding (tensor 'text_embedding' or the only one); default: T5(\"\") from the model folder's text encoder, zeros without one");
  track->add_option("--grid", o.grid, "video input: grid x grid queries at frame 0")->capture_default_str();
  track->add_option("--video-frames", o.video_frames, "video input: frames to read (0 = all)")->capture_default_str();
  track->add_flag("--no-strips", no_strips, "do not write strips/*.png");
  track->callback([] {
    ZeroShotTrackerOptions& t = o.eval.tracker;
    Config config = load_model_recipe(recipe, model);
    ModelComponents components =
        load_model_components(config.model, static_cast<uint64_t>(config.run.seed), component_request(model));
    const ModelSampleSize own = model_sample_size(components);
    t.height = height > 0 ? height : own.height;
    t.width = width > 0 ? width : own.width;
    warn_if_untrained_size(components, 0, t.height, t.width, "track");
    t.layers = layers.empty() ? std::vector<int64_t>{default_refiner_block(components.transformer->config().num_layers)}
                              : layers;
    t.chunks.mode = chunk_mode == "interval" ? ChunkMode::kFrameInterval : ChunkMode::kStride;
    t.average_overlapping = !first_chunk_wins;
    t.resize_via_256 = !no_resize_256;
    t.match.readout.reference_readout = readout == "reference";
    t.match.occlusion.rule = occlusion == "cycle" ? OcclusionRule::kCycleConsistency : OcclusionRule::kNone;
    t.latent_sampling = latent == "mean" ? LatentSampling::kMean : LatentSampling::kSample;
    t.seed = static_cast<uint64_t>(seed);
    t.vae_tiling = !no_vae_tiling;
    t.bidirectional = !one_direction;
    o.eval.query_mode = parse_query_mode(query_mode);
    o.strips = !no_strips;
    t.text_embedding = empty_prompt_embedding(components, text_embedding);
    run_tracking(components, o);
  });
}

}  // namespace t4g::tools
