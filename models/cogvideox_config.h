// The CogVideoX transformer's configuration, read from a diffusers `transformer/config.json`.
// Field names and defaults are diffusers' own (CogVideoXTransformer3DModel.__init__), so a config
// written by save_pretrained() maps one to one; keys absent from the file keep diffusers' defaults
// (the 2B file, for example, has no patch_size_t or use_learned_positional_embeddings).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace t4g {

// CogVideoXTransformer3DModel hyperparameters (research/cogvideox.md section 1.1).
struct CogVideoXTransformerConfig {
  int64_t num_attention_heads = 30;                // heads per attention layer
  int64_t attention_head_dim = 64;                 // channels per head; inner dim D = heads * head_dim
  int64_t in_channels = 16;                        // latent channels in (32 for I2V: noisy | image latents)
  int64_t out_channels = 16;                       // latent channels out
  bool flip_sin_to_cos = true;                     // timestep sinusoid order: cos first when true
  double freq_shift = 0.0;                         // timestep sinusoid downscale_freq_shift
  int64_t time_embed_dim = 512;                    // width of the timestep embedding
  std::optional<int64_t> ofs_embed_dim;            // CogVideoX1.5-I2V "ofs" embedding width, absent otherwise
  int64_t text_embed_dim = 4096;                   // T5 hidden size
  int64_t num_layers = 30;                         // transformer blocks
  double dropout = 0.0;                            // dropout probability (embedding and feed-forward)
  bool attention_bias = true;                      // biases on to_q / to_k / to_v
  int64_t sample_width = 90;                       // latent width of the built-in positional table
  int64_t sample_height = 60;                      // latent height of the built-in positional table
  int64_t sample_frames = 49;                      // PIXEL frames of the table: latent frames = (n-1)/4+1
  int64_t patch_size = 2;                          // spatial patch size
  std::optional<int64_t> patch_size_t;             // temporal patch size (CogVideoX1.5), absent for 1.0
  int64_t temporal_compression_ratio = 4;          // VAE temporal stride, used with sample_frames
  int64_t max_text_seq_length = 226;               // text tokens the positional table reserves
  std::string activation_fn = "gelu-approximate";  // feed-forward activation: gelu-approximate | gelu
  std::string timestep_activation_fn = "silu";     // time MLP activation: silu (alias swish)
  bool norm_elementwise_affine = true;             // LayerNorms carry weight and bias
  double norm_eps = 1e-5;                          // LayerNorm epsilon (the q/k norms use 1e-6)
  double spatial_interpolation_scale = 1.875;      // sin-cos PE: spatial positions divided by this
  double temporal_interpolation_scale = 1.0;       // sin-cos PE: temporal positions divided by this
  bool use_rotary_positional_embeddings = false;   // 3D RoPE on video q/k (5B family); else sin-cos PE
  bool use_learned_positional_embeddings = false;  // learned `patch_embed.pos_embedding` (5B-I2V)
  bool patch_bias = true;                          // bias of the Conv2d patch projection (1.0 only)

  int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }
  // The 2B form: fixed sin-cos table added to the joint sequence.
  bool uses_sincos_positions() const { return !use_rotary_positional_embeddings; }
  // Latent frames the built-in positional table covers ((sample_frames - 1) / ratio + 1).
  int64_t sample_latent_frames() const { return (sample_frames - 1) / temporal_compression_ratio + 1; }

  // Throws t4g::Error naming `file` and the offending key when a value is out of range or the
  // combination is one diffusers rejects or this port does not implement.
  void validate(const std::string& file = "") const;
};

// Parses a diffusers transformer config (already-parsed JSON). `file` only names the source in
// errors. Wrong types and invalid values are errors naming the key; unknown keys are logged and
// ignored (as diffusers does), keys starting with '_' (_class_name, _diffusers_version) are ignored.
CogVideoXTransformerConfig parse_cogvideox_transformer_config(const nlohmann::json& json, const std::string& file = "");

// Reads and parses `path` (a config.json file, or a folder holding one).
CogVideoXTransformerConfig load_cogvideox_transformer_config(const std::string& path);

// The released configurations with the name users know them by (research/cogvideox.md 1.1):
// "2b" (CogVideoX-2b: 30 heads, 30 layers, sin-cos positions) and "5b" (48 heads, 42 layers, 3D
// RoPE). Throws t4g::Error naming the preset otherwise. For benchmarks and memory planning with
// random weights at full size.
CogVideoXTransformerConfig cogvideox_preset(const std::string& name);

// The config as diffusers' config.json (with _class_name), for writing tiny test models.
nlohmann::json cogvideox_transformer_config_to_json(const CogVideoXTransformerConfig& config);

}  // namespace t4g
