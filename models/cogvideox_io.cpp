// Transformer loading from the diffusers layout and the file-to-file forward. The strict copy is
// models/diffusers_layout's; this file only picks the component, builds the model from its config
// and checks the input tensors with errors that name the file and the tensor.
#include "models/cogvideox_io.h"

#include "common/error.h"
#include "common/safetensors.h"
#include "models/diffusers_layout.h"

namespace t4g {

CogVideoXTransformer3DModel load_cogvideox_transformer(const std::string& path, const TransformerLoadOptions& options) {
  const auto layout = resolve_diffusers_layout(path);
  const DiffusersComponent& component =
      layout.kind == DiffusersLayoutKind::kPipeline ? layout.component("transformer") : layout.components.at(0);
  ErrorContext ctx;
  ctx.file = component.folder;
  T4G_CHECK_CTX(!component.config_path.empty(), ctx, "no config.json next to the transformer weights");
  T4G_CHECK_CTX(!component.weights_path.empty(), ctx, "no safetensors weights in the transformer folder");
  T4G_CHECK_CTX(options.dtype == torch::kFloat32 || options.dtype == torch::kBFloat16, ctx,
                "the transformer runs in fp32 or bf16");
  CogVideoXTransformer3DModel model(load_cogvideox_transformer_config(component.config_path));
  // Cast first so the loader converts each stored tensor straight into the compute dtype.
  model->to(options.dtype);
  load_module_weights(*model, component.weights_path);
  model->to(options.device);
  model->eval();
  return model;
}

namespace {

torch::Tensor required(const std::map<std::string, torch::Tensor>& tensors, const std::string& name, int64_t dims,
                       const std::string& file, const std::string& layout) {
  ErrorContext ctx;
  ctx.file = file;
  ctx.tensor = name;
  ctx.expected = layout;
  const auto it = tensors.find(name);
  T4G_CHECK_CTX(it != tensors.end(), ctx, "missing input tensor");
  if (it->second.dim() != dims) {
    std::ostringstream got;
    got << it->second.sizes();
    ctx.got = got.str();
    throw Error("wrong input shape", ctx);
  }
  return it->second;
}

}  // namespace

void forward_transformer_file(const ForwardTransformerFileOptions& options) {
  auto model = load_cogvideox_transformer(options.model, options.load);
  const auto inputs = load_safetensors(options.inputs);
  const auto x = required(inputs, "hidden_states", 5, options.inputs, "[B, F, C, H, W]");
  const auto text = required(inputs, "encoder_hidden_states", 3, options.inputs, "[B, S, D]");
  const auto t = required(inputs, "timestep", 1, options.inputs, "[B]");

  TransformerForwardOptions forward;
  if (inputs.count("ofs") != 0) forward.ofs = inputs.at("ofs");
  ProbeOptions probes;
  if (options.probe_layer) {
    probes.query_key_layers = {*options.probe_layer};
    forward.probes = &probes;
  }
  torch::NoGradGuard no_grad;
  const auto out = model(x, text, t, forward);

  std::map<std::string, torch::Tensor> tensors;
  auto f32 = [](const torch::Tensor& v) { return v.to(torch::kCPU, torch::kFloat32).contiguous(); };
  tensors["sample"] = f32(out.sample);
  if (options.probe_layer) {
    const auto n = std::to_string(*options.probe_layer);
    tensors["query_L" + n] = f32(out.captured.query.at(*options.probe_layer));
    tensors["key_L" + n] = f32(out.captured.key.at(*options.probe_layer));
  }
  save_safetensors(options.output, tensors);
}

}  // namespace t4g
