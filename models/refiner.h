// The Track4Gen refiner (issue 6 item 1, research/methods.md 2.3): a stack of convolutions on the
// video tokens of one transformer block's output, reshaped to a feature map, that the
// correspondence loss trains, plus a zero-initialised projection that routes the (detached)
// refined features back into the residual stream after that block. At step 0 the stack is the
// identity and the projection is zero, so the backbone's output is bit-identical to a plain one.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>

#include "models/attention_probe.h"

namespace t4g {

// How the refiner's convolutions see time.
enum class RefinerConv {
  k2d,  // Conv2d on each frame alone ([B*F, C, h, w])
  k3d,  // Conv3d across frames ([B, C, F, h, w], zero-padded by kernel/2 in time as in space)
};

// Refiner shape and placement. Defaults are the (2B model).
struct RefinerConfig {
  int64_t block = 17;                   // 0-based transformer block whose output is refined
  int64_t layers = 8;                   // convolution layers in the stack (>= 1)
  RefinerConv conv = RefinerConv::k2d;  // 2D per frame or 3D across frames
  int64_t kernel = 3;                   // odd kernel size, spatial (and temporal for k3d)

  // Throws t4g::Error naming the field when a value is out of range.
  void validate() const;
};

// "2d" / "3d" <-> RefinerConv; parse throws t4g::Error for anything else.
std::string refiner_conv_name(RefinerConv conv);
RefinerConv parse_refiner_conv(const std::string& name);

// The refined feature map of one transformer forward, filled by the refiner's residual hook so
// that the loss and the residual come from ONE refiner evaluation.
struct RefinedFeatures {
  torch::Tensor map;  // [B*F, C, h, w] (batch-major), with autograd history into refiner and backbone
  TokenGrid grid;     // F, h, w of the token grid
  int64_t batch = 0;  // B

  bool defined() const { return map.defined(); }
  // The same map as [B, F, C, h, w] (a view), the layout the correspondence loss takes.
  torch::Tensor video() const;
};

// The refiner and its zero projection.
//
// Identity initialisation: every convolution is Dirac-initialised (the centre tap of channel c to
// c is 1, everything else and the bias 0) and the layers are joined by per-channel PReLUs whose
// slope starts at 1, i.e. the identity function. Chosen over "residual units with a zero last
// conv" because that design gives the convolutions before each zero conv an exactly zero gradient
// at step 0; here every parameter (weights, biases, slopes) gets a non-zero gradient from the
// first step, and the stack can still become non-linear (slopes move away from 1). On CPU the
// identity is bit-exact (only x*1 and x*0 terms are summed); on CUDA, cuDNN may run fp32 convs in
// TF32 or with Winograd transforms, which makes it the identity only to the conv's rounding. The
// backbone's output is bit-identical at step 0 either way, because the projection is exactly zero.
//
// Gradients: the refined map keeps its history, so the correspondence loss trains the refiner and
// (where trainable) the backbone up to the tapped block, which is how tracking supervision reaches
// the video model. The map is DETACHED before the projection (Track4Gen: "we detach the gradients
// of h~ before passing into zeta"), so the diffusion loss trains the projection and the backbone
// but never the refiner.
//
// Parameter names (the keys of refiner.safetensors): convs.{i}.weight/bias, activations.{i}.weight
// (layers - 1 PReLUs), proj.weight/bias.
class RefinerImpl : public torch::nn::Module {
 public:
  // `channels` = the transformer's inner dim (num_attention_heads * attention_head_dim).
  RefinerImpl(const RefinerConfig& config, int64_t channels);

  // Video tokens [B, F*h*w, C] of the tapped block (token order frame, row, col) -> refined map
  // [B*F, C, h, w]. Computed in the parameters' dtype (the input is cast to it).
  torch::Tensor forward(const torch::Tensor& video_hidden, const TokenGrid& grid);

  // What the residual stream gets: proj(detach(map)) as tokens [B, F*h*w, C].
  torch::Tensor project(const torch::Tensor& map, int64_t batch, const TokenGrid& grid);

  // A hook for ProbeOptions::residual_hooks[config().block]: runs forward() on the block's output,
  // stores the map (with its history) in `*out`, and returns project(map). `out` is overwritten by
  // every forward that runs the hook; the trainer reads it after the transformer forward.
  ResidualHook residual_hook(std::shared_ptr<RefinedFeatures> out);

  // The same residual for inference, keeping nothing: proj(forward(video tokens)). What a trained
  // model's transformer adds after the block on every forward (models/trained_model.h
  // attach_refiner), so sampling, transfer and evaluation run the network that was trained.
  ResidualHook inference_residual();

  // Sets probes.residual_hooks[config().block] = residual_hook(out).
  void install(ProbeOptions& probes, std::shared_ptr<RefinedFeatures> out);

  const RefinerConfig& config() const { return config_; }
  int64_t channels() const { return channels_; }

  torch::nn::ModuleList convs{nullptr};        // Conv2d or Conv3d, C -> C, "same" padding
  torch::nn::ModuleList activations{nullptr};  // PReLU(C) between convolutions
  torch::nn::Linear proj{nullptr};             // C -> C, weight and bias zero at init

 private:
  RefinerConfig config_;
  int64_t channels_;
};
TORCH_MODULE(Refiner);

// Writes the refiner's parameters to `path` (safetensors, atomically) with its configuration and
// channel count in the metadata, so load_refiner can rebuild it without the recipe.
void save_refiner(const std::string& path, Refiner& refiner);

// Rebuilds a refiner from a file written by save_refiner and loads it strictly (missing,
// unexpected or mis-shaped tensors are one t4g::Error naming the file and the tensors).
Refiner load_refiner(const std::string& path);

// Loads a file written by save_refiner into an existing refiner; its configuration and channel
// count must equal the file's (an error names the file and the differing field otherwise).
void load_refiner_weights(Refiner& refiner, const std::string& path);

}  // namespace t4g
