// `t4g sample` end to end (see sample_file.h): model, prompt embeddings, sampling, video files.
#include "eval/sample_file.h"

#include <numeric>

#include "common/error.h"
#include "common/fs.h"
#include "common/hdf5.h"
#include "common/log.h"
#include "common/safetensors.h"
#include "common/shape_string.h"
#include "data/video_io.h"
#include "models/text_encoder.h"

namespace t4g {
namespace {

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_hdf5_name(const std::string& path) { return ends_with(path, ".h5") || ends_with(path, ".hdf5"); }

// "dir/name.ext" -> ("dir/name", ".ext"); no extension -> (path, "").
std::pair<std::string, std::string> split_extension(const std::string& path) {
  const std::string name = file_name(path);
  const auto dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0) return {path, ""};
  const size_t cut = path.size() - (name.size() - dot);
  return {path.substr(0, cut), path.substr(cut)};
}

}  // namespace

PromptEmbeddings read_prompt_embeddings(const std::string& path) {
  ErrorContext ctx;
  ctx.file = path;
  T4G_CHECK_CTX(is_regular_file(path), ctx, "prompt embeddings file not found: ", path);
  const SafetensorsFile file(path);
  ctx.tensor = "prompt_embeds";
  ctx.expected = "a tensor prompt_embeds [B, L, D]";
  T4G_CHECK_CTX(file.contains("prompt_embeds"), ctx, path, ": no tensor prompt_embeds (found: ",
                [&] {
                  std::string names;
                  for (const auto& n : file.names()) names += (names.empty() ? "" : ", ") + n;
                  return names.empty() ? std::string("none") : names;
                }(),
                ")");
  PromptEmbeddings prompts;
  prompts.positive = file.tensor("prompt_embeds").clone();
  if (file.contains("negative_prompt_embeds")) prompts.negative = file.tensor("negative_prompt_embeds").clone();
  for (const auto& [name, tensor] : {std::pair<const char*, const torch::Tensor*>{"prompt_embeds", &prompts.positive},
                                     {"negative_prompt_embeds", &prompts.negative}}) {
    if (!tensor->defined()) continue;
    ctx.tensor = name;
    ctx.expected = "a floating-point [B, L, D] tensor";
    ctx.got = std::string(c10::toString(tensor->scalar_type())) + " " + shape_string(tensor->sizes());
    T4G_CHECK_CTX(tensor->dim() == 3 && tensor->is_floating_point(), ctx, path, ": ", name, " must be ", ctx.expected,
                  ", got ", ctx.got);
  }
  if (prompts.negative.defined()) {
    ctx.tensor = "negative_prompt_embeds";
    ctx.expected = shape_string(prompts.positive.sizes()) + " like prompt_embeds";
    ctx.got = shape_string(prompts.negative.sizes());
    T4G_CHECK_CTX(prompts.negative.sizes() == prompts.positive.sizes(), ctx, path,
                  ": negative_prompt_embeds must have the shape of prompt_embeds: expected ", ctx.expected, ", got ",
                  ctx.got);
  }
  return prompts;
}

PromptEmbeddings prompt_embeddings_for(const SampleFileOptions& options, const ModelComponents& components) {
  ErrorContext both;
  both.key = "--prompt / --prompt-embeds";
  T4G_CHECK_CTX(options.prompts.empty() || options.prompt_embeds.empty(), both, "give text prompts or a prompt-embeddings file, not both");
  if (!options.prompt_embeds.empty()) return read_prompt_embeddings(options.prompt_embeds);
  if (!options.prompts.empty()) {
    ErrorContext ctx;
    ctx.file = components.source;
    ctx.expected = "a diffusers pipeline folder with text_encoder/ and tokenizer/";
    T4G_CHECK_CTX(!components.has_random_weights(), ctx, "text prompts need a text encoder, and ", components.source,
                  " has none (use --prompt-embeds, or nothing for empty prompts)");
    // T5 in the transformer's compute dtype on its device, as the pipeline casts the embeddings.
    TextEncoder encoder = TextEncoder::load(components.text_root.empty() ? components.source : components.text_root,
                                            components.device, components.dtype);
    if (!options.text_cache.empty()) encoder.enable_cache(options.text_cache);
    const int64_t length = components.transformer->config().max_text_seq_length;
    PromptEmbeddings prompts;
    prompts.positive = encoder.encode_cached(options.prompts, length);
    prompts.negative = encoder.encode_cached(std::vector<std::string>(options.prompts.size(), options.negative_prompt), length);
    return prompts;
  }
  ErrorContext ctx;
  ctx.file = components.source;
  ctx.expected = "--prompt TEXT or --prompt-embeds FILE.safetensors";
  T4G_CHECK_CTX(components.is_tiny(), ctx, "sampling ", components.source,
                " needs a prompt: --prompt TEXT (encoded by the model's T5), or --prompt-embeds FILE.safetensors "
                "(`t4g encode-text` writes one)");
  // The tiny model has no text encoder: its prompts are empty, like DiffTrack's tracking prompts.
  PromptEmbeddings prompts;
  prompts.positive = tiny_text_embeddings(components, 1);
  prompts.negative = tiny_text_embeddings(components, 1);
  return prompts;
}

std::vector<std::string> sample_output_paths(const std::string& out, int64_t batch) {
  T4G_CHECK(!out.empty(), "an output file is required");
  std::string base = out;
  if (!is_hdf5_name(base) && !data::have_opencv()) {
    base = split_extension(base).first + ".h5";
    T4G_WARN("this build has no OpenCV, so no mp4: writing the frames to ", base, " (HDF5, dataset frames)");
  }
  if (batch == 1) return {base};
  const auto [stem, ext] = split_extension(base);
  std::vector<std::string> paths;
  for (int64_t i = 0; i < batch; ++i) paths.push_back(stem + "_" + std::to_string(i) + ext);
  return paths;
}

void write_sampled_video(const std::string& path, const torch::Tensor& frames, double fps,
                         const SampleOptions& options) {
  ErrorContext ctx;
  ctx.file = path;
  ctx.tensor = "frames";
  ctx.expected = "uint8 [F, H, W, 3]";
  ctx.got = std::string(c10::toString(frames.scalar_type())) + " " + shape_string(frames.sizes());
  T4G_CHECK_CTX(frames.dim() == 4 && frames.size(3) == 3 && frames.scalar_type() == torch::kUInt8, ctx,
                "frames to write must be ", ctx.expected, ", got ", ctx.got);
  const std::string parent = parent_path(path);
  if (!parent.empty() && parent != ".") make_dirs(parent);
  if (!is_hdf5_name(path)) {
    data::VideoWriteOptions video;
    video.fps = fps;
    data::write_video(path, frames, video);
    return;
  }
  h5::File file = h5::File::create(path);
  h5::Group root = file.root();
  h5::WriteOptions layout;
  layout.chunk = {1, frames.size(1), frames.size(2), 3};  // one frame per chunk: frames read one at a time
  layout.gzip_level = 4;
  h5::Dataset dataset = root.write("frames", frames.contiguous(), layout);
  dataset.set_attr("layout", "uint8 [F, H, W, 3] RGB");
  root.set_attr("fps", fps);
  root.set_attr("steps", options.steps);
  root.set_attr("guidance_scale", options.guidance_scale);
  root.set_attr("dynamic_cfg", static_cast<int64_t>(options.dynamic_cfg ? 1 : 0));
  root.set_attr("seed", static_cast<int64_t>(options.seed));
  std::string layers;
  for (const int64_t l : options.cag_layers) layers += (layers.empty() ? "" : ",") + std::to_string(l);
  root.set_attr("cag_layers", layers);
  root.set_attr("cag_scale", layers.empty() ? 0.0 : options.cag_scale);
  root.set_attr("cag_mode", layers.empty() ? "none" : cag_mode_name(resolve_cag_mode(options)));
  file.commit();
}

SampleFileReport sample_to_file(const Config& recipe, const SampleFileOptions& options) {
  T4G_CHECK(!options.out.empty(), "an output file is required (--out)");
  // Cheap checks first: the output name, then the prompt file, before loading a model.
  if (!options.prompt_embeds.empty()) read_prompt_embeddings(options.prompt_embeds);

  ComponentRequest request = options.components;
  request.vae = options.sample.decode;
  ModelComponents components = load_model_components(recipe.model, static_cast<uint64_t>(recipe.run.seed), request);
  const PromptEmbeddings prompts = prompt_embeddings_for(options, components);
  const std::vector<std::string> paths = sample_output_paths(options.out, prompts.positive.size(0));
  const SampleGeometry geometry = resolve_sample_geometry(components.transformer->config(), options.sample);
  warn_if_untrained_size(components, geometry.frames, geometry.height, geometry.width, "sample");
  try {
    check_prompt_embeddings(prompts, components.transformer->config(), options.sample);
  } catch (const Error& e) {
    ErrorContext ctx = e.context();
    ctx.file = options.prompt_embeds;  // name the file the embeddings came from
    throw Error(e.message(), ctx);
  }
  T4G_INFO("sample: ", components.source,
           components.refiner ? " (with its refiner after block " + std::to_string(components.refiner->config().block) + ")"
                              : std::string(),
           " on ", components.device.str(), " (", c10::toString(components.dtype), "), ", prompts.positive.size(0),
           " video(s) of ", geometry.frames, " x ", geometry.height, " x ", geometry.width, ", ", options.sample.steps,
           " steps, CFG ", options.sample.guidance_scale, options.sample.dynamic_cfg ? " (dynamic)" : "",
           options.sample.cag_layers.empty() ? ""
                                             : ", CAG scale " + std::to_string(options.sample.cag_scale) + " (" +
                                                   cag_mode_name(resolve_cag_mode(options.sample)) + ")");

  SampleOptions sample = options.sample;
  sample.keep_video = !options.save_latents.empty();
  const SampleResult result = sample_video(components, prompts, sample);
  if (!options.save_latents.empty()) {
    std::map<std::string, torch::Tensor> tensors = {{"latents", result.latents.to(torch::kFloat32).cpu().contiguous()}};
    if (result.video.defined()) {
      // diffusers' postprocess_video(output_type="pt"): [B, F, 3, H, W], (x / 2 + 0.5) clamped to [0, 1].
      tensors["video"] =
          (result.video.to(torch::kFloat32) / 2 + 0.5).clamp(0, 1).permute({0, 2, 1, 3, 4}).cpu().contiguous();
    }
    save_safetensors(options.save_latents, tensors);
  }
  SampleFileReport report;
  report.files = paths;
  report.frames_shape = result.frames.sizes().vec();
  report.denoise_seconds = std::accumulate(result.step_seconds.begin(), result.step_seconds.end(), 0.0);
  report.decode_seconds = result.decode_seconds;
  for (size_t i = 0; i < paths.size(); ++i) {
    write_sampled_video(paths[i], result.frames[static_cast<int64_t>(i)], options.fps, options.sample);
  }
  return report;
}

}  // namespace t4g
