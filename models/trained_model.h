// A model fine-tuned by t4g is one thing: the backbone (a diffusers transformer, or the base
// pipeline's plus what trained: whole blocks or LoRA adapters) and the Track4Gen refiner with its
// zero projection, which adds its residual into the stream after its block. This file owns the
// two folders such a model lives in and loads either of them into one ModelComponents whose
// transformer applies the refiner on every forward, exactly as training did:
//
//   RUN/export/                     written by the trainer after the last step (save_trained_model)
//     t4g_model.json                the manifest below: base pipeline, what trained, which weights
//     config.yaml                   the run's resolved recipe
//     transformer/                  diffusers layout, when the backbone trained (full / blocks) or
//                                   the base has random weights (tiny: the export is then a whole
//                                   diffusers pipeline with vae/, scheduler/, model_index.json)
//     lora/                         PEFT and diffusers LoRA layouts (train.trainable = lora)
//     refiner.safetensors           the refiner and its projection (models/refiner.h)
//     t4g_diffusers.py              loads the same model in diffusers (models/t4g_diffusers.py)
//   RUN/checkpoints/step_N/         written during training (train/checkpoint.h): the trainable
//                                   tensors by name in weights.safetensors (and ema.safetensors),
//                                   the recipe in state.json
//
// load_model_components (models/model_components.h) dispatches here when model.path names either
// folder, so `--model RUN/export` and `--model RUN/checkpoints/step_N` work in every command.
#pragma once

#include <cstdint>
#include <string>

#include "common/config.h"
#include "common/json.h"
#include "models/model_components.h"
#include "models/refiner.h"

namespace t4g {

// File names of the export (the contract with models/t4g_diffusers.py and docs/training.md).
constexpr const char* kTrainedModelManifest = "t4g_model.json";
constexpr const char* kTrainedModelRecipe = "config.yaml";
constexpr const char* kRefinerFile = "refiner.safetensors";
constexpr const char* kDiffusersLoaderFile = "t4g_diffusers.py";

// What a folder holds.
enum class TrainedFolderKind {
  kNone,        // neither (a diffusers pipeline or transformer folder, or nothing)
  kExport,      // has t4g_model.json
  kCheckpoint,  // has state.json and weights.safetensors
};
TrainedFolderKind trained_folder_kind(const std::string& path);

// t4g_model.json. Paths inside are relative to the export folder except base_model.
struct TrainedModelManifest {
  int64_t version = 1;
  std::string base_model;          // the diffusers pipeline the run started from (absolute path), a
                                   // "preset:2b"/"preset:5b" rebuilt from base_seed, or "" when the
                                   // export is itself a whole pipeline (random tiny base)
  uint64_t base_seed = 0;          // seed of a preset base's random weights
  std::string trainable;           // train.trainable of the run: refiner | full | blocks | lora
  std::string transformer;         // "transformer" when the export holds the backbone, else ""
  std::string lora;                // "lora" when it holds adapters, else ""
  std::string refiner;             // "refiner.safetensors", or "" for a run without a refiner
  std::string weights = "raw";     // "ema" or "raw": which of the run's weights the files hold
  int64_t step = 0;                // optimizer steps the run had done
  std::string dtype = "fp32";      // compute dtype the run trained in (fp32 | bf16)

  Json to_json() const;
  // Parses and validates; errors name `file` and the key.
  static TrainedModelManifest from_json(const Json& json, const std::string& file);
};

// The seed a run draws its random base weights from (the tiny model, presets): one stream of
// run.seed, so a checkpoint folder rebuilds the same base.
uint64_t base_model_seed(int64_t run_seed);

// The refiner a recipe describes on a model with `num_layers` blocks (refiner.block -1 ->
// default_refiner_block). Errors name the recipe key.
RefinerConfig refiner_config_from_recipe(const RefinerRecipe& recipe, int64_t num_layers);

// Makes `refiner` part of the model: its residual, proj(refiner(video tokens of block L)), is
// added after block L by every forward of components.transformer (a probe's residual hook at the
// same block replaces it for that call). A null refiner removes it. The refiner is moved to the
// transformer's device; its dtype is kept (it casts its input).
void attach_refiner(ModelComponents& components, Refiner refiner);

// Which weights of a run to load (recipe key model.weights).
enum class WeightChoice {
  kAuto,  // EMA when the run kept them, else the raw ones
  kEma,
  kRaw,
};
WeightChoice parse_weight_choice(const std::string& name, const std::string& key = "model.weights");

// Loads a trained model folder (an export or a checkpoint) per `config` (model.path names the
// folder; model.device and model.dtype as for any model, dtype auto = the run's own dtype on
// CUDA, fp32 on the CPU; model.weights picks EMA or raw). The base comes from the manifest or the
// checkpoint's recipe. Every problem is one t4g::Error naming the file.
ModelComponents load_trained_model(const ModelConfig& config, const ComponentRequest& request);

// What save_trained_model writes besides the weights.
struct TrainedModelExport {
  std::string dir;              // the export folder (replaced atomically)
  Config recipe;                // the run's resolved recipe
  std::string weights = "raw";  // "ema" or "raw": which weights the modules hold now
  int64_t step = 0;
};

// Writes the transformer (without LoRA adapters), the VAE, the scheduler config and
// model_index.json into `dir` as diffusers' CogVideoXPipeline.save_pretrained lays them out (text
// encoder and tokenizer null): a pipeline diffusers and t4g load.
void save_diffusers_pipeline(ModelComponents& components, const std::string& dir);

// Writes `components` (the transformer as trained, with LoRA adapters when the recipe trains
// them, and components.refiner) as an export folder; see the layout above. A tiny base also
// writes vae/, scheduler/ and model_index.json, so the folder is a whole diffusers pipeline.
void save_trained_model(ModelComponents& components, const TrainedModelExport& what);

}  // namespace t4g
