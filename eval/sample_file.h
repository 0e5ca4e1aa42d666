// The library side of `t4g sample`: load the recipe's model, get the prompt embeddings, sample
// (eval/sampler.h) and write each video atomically: an mp4 where OpenCV is present, else (or for a
// .h5 name) HDF5 with dataset `frames` uint8 [F, H, W, 3]. Where prompt embeddings come from is
// one function, prompt_embeddings_for, so text prompts through T5 slot in there.
#pragma once

#include <string>
#include <vector>

#include "common/config.h"
#include "eval/sampler.h"

namespace t4g {

// How `t4g sample` runs.
struct SampleFileOptions {
  std::string prompt_embeds;  // safetensors with prompt_embeds [B, L, D] (+ negative_prompt_embeds); "" = tiny's zeros
  std::vector<std::string> prompts;  // text prompts, encoded by the model's T5 (text_encoder/, tokenizer/)
  std::string negative_prompt;       // with prompts: the negative prompt of every video ("" as the pipeline)
  std::string text_cache;            // with prompts: a TextEmbeddingCache folder ("" = no cache)
  std::string out;            // output file: .mp4 (needs OpenCV) or .h5; B > 1 videos go to <stem>_<i><ext>
  std::string save_latents;   // also write `latents` [B, F_lat, C, h, w] and `video` [B, F, 3, H, W] in [0, 1]
                              // (float32, diffusers' output_type "latent" and "pt") to this safetensors file
  ComponentRequest components;  // what to load (components.refiner = false: a trained model's backbone alone)
  double fps = 8;             // frame rate written to the video (CogVideoX's export_to_video uses 8)
  SampleOptions sample;       // the sampling call
};

// What was written, for the command's log line.
struct SampleFileReport {
  std::vector<std::string> files;    // one per video
  std::vector<int64_t> frames_shape; // [B, F, H, W, 3]
  double denoise_seconds = 0;        // sum of step times
  double decode_seconds = 0;         // VAE decode and conversion
};

// Reads prompt embeddings from a safetensors file: `prompt_embeds` [B, L, D] and optionally
// `negative_prompt_embeds` of the same shape. Errors name the file and tensor.
PromptEmbeddings read_prompt_embeddings(const std::string& path);

// The one place prompt embeddings come from: the file when given; for the tiny model without a
// file, its zero embeddings (it has no text encoder); otherwise an error asking for the file.
PromptEmbeddings prompt_embeddings_for(const SampleFileOptions& options, const ModelComponents& components);

// The files the videos of a batch of `batch` go to: `out` itself for one video, else
// <stem>_<i><ext> beside it. Without OpenCV a non-.h5 name gets the extension .h5 (with a warning).
std::vector<std::string> sample_output_paths(const std::string& out, int64_t batch);

// Writes uint8 frames [F, H, W, 3] to `path` atomically: HDF5 (dataset "frames" and attributes
// fps, steps, guidance_scale, dynamic_cfg, seed, cag_layers, cag_scale and cag_mode, the variant the
// call resolved to) when the name ends in .h5, else a video through OpenCV.
void write_sampled_video(const std::string& path, const torch::Tensor& frames, double fps,
                         const SampleOptions& options);

// Loads recipe.model (transformer, VAE, scheduler; a trained model with its refiner), samples and
// writes the videos.
SampleFileReport sample_to_file(const Config& recipe, const SampleFileOptions& options);

}  // namespace t4g
