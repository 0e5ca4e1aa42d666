// `t4g transfer` end to end (see motion_transfer_file.h).
#include "eval/motion_transfer_file.h"

#include <chrono>

#include "common/error.h"
#include "common/fs.h"
#include "common/hdf5.h"
#include "common/json.h"
#include "common/log.h"
#include "common/safetensors.h"
#include "common/shape_string.h"
#include "data/shards.h"
#include "data/video_io.h"
#include "eval/motion_fidelity.h"
#include "eval/sample_file.h"

namespace t4g {
namespace {

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "0,3" for {0, 3}.
std::string index_list(const std::vector<int64_t>& indices) {
  std::string text;
  for (const int64_t i : indices) text += (text.empty() ? "" : ",") + std::to_string(i);
  return text;
}

// "dir/name.ext" -> "dir/name".
std::string without_extension(const std::string& path) {
  const std::string name = file_name(path);
  const auto dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0) return path;
  return path.substr(0, path.size() - (name.size() - dot));
}

void check_frames(const torch::Tensor& frames, const std::string& spec) {
  ErrorContext ctx;
  ctx.file = spec;
  ctx.tensor = "frames";
  ctx.expected = "uint8 [F, H, W, 3]";
  ctx.got = std::string(c10::toString(frames.scalar_type())) + " " + shape_string(frames.sizes());
  T4G_CHECK_CTX(
      frames.dim() == 4 && frames.size(3) == 3 && frames.size(0) >= 1 && frames.scalar_type() == torch::kUInt8, ctx,
      spec, ": reference frames must be ", ctx.expected, ", got ", ctx.got);
}

// The prompt file's tensor `empty_prompt_embeds` (T5 of ""), or the tiny model's zeros.
torch::Tensor empty_prompt_embeddings(const TransferFileOptions& options, const ModelComponents& components) {
  if (!options.prompt_embeds.empty()) {
    const SafetensorsFile file(options.prompt_embeds);
    ErrorContext ctx;
    ctx.file = options.prompt_embeds;
    ctx.tensor = "empty_prompt_embeds";
    ctx.expected = "[1, L, D], the text encoder's output for the empty prompt";
    T4G_CHECK_CTX(file.contains("empty_prompt_embeds"), ctx, options.prompt_embeds,
                  ": no tensor empty_prompt_embeds (the T5 embedding of \"\", which the reference video's forward is "
                  "conditioned on)");
    return file.tensor("empty_prompt_embeds").clone();
  }
  return tiny_text_embeddings(components, 1);
}

}  // namespace

torch::Tensor read_reference_frames(const std::string& spec) {
  ErrorContext ctx;
  ctx.file = spec;
  T4G_CHECK_CTX(!spec.empty(), ctx, "a reference video is required (--reference VIDEO|FRAMES.h5|SHARDS_DIR:ID)");
  const auto colon = spec.rfind(':');
  if (colon != std::string::npos && colon > 0 && is_directory(spec.substr(0, colon))) {
    const std::string dir = spec.substr(0, colon);
    const std::string id = spec.substr(colon + 1);
    const data::ShardReader reader(dir);
    ctx.file = dir;
    ctx.key = id;
    T4G_CHECK_CTX(reader.contains(id), ctx, dir, " has no video with id '", id, "'");
    const torch::Tensor frames = reader.read(id).frames;
    check_frames(frames, spec);
    return frames;
  }
  T4G_CHECK_CTX(path_exists(spec), ctx, "reference video not found: ", spec);
  if (ends_with(spec, ".h5") || ends_with(spec, ".hdf5")) {
    h5::File file = h5::File::open(spec);
    ctx.tensor = "frames";
    T4G_CHECK_CTX(file.root().has_dataset("frames"), ctx, spec, ": no dataset frames (uint8 [F, H, W, 3])");
    const torch::Tensor frames = file.root().read("frames");
    check_frames(frames, spec);
    return frames;
  }
  data::VideoReadOptions read;
  read.height = 0;
  read.width = 0;
  read.frames = 0;
  return data::read_video(spec, read).frames;
}

torch::Tensor fit_reference_frames(const torch::Tensor& frames, int64_t count, int64_t height, int64_t width,
                                   const std::string& spec) {
  check_frames(frames, spec);
  ErrorContext ctx;
  ctx.file = spec;
  ctx.expected = "at least " + std::to_string(count) + " frames";
  ctx.got = std::to_string(frames.size(0)) + " frames";
  T4G_CHECK_CTX(frames.size(0) >= count, ctx, "the reference ", spec, " has ", frames.size(0),
                " frames, the transfer needs ", count, " (one per generated frame; --frames sets the count)");
  torch::Tensor out = frames.slice(0, 0, count);
  if (out.size(1) == height && out.size(2) == width) return out.contiguous();
  namespace F = torch::nn::functional;
  const torch::Tensor x = out.permute({0, 3, 1, 2}).to(torch::kFloat32);
  const torch::Tensor resized = F::interpolate(x, F::InterpolateFuncOptions()
                                                      .size(std::vector<int64_t>{height, width})
                                                      .mode(torch::kBilinear)
                                                      .align_corners(false)
                                                      .antialias(true));
  return resized.round().clamp(0, 255).to(torch::kUInt8).permute({0, 2, 3, 1}).contiguous();
}

int64_t default_transfer_frames(int64_t reference_frames, const CogVideoXTransformerConfig& config) {
  const int64_t ratio = config.temporal_compression_ratio;
  const int64_t frames = std::min(reference_frames, config.sample_frames);
  return frames < 1 ? 1 : ((frames - 1) / ratio) * ratio + 1;
}

TransferFileReport transfer_to_file(const Config& recipe, const TransferFileOptions& options) {
  T4G_CHECK(!options.out.empty(), "an output file is required (--out)");
  // Cheap checks first, before loading a model.
  LearnedPositions reuse;
  if (!options.load_posemb.empty()) reuse = load_learned_positions(options.load_posemb);
  if (!options.prompt_embeds.empty()) read_prompt_embeddings(options.prompt_embeds);
  torch::Tensor reference_frames;
  if (options.load_posemb.empty() || !options.reference.empty()) {
    reference_frames = read_reference_frames(options.reference);
  }

  ComponentRequest request = options.components;
  request.vae = true;  // encodes the reference, decodes the result
  ModelComponents components = load_model_components(recipe.model, static_cast<uint64_t>(recipe.run.seed), request);
  components.transformer->set_gradient_checkpointing(recipe.model.gradient_checkpointing);
  const CogVideoXTransformerConfig& config = components.transformer->config();

  MotionTransferOptions transfer = options.transfer;
  if (!options.load_posemb.empty()) transfer.target = TransferTarget::kPositions;  // reuse implies the target
  if (transfer.sample.frames == 0 && reference_frames.defined()) {
    transfer.sample.frames = default_transfer_frames(reference_frames.size(0), config);
  }
  if (options.dynamic_cfg_auto) transfer.sample.dynamic_cfg = config.use_rotary_positional_embeddings;
  check_transfer_options(config, transfer);
  const SampleGeometry geometry = resolve_sample_geometry(config, transfer.sample);
  warn_if_untrained_size(components, geometry.frames, geometry.height, geometry.width, "transfer");

  SampleFileOptions sample_file;
  sample_file.prompt_embeds = options.prompt_embeds;
  const PromptEmbeddings prompts = prompt_embeddings_for(sample_file, components);
  torch::Tensor empty = empty_prompt_embeddings(options, components);
  const std::vector<std::string> paths = sample_output_paths(options.out, 1);

  torch::Tensor reference_latents;
  torch::Tensor fitted;
  if (reference_frames.defined()) {
    fitted =
        fit_reference_frames(reference_frames, geometry.frames, geometry.height, geometry.width, options.reference);
  }
  // The reference's latents serve the AMF extraction and, on the guided steps, the KV injection
  // (which a zero-shot reuse of saved embeddings keeps, as the reference's --inject_embeds run does).
  if (fitted.defined() && (options.load_posemb.empty() || !transfer.injection_blocks.empty())) {
    reference_latents = encode_frames_to_latents(components.vae, fitted.unsqueeze(0));
  }
  T4G_INFO("transfer: ", components.source, " on ", components.device.str(), ", ", geometry.frames, " x ",
           geometry.height, " x ", geometry.width, ", ", transfer.sample.steps, " steps (",
           resolve_guidance_steps(transfer), " guided x ", transfer.iterations, " iterations), target ",
           transfer.target == TransferTarget::kLatents ? "latents" : "posemb",
           options.load_posemb.empty() ? "" : " (reusing " + options.load_posemb + ")",
           transfer.injection_blocks.empty() ? ", no KV injection"
                                             : ", KV injection at blocks " + index_list(transfer.injection_blocks));

  const auto start = std::chrono::steady_clock::now();
  const MotionTransferResult result = transfer_motion(components, reference_latents, prompts, empty, transfer,
                                                      options.load_posemb.empty() ? nullptr : &reuse);
  TransferFileReport report;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  write_sampled_video(paths[0], result.sample.frames[0], options.fps, transfer.sample);
  report.files.push_back(paths[0]);

  std::string posemb_path;
  if (transfer.target == TransferTarget::kPositions && options.load_posemb.empty()) {
    posemb_path =
        options.save_posemb.empty() ? without_extension(paths[0]) + ".posemb.safetensors" : options.save_posemb;
    save_learned_positions(posemb_path, result.positions);
    report.files.push_back(posemb_path);
  }

  Json iterations = Json::array();
  for (const TransferIteration& it : result.iterations) {
    iterations.push_back(
        {{"step", it.step}, {"timestep", it.timestep}, {"iteration", it.iteration}, {"lr", it.lr}, {"loss", it.loss}});
  }
  if (!result.iterations.empty()) {
    report.first_loss = result.iterations.front().loss;
    report.last_loss = result.iterations.back().loss;
  }
  // Motion Fidelity of the result against the reference, from flow-chained tracks (the reference
  // uses CoTracker3; see eval/motion_fidelity.h). Needs OpenCV's optical flow.
  Json fidelity = nullptr;
  if (fitted.defined() && data::have_opencv()) {
    report.motion_fidelity = motion_fidelity_from_flow(result.sample.frames[0], fitted);
    fidelity = report.motion_fidelity;
  }
  std::vector<int64_t> blocks;
  for (const auto& [b, _] : result.reference_amf) blocks.push_back(b);
  const Json json = {
      {"reference", options.reference},
      {"model", components.source},
      {"target", transfer.target == TransferTarget::kLatents ? "latents" : "posemb"},
      {"load_posemb", options.load_posemb},
      {"save_posemb", posemb_path},
      {"blocks", blocks},
      {"injection_blocks", transfer.injection_blocks},
      {"frames", geometry.frames},
      {"height", geometry.height},
      {"width", geometry.width},
      {"steps", transfer.sample.steps},
      {"guidance_steps", resolve_guidance_steps(transfer)},
      {"iterations_per_step", transfer.iterations},
      {"lr", {transfer.lr_start, transfer.lr_end}},
      {"temperature", transfer.amf.temperature},
      {"guidance_scale", transfer.sample.guidance_scale},
      {"dynamic_cfg", transfer.sample.dynamic_cfg},
      {"seed", transfer.sample.seed},
      {"guided_timesteps", result.guided_timesteps},
      {"guidance_seconds", result.guidance_seconds},
      {"seconds", report.seconds},
      {"video", paths[0]},
      {"motion_fidelity_flow", fidelity},
      {"iterations", iterations},
  };
  const std::string report_path = options.report.empty() ? without_extension(paths[0]) + ".json" : options.report;
  write_json(report_path, json);
  report.files.push_back(report_path);
  return report;
}

}  // namespace t4g
