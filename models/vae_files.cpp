// safetensors in, VAE, safetensors out (see vae_files.h).
#include "models/vae_files.h"

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <map>

#include "common/error.h"
#include "common/safetensors.h"

namespace t4g {

torch::Dtype parse_compute_dtype(const std::string& name) {
  if (name == "fp32" || name == "float32") return torch::kFloat32;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  if (name == "fp16" || name == "float16") return torch::kFloat16;
  ErrorContext ctx;
  ctx.expected = "fp32, bf16 or fp16";
  ctx.got = name;
  throw Error("unknown compute dtype", ctx);
}

VaeFileReport run_vae_file(const VaeFileOptions& o) {
  const bool encode = o.mode == VaeFileMode::kEncode;
  // Read and pick the input before loading the model: a wrong file fails fast.
  SafetensorsFile file(o.input);
  const std::vector<std::string> names = file.names();
  std::string name = o.tensor;
  if (name.empty()) name = names.size() == 1 ? names.front() : (encode ? "video" : "latents");
  if (!file.contains(name)) {
    ErrorContext ctx;
    ctx.file = o.input;
    ctx.tensor = name;
    std::string have;
    for (const auto& n : names) have += (have.empty() ? "" : ", ") + n;
    ctx.got = have.empty() ? "no tensors" : have;
    throw Error("input tensor not found (choose one with --tensor)", ctx);
  }
  const torch::Tensor input = file.tensor(name);

  VaeLoadOptions load;
  load.dtype = o.dtype;
  load.device = torch::Device(o.device);
  load.run.tiling.enabled = o.tiled;
  AutoencoderKLCogVideoX vae = load_cogvideox_vae(o.model, load);
  torch::NoGradGuard no_grad;

  VaeFileReport report;
  report.input_tensor = name;
  report.input_shape = input.sizes().vec();
  const auto start = std::chrono::steady_clock::now();
  std::map<std::string, torch::Tensor> out;
  try {
    if (encode) {
      const VaePosterior posterior = vae->encode(input);
      torch::Tensor z = posterior.mean;
      if (o.sample) z = posterior.sample(at::make_generator<at::CPUGeneratorImpl>(o.seed));
      out["latents"] = (z * vae->config().scaling_factor).to(torch::kCPU, torch::kFloat32);
      out["mean"] = posterior.mean.to(torch::kCPU, torch::kFloat32);
      out["logvar"] = posterior.logvar.to(torch::kCPU, torch::kFloat32);
      report.output_shape = out["latents"].sizes().vec();
    } else {
      const torch::Tensor video = o.scaled ? vae->decode_latents(input) : vae->decode(input);
      out["video"] = video.to(torch::kCPU, torch::kFloat32);
      report.output_shape = out["video"].sizes().vec();
    }
  } catch (const Error& e) {
    // Name the input file beside the tensor the model complained about.
    ErrorContext ctx = e.context();
    ctx.file = o.input;
    throw Error(e.message(), ctx);
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  save_safetensors(o.output, out, {{"format", "pt"}});
  return report;
}

}  // namespace t4g
