// DINO's Vision Transformer (facebookresearch/dino vision_transformer.py), the feature extractor of
// VBench's subject consistency (research/benchmarks.md 3.1): patch embedding, CLS token, learned
// positional embedding resized by DINO's interpolate_pos_encoding for other input sizes, pre-norm
// blocks, final LayerNorm; the output is the CLS token. Submodule names are the keys of
// torch.hub's dino_vitb16 state dict, so the released weights load by name and strictly.
//
// Weights: convert DINO's checkpoint once to safetensors, keeping its keys (Python):
//   sd = torch.load("dino_vitbase16_pretrain.pth", map_location="cpu")
//   safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, "dino_vitb16.safetensors")
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>

namespace t4g {

// Shape of a DINO ViT. Defaults are ViT-B/16 (dino_vitb16).
struct DinoVitConfig {
  int64_t image_size = 224;      // training resolution: pos_embed has (image_size / patch_size)^2 + 1 rows
  int64_t patch_size = 16;       // square patches; the stride-`patch_size` conv drops remainder pixels
  int64_t dim = 768;             // embedding width
  int64_t depth = 12;            // number of blocks
  int64_t heads = 12;            // attention heads (dim must be divisible by heads)
  int64_t mlp_hidden = 3072;     // MLP width: int(dim * mlp_ratio), DINO uses mlp_ratio 4
  bool qkv_bias = true;          // DINO's vit_* models use qkv_bias=True
  double layer_norm_eps = 1e-6;  // DINO's vit_* models use LayerNorm(eps=1e-6)

  // Throws t4g::Error naming the field when a value is out of range.
  void validate() const;
};

// attn: LayerNorm'ed tokens -> multi-head self-attention (scale head_dim^-0.5, DINO's default).
class DinoAttentionImpl : public torch::nn::Module {
 public:
  DinoAttentionImpl(const DinoVitConfig& config);
  torch::Tensor forward(const torch::Tensor& x);  // [B, N, dim] -> [B, N, dim]

  torch::nn::Linear qkv{nullptr};   // dim -> 3 * dim, laid out (q | k | v) x heads x head_dim
  torch::nn::Linear proj{nullptr};  // dim -> dim

 private:
  int64_t heads_;
};
TORCH_MODULE(DinoAttention);

// mlp: fc1 -> exact (erf) GELU -> fc2.
class DinoMlpImpl : public torch::nn::Module {
 public:
  DinoMlpImpl(const DinoVitConfig& config);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear fc1{nullptr};
  torch::nn::Linear fc2{nullptr};
};
TORCH_MODULE(DinoMlp);

// One pre-norm block: x + attn(norm1(x)), then + mlp(norm2(x)).
class DinoBlockImpl : public torch::nn::Module {
 public:
  DinoBlockImpl(const DinoVitConfig& config);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::LayerNorm norm1{nullptr};
  DinoAttention attn{nullptr};
  torch::nn::LayerNorm norm2{nullptr};
  DinoMlp mlp{nullptr};
};
TORCH_MODULE(DinoBlock);

// patch_embed: the stride-patch convolution ("patch_embed.proj").
class DinoPatchEmbedImpl : public torch::nn::Module {
 public:
  DinoPatchEmbedImpl(const DinoVitConfig& config);
  torch::Tensor forward(const torch::Tensor& x);  // [B, 3, H, W] -> [B, (H/p)*(W/p), dim]

  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(DinoPatchEmbed);

// The whole ViT; parameters cls_token [1, 1, dim] and pos_embed [1, 1 + n*n, dim] plus the
// submodules patch_embed, blocks.{i}, norm.
class DinoVitImpl : public torch::nn::Module {
 public:
  explicit DinoVitImpl(const DinoVitConfig& config);

  // Normalised images [B, 3, H, W] (H, W >= patch_size) -> CLS features after the final norm [B, dim].
  torch::Tensor forward(const torch::Tensor& images);

  // The positional embedding for an H x W input: pos_embed itself when the patch count equals the
  // trained one and H == W; otherwise the patch grid resized as DINO's interpolate_pos_encoding:
  // bicubic (A = -0.75, align_corners=False) with scale factors ((H/p + 0.1)/n, (W/p + 0.1)/n),
  // which the kernel uses as given for its source coordinates, giving an (H/p) x (W/p) grid.
  // Returns [1, 1 + (H/p)*(W/p), dim].
  torch::Tensor interpolate_pos_encoding(int64_t height, int64_t width);

  const DinoVitConfig& config() const { return config_; }

  torch::Tensor cls_token;
  torch::Tensor pos_embed;
  DinoPatchEmbed patch_embed{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};

 private:
  DinoVitConfig config_;
  int64_t grid_;  // side of the trained positional grid (image_size / patch_size)
};
TORCH_MODULE(DinoVit);

// The configuration a DINO state dict implies: dim from cls_token, patch size from
// patch_embed.proj.weight, image_size from pos_embed's row count, depth from the blocks.{i}
// keys, mlp_hidden from blocks.0.mlp.fc1.weight, qkv_bias from blocks.0.attn.qkv.bias. The head
// count is not in the tensors: the file's metadata "num_heads" when present, else dim / 64 (the
// head width of every DINO ViT: vit_tiny 192/3, vit_small 384/6, vit_base 768/12).
// Throws t4g::Error naming the file and tensor when a needed tensor is missing or mis-shaped.
DinoVitConfig dino_vit_config_from_file(const std::string& path);

// Builds the ViT that `path` (a .safetensors file with DINO's key names) implies, loads it strictly
// (missing, unexpected or mis-shaped tensors are one error naming the file) and returns it in eval
// mode, fp32, on `device`. A missing file is one error naming it.
DinoVit load_dino_vit(const std::string& path, const torch::Device& device = torch::kCPU);

// A metric's preprocessing: uint8 frames [B, H, W, 3] -> normalised images [B, 3, h, w], computed
// on the frames' device.
using DinoPreprocess = std::function<torch::Tensor(const torch::Tensor&)>;

// CLS features [T, dim] (fp32, on the model's device) of uint8 frames [T, H, W, 3] (any device),
// without gradients, `batch_size` frames per forward: each batch is moved to the model's device
// and preprocessed there (a whole video's resized float frames would be large). The ViT treats
// each image independently, so the batch size does not change the features.
torch::Tensor dino_features_batched(DinoVit& model, const torch::Tensor& frames, int64_t batch_size,
                                   const DinoPreprocess& preprocess);

}  // namespace t4g
