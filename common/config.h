// Run configuration: YAML recipes (configs/*.yaml) parsed into plain structs, one per section.
// Every key is declared once, in config.cpp's field table (name, type, default, range, doc), which
// drives parsing, unknown-key rejection, `--set a.b=c` overrides, `t4g config show` and
// `t4g config doc` alike, so the documentation can never drift from the parser. Errors name the
// file (with line) and the key path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace t4g {

enum class DType { kFloat32, kBFloat16, kAuto };  // compute dtype; kAuto: bf16 on CUDA, fp32 on the CPU
enum class DeviceKind { kCpu, kCuda, kAuto };  // kAuto: cuda when available, else cpu

// `run`: what this job is called, where it writes, how it seeds.
struct RunConfig {
  std::string name = "run";        // run name; outputs go to <out_dir>
  std::string out_dir = "runs/run";  // folder for checkpoints, logs and metrics
  int64_t seed = 0;                // base seed; per-rank and per-step streams derive from it
  std::string log_level = "info";  // debug | info | warn | error
};

// `model.tiny`: the shape of the random tiny CogVideoX used when model.path is empty.
struct TinyModelConfig {
  int64_t num_layers = 2;            // transformer blocks
  int64_t num_attention_heads = 2;   // heads per block
  int64_t attention_head_dim = 16;   // channels per head
  int64_t text_embed_dim = 32;       // width of the text encoder output
  int64_t in_channels = 4;           // latent channels
  int64_t time_embed_dim = 32;       // timestep embedding width
  bool use_rotary_positional_embeddings = false;  // 5B form (3D RoPE) instead of 2B (sincos)
  int64_t text_tokens = 16;          // text sequence length (the real models use 226)
  int64_t vae_channels = 8;          // width of the tiny VAE's first block (blocks: c, c, 2c, 2c)
  // Not keys: parse_config sets them to data.frames / height / width (the size the tiny model is
  // trained at and that commands default to; it becomes its config's sample size).
  int64_t sample_frames = 9;
  int64_t sample_height = 64;
  int64_t sample_width = 96;
};

// `model`: which transformer, in what precision, where.
struct ModelConfig {
  std::string path;                 // diffusers pipeline or transformer folder, or a t4g run's export/ or
                                    // checkpoint folder (models/trained_model.h); empty = model.preset or model.tiny
  std::string preset;               // "" | 2b | 5b: random weights at a released size (benchmarks, memory planning)
  DType dtype = DType::kAuto;       // compute dtype: fp32 | bf16 | auto (bf16 on CUDA, a trained model's own; fp32 on CPU)
  std::string weights = "auto";     // a trained model's weights: auto (EMA when kept) | ema | raw
  DeviceKind device = DeviceKind::kAuto;  // cpu | cuda | auto
  bool gradient_checkpointing = false;  // recompute each block in backward
  bool checkpoint_keep_attention = false;  // ... but keep each block's attention output (faster, more memory)
  TinyModelConfig tiny;
};

// `data.synthetic`: the bundled synthetic videos (exact tracks) used when data.shards is empty.
struct SyntheticDataConfig {
  int64_t videos = 4;        // number of videos to synthesize
  int64_t sprites = 3;       // moving textured sprites per video
  int64_t grid_step = 8;     // spacing in pixels of the tracked point grid
};

// `data`: where training and evaluation videos come from and at what size.
struct DataConfig {
  std::string shards;        // folder of HDF5 shards with index.json; empty = data.synthetic
  int64_t frames = 9;        // frames per clip (CogVideoX: 4k+1, e.g. 49)
  int64_t height = 64;       // frame height in pixels (multiple of 16)
  int64_t width = 96;        // frame width in pixels (multiple of 16)
  int64_t batch_size = 1;    // clips per step per rank
  int64_t loader_threads = 2;  // prefetch threads
  int64_t tracks_per_clip = 256;  // trajectories sampled per clip among the visible ones (0 = all)
  std::string latents = "auto";   // auto | never | require: use precomputed VAE latents from the shards
  double flip_probability = 0.0;  // horizontal flip augmentation (tracks move with the pixels)
  std::string fit = "refuse";     // shard videos larger than height x width: refuse | crop (random crop)
  SyntheticDataConfig synthetic;
};

// `train`: the optimisation.
struct TrainConfig {
  int64_t steps = 1000;              // optimizer steps of the run
  double lr = 1e-4;                  // peak learning rate
  std::string lr_schedule = "constant";  // constant | cosine | linear (after warmup)
  int64_t warmup_steps = 0;          // linear warmup from 0
  double min_lr_ratio = 0.0;         // floor of the decay, fraction of lr
  double weight_decay = 1e-4;        // AdamW decoupled weight decay
  double beta1 = 0.9;                // AdamW first-moment decay
  double beta2 = 0.95;               // AdamW second-moment decay
  double eps = 1e-8;                 // AdamW epsilon
  double grad_clip = 1.0;            // clip the global gradient norm to this (0 = off)
  int64_t grad_accumulation = 1;     // micro-batches per optimizer step
  double ema_decay = 0.0;            // EMA of trainable weights (0 = off)
  int64_t max_nan_steps = 5;         // stop after this many consecutive non-finite steps
  std::string trainable = "refiner";  // refiner | full | blocks | lora: what trains besides the refiner
  std::vector<int64_t> trainable_blocks;  // with trainable=blocks: these transformer blocks
  int64_t checkpoint_every = 100;    // steps between checkpoints (the last step always saves)
  int64_t keep_checkpoints = 3;      // newest checkpoints kept (0 = all)
  int64_t log_every = 1;             // steps between console/metric records
  bool tensorboard = true;           // write TensorBoard event files
  std::string comm_backend = "auto";  // auto | store | nccl
  int64_t bucket_mb = 25;            // gradient all-reduce bucket size in MiB
  int64_t zero_stage = 0;            // 0: replicated optimizer; 1: sharded optimizer state; 2: + sharded gradients
};

// `loss`: diffusion + lambda * correspondence.
struct LossConfig {
  double corr_weight = 8.0;          // lambda of the correspondence loss (0 = plain fine-tuning)
  std::string corr_loss = "huber";   // huber | l1 | l2 on the soft-argmax error in feature cells
  double huber_delta = 1.0;          // Huber delta in feature cells
  double temperature = 0.05;         // softmax temperature over cosine similarities
  int64_t query_points = 256;        // query points per clip
  std::string query_frame = "first";  // first | random: latent frame the queries come from
  int64_t target_frames = 0;         // latent frames compared per query (0 = all others)
};

// `refiner`: the Track4Gen refiner on one block's output (models/refiner.h).
struct RefinerRecipe {
  bool enabled = true;               // false: no refiner, no correspondence loss
  int64_t block = -1;                // 0-based block whose video tokens are refined; -1 = default_refiner_block
  int64_t layers = 8;                // convolution layers
  std::string conv = "2d";           // 2d (per frame) | 3d (across frames)
  int64_t kernel = 3;                // odd kernel size
};

// `lora`: adapters when train.trainable = lora (models/lora.h, PEFT naming).
struct LoraRecipe {
  int64_t rank = 64;                 // adapter rank r
  double alpha = 64.0;               // scale alpha / r
  double dropout = 0.0;              // dropout on the adapter input
  std::vector<std::string> target_modules = {"to_q", "to_k", "to_v", "to_out.0"};  // PEFT suffix match
};

// `eval`: tracking evaluation on held-out videos during training.
struct EvalConfig {
  int64_t every = 0;                 // steps between evaluations (0 = only before and after training)
  std::string data;                  // held-out shards folder or TAP-Vid pickle; empty = synthetic
  int64_t videos = 2;                // held-out videos evaluated (synthetic: generated with another seed)
  int64_t layer = -1;                // query-key probe layer (-1 = the refiner's block)
  int64_t timestep_index = 49;       // index into the 50 inference timesteps (49 = t 19)
  int64_t vbench_videos = 0;         // videos sampled (empty prompt, backbone alone) for VBench dimensions (0 = off)
  int64_t sample_steps = 50;         // denoising steps of those samples
  std::string dino;                  // DINO ViT-B/16 safetensors: adds subject_consistency ("" = flickering only)
};

// The whole recipe.
struct Config {
  RunConfig run;
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  LossConfig loss;
  RefinerRecipe refiner;
  LoraRecipe lora;
  EvalConfig eval;
};

// The block a refiner.block of -1 means: 17 (the layer DiffTrack and Track4Gen use on CogVideoX 2B
// and 5B), or the last block of a model with fewer than 18.
int64_t default_refiner_block(int64_t num_layers);

// One `--set key.path=value` override.
struct ConfigOverride {
  std::string key;    // dotted path, e.g. "data.frames"
  std::string value;  // YAML scalar or flow value, e.g. "49", "bf16", "[13, 17]"
};

// Parses "a.b=c"; throws t4g::Error when there is no '=' or the key is empty.
ConfigOverride parse_override(const std::string& text);

// Parses YAML text (`source` names it in errors: a file path or "<embedded tiny>"), applies the
// overrides, rejects unknown keys and wrong types, then validates. Missing keys keep defaults
// unless the field is required.
Config parse_config(const std::string& yaml_text, const std::string& source,
                    const std::vector<ConfigOverride>& overrides = {});

// Reads a recipe file and parses it as above.
Config load_config(const std::string& path, const std::vector<ConfigOverride>& overrides = {});

// The recipe compiled into the binary (configs/tiny.yaml): what `t4g demo` runs.
const std::string& embedded_tiny_config();

// Cross-field and range checks; the single place validation happens. Throws t4g::Error naming the
// key (and `source` as the file).
void validate(const Config& config, const std::string& source);

// The resolved config as YAML (every key, defaults included).
std::string to_yaml(const Config& config);

// Markdown table of every key: path, type, default, allowed values, description.
std::string config_reference();

std::string to_string(DType dtype);
std::string to_string(DeviceKind device);

}  // namespace t4g
