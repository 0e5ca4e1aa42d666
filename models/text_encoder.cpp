// Prompt encoding and its cache. The cache key is a 64-bit FNV-1a hash; each file also records
// the prompt, max_length and encoder identity it was made from, which a lookup checks, so the
// short hash can only cost a recomputation, never return another prompt's embedding.
#include "models/text_encoder.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <optional>

#include "common/error.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "common/safetensors.h"
#include "common/shape_string.h"
#include "models/diffusers_layout.h"
#include "models/model_components.h"

namespace t4g {
namespace {

constexpr uint64_t kFnvOffset = 1469598103934665603ULL;
constexpr uint64_t kFnvPrime = 1099511628211ULL;

uint64_t fnv1a(const std::string& bytes, uint64_t h = kFnvOffset) {
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= kFnvPrime;
  }
  return h;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string dtype_label(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32:
      return "fp32";
    case torch::kBFloat16:
      return "bf16";
    case torch::kFloat16:
      return "fp16";
    default:
      return c10::toString(dtype);
  }
}

int64_t mtime_ns(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Hash of everything in the two folders that decides the embeddings; weights by name, size and
// modification time (reading gigabytes to hash them would cost more than encoding).
std::string encoder_identity(const std::string& text_encoder_folder, const std::string& tokenizer_folder,
                             torch::ScalarType dtype) {
  uint64_t h = kFnvOffset;
  for (const auto& name : list_dir(text_encoder_folder)) {
    const std::string path = path_join(text_encoder_folder, name);
    if (!is_regular_file(path)) continue;
    if (ends_with(name, ".json")) {
      h = fnv1a(name + "\n" + read_file(path) + "\n", h);
    } else if (ends_with(name, ".safetensors")) {
      h = fnv1a(name + " " + std::to_string(file_size(path)) + " " + std::to_string(mtime_ns(path)) + "\n", h);
    }
  }
  for (const char* name : {"spiece.model", "tokenizer_config.json", "special_tokens_map.json"}) {
    const std::string path = path_join(tokenizer_folder, name);
    if (is_regular_file(path)) h = fnv1a(std::string(name) + "\n" + read_file(path) + "\n", h);
  }
  return "t5-" + hex64(h) + "-" + dtype_label(dtype);
}

}  // namespace

TextEmbeddingCache::TextEmbeddingCache(std::string folder, std::string encoder_id)
    : folder_(std::move(folder)), encoder_id_(std::move(encoder_id)) {
  T4G_CHECK(!encoder_id_.empty(), "text embedding cache: the encoder identity must not be empty");
  make_dirs(folder_);
}

std::string TextEmbeddingCache::path_for(const std::string& prompt, int64_t max_length) const {
  const std::string key = encoder_id_ + '\0' + std::to_string(max_length) + '\0' + prompt;
  return path_join(folder_, hex64(fnv1a(key)) + ".safetensors");
}

torch::Tensor TextEmbeddingCache::get(const std::string& prompt, int64_t max_length) {
  const std::string path = path_for(prompt, max_length);
  if (!is_regular_file(path)) {
    ++misses_;
    return {};
  }
  try {
    SafetensorsFile file(path);
    const auto& meta = file.metadata();
    const auto field = [&](const char* key) {
      const auto it = meta.find(key);
      return it == meta.end() ? std::string() : it->second;
    };
    if (field("prompt") == prompt && field("max_length") == std::to_string(max_length) &&
        field("encoder") == encoder_id_ && file.contains("prompt_embeds")) {
      torch::Tensor embeds = file.tensor("prompt_embeds");
      if (embeds.dim() == 2 && embeds.size(0) == max_length) {
        ++hits_;
        return embeds;
      }
    }
    T4G_WARN("text embedding cache: ", path, " holds another entry (hash collision or foreign file); recomputing");
  } catch (const Error& e) {
    T4G_WARN("text embedding cache: cannot read ", path, " (", e.what(), "); recomputing");
  }
  ++misses_;
  return {};
}

void TextEmbeddingCache::put(const std::string& prompt, int64_t max_length, const torch::Tensor& embeds,
                             const torch::Tensor& input_ids) {
  T4G_CHECK(embeds.dim() == 2 && embeds.size(0) == max_length, "text embedding cache: expected embeddings [",
            max_length, ", D], got ", embeds.sizes());
  std::map<std::string, torch::Tensor> tensors;
  tensors["prompt_embeds"] = embeds.detach().to(torch::kCPU).contiguous();
  tensors["input_ids"] = input_ids.detach().to(torch::kCPU, torch::kLong).contiguous();
  save_safetensors(path_for(prompt, max_length), tensors,
                   {{"prompt", prompt}, {"max_length", std::to_string(max_length)}, {"encoder", encoder_id_}});
}

TextEncoder TextEncoder::load(const std::string& path, torch::Device device, torch::ScalarType dtype) {
  std::string text_encoder_folder;
  std::string tokenizer_folder;
  if (is_regular_file(path_join(path, "model_index.json"))) {
    // A pipeline root: the index names the components (a listed but absent folder is an error there).
    const DiffusersLayout layout = resolve_diffusers_layout(path);
    text_encoder_folder = layout.component("text_encoder").folder;
    tokenizer_folder = layout.component("tokenizer").folder;
  } else {
    ErrorContext ctx;
    ctx.file = path;
    T4G_CHECK_CTX(is_directory(path), ctx, "no such folder (expected a diffusers pipeline root)");
    text_encoder_folder = path_join(path, "text_encoder");
    tokenizer_folder = path_join(path, "tokenizer");
  }
  for (const auto& folder : {text_encoder_folder, tokenizer_folder}) {
    ErrorContext ctx;
    ctx.file = folder;
    T4G_CHECK_CTX(is_directory(folder), ctx,
                  "folder not found (the text encoder needs text_encoder/ and tokenizer/ of a diffusers pipeline)");
  }

  TextEncoder encoder;
  encoder.tokenizer_ = std::make_shared<T5Tokenizer>(T5Tokenizer::load(tokenizer_folder));
  encoder.model_ = load_t5_encoder(text_encoder_folder, T5LoadOptions{dtype, device});
  encoder.dtype_ = dtype;
  encoder.identity_ = encoder_identity(text_encoder_folder, tokenizer_folder, dtype);
  const int64_t vocab = encoder.model_->config().vocab_size;
  ErrorContext ctx;
  ctx.file = tokenizer_folder;
  ctx.expected = "at most " + std::to_string(vocab) + " (text_encoder vocab_size)";
  ctx.got = std::to_string(encoder.tokenizer_->size());
  T4G_CHECK_CTX(encoder.tokenizer_->size() <= vocab, ctx, "tokenizer has more tokens than the encoder's embedding");
  T4G_INFO("text encoder: T5 ", encoder.model_->config().num_layers, " layers, d_model ",
           encoder.model_->config().d_model, ", ", dtype_label(dtype), " on ", device.str(), " (", path, ")");
  return encoder;
}

TokenizedPrompts TextEncoder::tokenize(const std::vector<std::string>& prompts, int64_t max_length,
                                       bool warn_truncation) const {
  return tokenizer_->tokenize(prompts, max_length, warn_truncation);
}

torch::Tensor TextEncoder::encode_ids(const torch::Tensor& input_ids) {
  torch::NoGradGuard no_grad;
  return model_(input_ids.to(device()));
}

torch::Tensor TextEncoder::encode(const std::vector<std::string>& prompts, int64_t max_length) {
  T4G_CHECK(!prompts.empty(), "text encoder: no prompts to encode");
  return encode_ids(tokenize(prompts, max_length).input_ids);
}

void TextEncoder::enable_cache(const std::string& folder, const std::string& model_id) {
  const std::string id = model_id.empty() ? identity_ : model_id + "-" + dtype_label(dtype_);
  cache_ = std::make_shared<TextEmbeddingCache>(folder, id);
}

torch::Tensor TextEncoder::encode_cached(const std::vector<std::string>& prompts, int64_t max_length) {
  T4G_CHECK(!prompts.empty(), "text encoder: no prompts to encode");
  if (cache_ == nullptr) return encode(prompts, max_length);
  std::vector<torch::Tensor> rows(prompts.size());
  std::map<std::string, std::vector<size_t>> missing;  // prompt -> positions in the batch
  for (size_t i = 0; i < prompts.size(); ++i) {
    // A prompt repeated in the batch is looked up (and encoded) once.
    if (missing.count(prompts[i]) != 0) {
      missing[prompts[i]].push_back(i);
      continue;
    }
    rows[i] = cache_->get(prompts[i], max_length);
    if (!rows[i].defined()) missing[prompts[i]].push_back(i);
  }
  if (!missing.empty()) {
    std::vector<std::string> to_encode;
    for (const auto& entry : missing) to_encode.push_back(entry.first);
    const TokenizedPrompts tokens = tokenize(to_encode, max_length);
    const torch::Tensor embeds = encode_ids(tokens.input_ids);
    for (size_t k = 0; k < to_encode.size(); ++k) {
      const torch::Tensor row = embeds[static_cast<int64_t>(k)];
      cache_->put(to_encode[k], max_length, row, tokens.input_ids[static_cast<int64_t>(k)]);
      for (const size_t i : missing[to_encode[k]]) rows[i] = row;
    }
  }
  for (auto& row : rows) row = row.to(device(), dtype_);
  return torch::stack(rows);
}

torch::Device parse_device(const std::string& name) {
  ErrorContext ctx;
  ctx.expected = "cpu, cuda or cuda:N";
  ctx.got = name;
  std::optional<torch::Device> device;
  try {
    device.emplace(name);
  } catch (const c10::Error&) {
    throw Error("unknown device", ctx);
  }
  T4G_CHECK_CTX(device->is_cpu() || device->is_cuda(), ctx, "unsupported device");
  if (device->is_cuda()) {
    ctx.expected = "a visible CUDA device";
    T4G_CHECK_CTX(torch::cuda::is_available() && device->index() < static_cast<int>(torch::cuda::device_count()), ctx,
                  "CUDA device not available");
  }
  return *device;
}

int64_t model_text_length(const std::string& root) {
  const std::string config = path_join(path_join(root, "transformer"), "config.json");
  if (!is_regular_file(config)) return 226;
  return json_get_or<int64_t>(read_json(config), "max_text_seq_length", 226, config);
}

EncodeTextFileReport encode_text_file(const EncodeTextFileOptions& options) {
  T4G_CHECK(!options.prompts.empty(), "encode-text: give at least one --prompt");
  const int64_t max_length = options.max_length > 0 ? options.max_length : model_text_length(options.model);
  ErrorContext ctx;
  ctx.key = "--max-length";
  ctx.expected = "at least 1";
  ctx.got = std::to_string(max_length);
  T4G_CHECK_CTX(max_length >= 1, ctx, "bad max_length");
  auto encoder = TextEncoder::load(options.model, parse_device(options.device), options.dtype);
  if (!options.cache.empty()) encoder.enable_cache(options.cache);

  const auto start = std::chrono::steady_clock::now();
  // With a cache, encode_cached warns for the prompts it encodes; cached ones stay quiet.
  const TokenizedPrompts tokens = encoder.tokenize(options.prompts, max_length, options.cache.empty());
  const torch::Tensor embeds = options.cache.empty() ? encoder.encode_ids(tokens.input_ids)
                                                     : encoder.encode_cached(options.prompts, max_length);
  // The negative prompt and "" once each (the pipeline encodes the negative per video; the
  // embeddings are equal).
  const torch::Tensor negative = encoder.encode_cached({options.negative_prompt}, max_length);
  const torch::Tensor empty =
      options.negative_prompt.empty() ? negative : encoder.encode_cached({std::string()}, max_length);
  if (embeds.is_cuda()) torch::cuda::synchronize();
  EncodeTextFileReport report;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report.shape = embeds.sizes().vec();
  for (const bool t : tokens.truncated) report.truncated += t ? 1 : 0;

  std::map<std::string, torch::Tensor> tensors;
  tensors["prompt_embeds"] = embeds.to(torch::kCPU, torch::kFloat32).contiguous();
  tensors["negative_prompt_embeds"] =
      negative.to(torch::kCPU, torch::kFloat32).expand({embeds.size(0), -1, -1}).contiguous();
  tensors["empty_prompt_embeds"] = empty.to(torch::kCPU, torch::kFloat32).contiguous();
  tensors["input_ids"] = tokens.input_ids;
  tensors["attention_mask"] = tokens.attention_mask;
  save_safetensors(options.output, tensors,
                   {{"prompts", Json(options.prompts).dump(-1, ' ', false, Json::error_handler_t::replace)},
                    {"negative_prompt", Json(options.negative_prompt).dump(-1, ' ', false, Json::error_handler_t::replace)},
                    {"max_length", std::to_string(max_length)},
                    {"dtype", dtype_label(options.dtype)},
                    {"encoder", encoder.identity()}});
  if (encoder.cache() != nullptr) {
    T4G_INFO("text embedding cache ", encoder.cache()->folder(), ": ", encoder.cache()->hits(), " hits, ",
             encoder.cache()->misses(), " misses");
  }
  return report;
}

torch::Tensor empty_prompt_embedding(const ModelComponents& components, const std::string& file) {
  const auto options = torch::TensorOptions().dtype(components.dtype).device(components.device);
  const int64_t dim = components.text_embed_dim;
  if (!file.empty()) {
    const auto tensors = load_safetensors(file);
    const auto it = tensors.find("text_embedding");
    ErrorContext ctx;
    ctx.file = file;
    ctx.key = "text_embedding";
    T4G_CHECK_CTX(it != tensors.end() || tensors.size() == 1, ctx, "no tensor 'text_embedding' (and more than one tensor)");
    const auto& [name, stored] = it != tensors.end() ? *it : *tensors.begin();
    const torch::Tensor t = stored.dim() == 2 ? stored.unsqueeze(0) : stored;
    ctx.tensor = name;
    ctx.expected = str("[L, ", dim, "] or [1, L, ", dim, "]");
    ctx.got = str("[", shape_string(stored.sizes()), "]");
    T4G_CHECK_CTX(t.dim() == 3 && t.size(0) == 1 && t.size(2) == dim, ctx, "the empty-prompt embedding does not fit the model");
    return t.to(options);
  }
  const std::string& root = components.text_root;
  if (!components.has_random_weights() && !root.empty() && is_directory(path_join(root, "text_encoder")) &&
      is_directory(path_join(root, "tokenizer"))) {
    TextEncoder encoder = TextEncoder::load(root, components.device, components.dtype);
    return encoder.encode({""}, components.text_tokens).to(options);
  }
  if (!components.has_random_weights()) {
    T4G_WARN("no text_encoder/ and tokenizer/ in ", root.empty() ? components.source : root, ": zeros stand in for T5(\"\") (pass an embedding file for ",
             "the reference's conditioning)");
  }
  return torch::zeros({1, components.text_tokens, dim}, options);
}

}  // namespace t4g
