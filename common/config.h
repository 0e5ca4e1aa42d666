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

enum class DType { kFloat32, kBFloat16 };  // compute dtype
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
};

// `model`: which transformer, in what precision, where.
struct ModelConfig {
  std::string path;                 // diffusers pipeline or transformer folder; empty = model.tiny
  DType dtype = DType::kFloat32;    // compute dtype: fp32 | bf16
  DeviceKind device = DeviceKind::kAuto;  // cpu | cuda | auto
  bool gradient_checkpointing = false;  // recompute each block in backward
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
  SyntheticDataConfig synthetic;
};

// The whole recipe.
struct Config {
  RunConfig run;
  ModelConfig model;
  DataConfig data;
};

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
