// T5 encoder (transformers' T5EncoderModel) in LibTorch: the text encoder of CogVideoX (T5 v1.1
// XXL, gated-GELU) and any T5 config, including the original ReLU form. Module and parameter
// names are transformers' state-dict names (shared.weight, encoder.block.N.layer.0.SelfAttention.q.weight,
// encoder.block.N.layer.1.DenseReluDense.wi_0.weight, encoder.final_layer_norm.weight, ...), so a
// checkpoint loads by a strict name-to-name copy. Math as research/cogvideox.md 6.3: no 1/sqrt(d)
// scaling, one relative position bias from block 0 shared by all blocks, RMSNorm in fp32.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace t4g {

// The activation of the feed-forward (T5Config.dense_act_fn).
enum class T5Activation { kRelu, kGeluTanh, kGelu };

// text_encoder/config.json (transformers T5Config); defaults are T5 v1.1 XXL's.
struct T5EncoderConfig {
  int64_t vocab_size = 32128;                    // embedding rows
  int64_t d_model = 4096;                        // hidden width
  int64_t d_kv = 64;                             // per-head width
  int64_t num_heads = 64;                        // attention heads
  int64_t d_ff = 10240;                          // feed-forward width
  int64_t num_layers = 24;                       // encoder blocks
  int64_t relative_attention_num_buckets = 32;   // relative-position buckets (both directions)
  int64_t relative_attention_max_distance = 128; // distance from which all positions share a bucket
  double layer_norm_epsilon = 1e-6;              // RMSNorm epsilon
  bool gated = true;                             // "gated-*": wi_0 (activated) * wi_1; else wi only
  T5Activation activation = T5Activation::kGeluTanh;  // "gated-gelu" means tanh GELU (gelu_new)

  int64_t inner_dim() const { return num_heads * d_kv; }
};

// Reads a transformers T5 config.json. feed_forward_proj "gated-gelu" / "relu" / "gated-relu" /
// "gelu" (and dense_act_fn when present, as T5Config keeps it); an unknown form or a missing size
// is a t4g::Error naming the file and the key.
T5EncoderConfig load_t5_encoder_config(const std::string& config_json);

// T5's bucket of relative positions (key - query), as T5Attention._relative_position_bucket:
// half the buckets per direction (bidirectional), exact below half of those, logarithmic up to
// max_distance, computed in float32 like the reference. Integer tensor in, int64 tensor out.
torch::Tensor t5_relative_position_bucket(const torch::Tensor& relative_position, bool bidirectional,
                                          int64_t num_buckets, int64_t max_distance);

// Parameters are allocated uninitialised in the given dtype and device (a checkpoint fills them;
// randomize_t5_encoder fills them for tests and benchmarks): no fp32 copy of 4.7B parameters
// is ever made on the host.
struct T5InitOptions {
  torch::ScalarType dtype = torch::kFloat32;  // parameter dtype
  torch::Device device = torch::kCPU;         // parameter device
};

// y = x W^T, no bias (T5 has none anywhere).
class T5LinearImpl : public torch::nn::Module {
 public:
  T5LinearImpl(int64_t in, int64_t out, const T5InitOptions& init);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;  // [out, in]
};
TORCH_MODULE(T5Linear);

// Embedding table without torch::nn::Embedding's init.
class T5EmbeddingImpl : public torch::nn::Module {
 public:
  T5EmbeddingImpl(int64_t rows, int64_t dim, const T5InitOptions& init);
  torch::Tensor forward(const torch::Tensor& ids);
  torch::Tensor weight;  // [rows, dim]
};
TORCH_MODULE(T5Embedding);

// T5LayerNorm: RMSNorm without mean subtraction or bias; the variance in fp32, the normalised
// value cast to the weight's dtype when that is fp16/bf16.
class T5LayerNormImpl : public torch::nn::Module {
 public:
  T5LayerNormImpl(int64_t dim, double eps, const T5InitOptions& init);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;  // [dim]

 private:
  double eps_;
};
TORCH_MODULE(T5LayerNorm);

// T5Attention (encoder self-attention): q, k, v, o and, in block 0, relative_attention_bias.
class T5AttentionImpl : public torch::nn::Module {
 public:
  T5AttentionImpl(const T5EncoderConfig& config, bool has_relative_attention_bias, const T5InitOptions& init);
  // x [B, L, D], bias [1 or B, H, L, L] added to the unscaled scores -> [B, L, D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& bias);
  // The position bias [1, H, L, L] for L tokens from this block's table (block 0 only).
  torch::Tensor compute_bias(int64_t length) const;

  T5Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};
  T5Embedding relative_attention_bias{nullptr};  // [num_buckets, heads]; block 0 only

 private:
  T5EncoderConfig config_;
};
TORCH_MODULE(T5Attention);

// layer.0: pre-norm self-attention with a residual.
class T5LayerSelfAttentionImpl : public torch::nn::Module {
 public:
  T5LayerSelfAttentionImpl(const T5EncoderConfig& config, bool has_relative_attention_bias, const T5InitOptions& init);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& bias);

  T5Attention SelfAttention{nullptr};
  T5LayerNorm layer_norm{nullptr};
};
TORCH_MODULE(T5LayerSelfAttention);

// DenseReluDense: wo(act(wi_0 x) * wi_1 x) (gated) or wo(act(wi x)). The input of wo is cast to
// wo's dtype, so wo may be kept in fp32 under an fp16 model (transformers' _keep_in_fp32_modules).
class T5DenseReluDenseImpl : public torch::nn::Module {
 public:
  T5DenseReluDenseImpl(const T5EncoderConfig& config, const T5InitOptions& init);
  torch::Tensor forward(const torch::Tensor& x);

  T5Linear wi{nullptr};    // non-gated form
  T5Linear wi_0{nullptr};  // gated form: activated branch
  T5Linear wi_1{nullptr};  // gated form: linear branch
  T5Linear wo{nullptr};

 private:
  T5EncoderConfig config_;
};
TORCH_MODULE(T5DenseReluDense);

// layer.1: pre-norm feed-forward with a residual.
class T5LayerFFImpl : public torch::nn::Module {
 public:
  T5LayerFFImpl(const T5EncoderConfig& config, const T5InitOptions& init);
  torch::Tensor forward(const torch::Tensor& x);

  T5DenseReluDense DenseReluDense{nullptr};
  T5LayerNorm layer_norm{nullptr};
};
TORCH_MODULE(T5LayerFF);

// One encoder block: layer.0 (attention), layer.1 (feed-forward), each followed by the fp16
// clamp of the reference.
class T5BlockImpl : public torch::nn::Module {
 public:
  T5BlockImpl(const T5EncoderConfig& config, bool has_relative_attention_bias, const T5InitOptions& init);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& bias);
  // The relative position bias [1, H, L, L] from this block's table (block 0 has the table).
  torch::Tensor position_bias(int64_t length) const;

  torch::nn::ModuleList layer{nullptr};

 private:
  T5LayerSelfAttention attention_{nullptr};  // layer[0]
  T5LayerFF ff_{nullptr};                    // layer[1]
};
TORCH_MODULE(T5Block);

// T5Stack (encoder side): embed_tokens (the model's `shared` table), the blocks, final_layer_norm.
class T5StackImpl : public torch::nn::Module {
 public:
  T5StackImpl(const T5EncoderConfig& config, T5Embedding embed_tokens, const T5InitOptions& init);
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);

  T5Embedding embed_tokens{nullptr};
  torch::nn::ModuleList block{nullptr};
  T5LayerNorm final_layer_norm{nullptr};

 private:
  T5EncoderConfig config_;
  std::vector<T5Block> blocks_;
};
TORCH_MODULE(T5Stack);

// The model: `shared` embedding and the `encoder` stack, whose embed_tokens is the same table, so
// a checkpoint may name it either way (transformers stores shared.weight).
class T5EncoderModelImpl : public torch::nn::Module {
 public:
  explicit T5EncoderModelImpl(const T5EncoderConfig& config, const T5InitOptions& init = {});

  // input_ids int64 [B, L] -> last_hidden_state [B, L, d_model] in the parameters' dtype. Under
  // fp16 with wo kept fp32 the residual stream turns fp32 after the first feed-forward, as in the
  // reference, and the final norm casts back to fp16. attention_mask [B, L] (1 = attend) is
  // optional; CogVideoX passes none.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {});

  // Casts to `dtype`; for fp16 every DenseReluDense.wo stays fp32 (transformers does that for
  // T5 under torch_dtype=float16 because wo overflows fp16; for bf16 it does not).
  void set_compute_dtype(torch::ScalarType dtype);
  // The parameters' dtype (of the embedding table).
  torch::ScalarType compute_dtype() const { return shared->weight.scalar_type(); }
  torch::Device device() const { return shared->weight.device(); }

  const T5EncoderConfig& config() const { return config_; }

  T5Embedding shared{nullptr};
  T5Stack encoder{nullptr};

 private:
  T5EncoderConfig config_;
};
TORCH_MODULE(T5EncoderModel);

// Where and how a loaded encoder runs.
struct T5LoadOptions {
  torch::ScalarType dtype = torch::kFloat32;  // compute dtype: fp32, bf16 or fp16 (wo kept fp32)
  torch::Device device = torch::kCPU;         // cpu or cuda
};

// Loads a text encoder folder (config.json + safetensors, single or sharded with an index, any
// stored dtype), strictly: missing, unexpected or mis-shaped tensors are one t4g::Error listing
// them. `shared.weight` or its tied alias `encoder.embed_tokens.weight` may hold the table.
T5EncoderModel load_t5_encoder(const std::string& folder, const T5LoadOptions& options = {});

// Reproducible random weights for tests and benchmarks, scaled as transformers' T5 init
// (attention and feed-forward weights N(0, fan_in^-1/2)-like, embeddings N(0, 1), norms 1).
void randomize_t5_encoder(T5EncoderModel& model, uint64_t seed);

}  // namespace t4g
