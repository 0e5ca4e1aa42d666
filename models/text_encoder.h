// The CogVideoX pipeline's prompt encoding in one place: tokenizer/ + text_encoder/ of a diffusers
// root -> T5 last_hidden_state [B, 226, d_model], with no attention mask given to T5 (as
// _get_t5_prompt_embeds does). TextEmbeddingCache keeps encoded prompts as safetensors files keyed
// by (prompt, max_length, encoder identity), so training and evaluation encode each prompt once.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/t5_encoder.h"
#include "models/t5_tokenizer.h"

namespace t4g {

// A folder of `<16 hex digits>.safetensors` files, one per (prompt, max_length) under one encoder
// identity; each holds `prompt_embeds` [L, D] (the encoder's compute dtype), `input_ids` [L] and
// metadata {prompt, max_length, encoder} that a lookup compares, so a hash collision or a file of
// another encoder is a miss, never a wrong embedding. Files are written atomically.
class TextEmbeddingCache {
 public:
  // Creates `folder` when missing. `encoder_id` identifies the encoder and compute dtype
  // (TextEncoder::identity(), or a name the user vouches for).
  TextEmbeddingCache(std::string folder, std::string encoder_id);

  // The file that holds (prompt, max_length).
  std::string path_for(const std::string& prompt, int64_t max_length) const;
  // The cached [L, D] embedding (CPU) or an undefined tensor; counts a hit or a miss. An unreadable
  // or foreign file is a miss (logged at warn level) and is replaced by the next put.
  torch::Tensor get(const std::string& prompt, int64_t max_length);
  // Stores one prompt's embedding [L, D] and ids [L].
  void put(const std::string& prompt, int64_t max_length, const torch::Tensor& embeds, const torch::Tensor& input_ids);

  const std::string& folder() const { return folder_; }
  const std::string& encoder_id() const { return encoder_id_; }
  int64_t hits() const { return hits_; }
  int64_t misses() const { return misses_; }

 private:
  std::string folder_;
  std::string encoder_id_;
  std::atomic<int64_t> hits_{0};
  std::atomic<int64_t> misses_{0};
};

class TextEncoder {
 public:
  // `path` is a diffusers pipeline root (model_index.json naming text_encoder and tokenizer) or
  // a folder holding text_encoder/ and tokenizer/. dtype: fp32, bf16 or fp16 (wo kept fp32, as
  // transformers does). A missing text_encoder/ or tokenizer/ folder is one t4g::Error naming it.
  static TextEncoder load(const std::string& path, torch::Device device = torch::kCPU,
                          torch::ScalarType dtype = torch::kFloat32);

  // Prompts -> T5 last_hidden_state [B, max_length, d_model] in the compute dtype on the device.
  // Ids are padded to max_length and T5 sees the padding (no attention mask), as the pipeline does.
  torch::Tensor encode(const std::vector<std::string>& prompts, int64_t max_length = 226);
  // The same through the cache when one is enabled (enable_cache): only prompts not cached are
  // encoded, in one batch (a truncation warning comes only for those). Without a cache: encode.
  torch::Tensor encode_cached(const std::vector<std::string>& prompts, int64_t max_length = 226);
  // Ids [B, L] -> last_hidden_state [B, L, d_model].
  torch::Tensor encode_ids(const torch::Tensor& input_ids);
  // The tokenizer's output for the prompts (ids and mask, CPU); see T5Tokenizer::tokenize.
  TokenizedPrompts tokenize(const std::vector<std::string>& prompts, int64_t max_length = 226,
                            bool warn_truncation = true) const;

  // Attaches a cache folder. `model_id` replaces the file-derived identity when not empty (the
  // compute dtype is always part of the key).
  void enable_cache(const std::string& folder, const std::string& model_id = "");
  // Null until enable_cache.
  const TextEmbeddingCache* cache() const { return cache_.get(); }

  // A hash of what determines the embeddings: text_encoder config.json, the weight files' names,
  // sizes and modification times, spiece.model, tokenizer_config.json and the compute dtype.
  const std::string& identity() const { return identity_; }
  const T5Tokenizer& tokenizer() const { return *tokenizer_; }
  T5EncoderModel& model() { return model_; }
  torch::Device device() const { return model_->device(); }
  torch::ScalarType dtype() const { return dtype_; }

 private:
  TextEncoder() = default;

  std::shared_ptr<T5Tokenizer> tokenizer_;
  T5EncoderModel model_{nullptr};
  torch::ScalarType dtype_ = torch::kFloat32;
  std::string identity_;
  std::shared_ptr<TextEmbeddingCache> cache_;
};

struct ModelComponents;  // models/model_components.h

// The empty prompt's embedding [1, L, D] (the model's compute dtype and device) that DiffTrack's
// tracking and analysis and the unconditional evaluation samples condition on: from `file` when
// given (safetensors, tensor `text_embedding` or the only one, [L, D] or [1, L, D]); else T5 of ""
// from the model folder's text_encoder/ and tokenizer/; else zeros (the tiny and preset models
// have no text encoder; for a real model without one a warning says zeros stand in).
torch::Tensor empty_prompt_embedding(const ModelComponents& components, const std::string& file = "");

// `t4g encode-text`: prompts -> a safetensors file with `prompt_embeds` [B, L, D] float32,
// `negative_prompt_embeds` [B, L, D] (the negative prompt's, repeated per prompt, as the
// pipeline's CFG batch needs), `empty_prompt_embeds` [1, L, D] (T5 of "": what DiTFlow's
// reference forward and DiffTrack's tracking condition on), `input_ids` and `attention_mask` int64
// [B, L], and metadata (prompts as a JSON array, negative prompt, max_length, dtype, encoder
// identity). One file serves `t4g sample` and `t4g transfer`. Written atomically.
struct EncodeTextFileOptions {
  std::string model;                          // pipeline root or folder with text_encoder/ and tokenizer/
  std::vector<std::string> prompts;           // at least one
  std::string negative_prompt;                // the negative prompt of every video ("" as the pipeline)
  std::string output;                         // .safetensors to write
  int64_t max_length = 0;                     // tokens per prompt, </s> included; 0 = the model's
                                              // (transformer/config.json max_text_seq_length, else 226)
  torch::ScalarType dtype = torch::kFloat32;  // compute dtype
  std::string device = "cpu";                 // cpu, cuda or cuda:N
  std::string cache;                          // embedding cache folder ("" = none)
};

// What encode_text_file did.
struct EncodeTextFileReport {
  std::vector<int64_t> shape;  // of prompt_embeds
  int64_t truncated = 0;       // prompts cut to max_length
  double seconds = 0;          // tokenize + encode (model loading excluded)
};
EncodeTextFileReport encode_text_file(const EncodeTextFileOptions& options);

// The text length a pipeline's transformer takes (transformer/config.json max_text_seq_length,
// CogVideoX: 226); 226 when the folder has no transformer.
int64_t model_text_length(const std::string& root);

// torch::Device from "cpu", "cuda", "cuda:N"; a bad name or CUDA without a GPU is a t4g::Error.
torch::Device parse_device(const std::string& name);

}  // namespace t4g
