// `t4g precompute`: the shards' latents and text embeddings (see precompute.h).
#include "train/precompute.h"

#include <chrono>
#include <map>
#include <vector>

#include "common/error.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "common/progress.h"
#include "data/shards.h"
#include "models/model_components.h"
#include "models/text_encoder.h"
#include "models/trained_model.h"
#include "train/communicator.h"
#include "train/dist_env.h"
#include "train/rendezvous.h"

namespace t4g {
namespace {

// What made a shard's tensors: compared on resume, so another model's latents are never kept.
std::string identity_of(const Config& recipe, const ModelComponents& m, bool text) {
  Json id = {{"model", m.has_random_weights() ? m.source : [&] {
               char buf[4096];
               return ::realpath(m.source.c_str(), buf) != nullptr ? std::string(buf) : m.source;
             }()},
             {"dtype", std::string(c10::toString(m.dtype))},
             {"latents", "vae posterior mean x scaling_factor, [F', C, h, w]"},
             {"text", text},
             {"text_length", m.text_tokens}};
  if (m.has_random_weights()) id["seed"] = base_model_seed(recipe.run.seed);
  if (m.is_tiny()) {
    id["tiny_vae"] = {{"vae_channels", recipe.model.tiny.vae_channels}, {"in_channels", recipe.model.tiny.in_channels}};
  }
  return id.dump();
}

}  // namespace

PrecomputeReport precompute_shards(const Config& recipe, const PrecomputeOptions& options) {
  const DistEnv env = DistEnv::from_env();
  set_log_rank(env.rank);
  const auto store = connect_store(env);
  CommunicatorOptions comm_options;
  comm_options.backend = CommBackend::kStore;  // only barriers: no tensors cross ranks
  std::unique_ptr<Communicator> comm = make_communicator(env, store, comm_options);

  const data::ShardReader reader(options.shards);
  // Shard files in index order, each with its videos.
  std::vector<std::string> files;
  std::map<std::string, std::vector<std::string>> videos_of;
  for (const data::ShardIndexEntry& e : reader.entries()) {
    if (videos_of.count(e.shard) == 0) files.push_back(e.shard);
    videos_of[e.shard].push_back(e.id);
  }
  PrecomputeReport report;
  report.shards = static_cast<int64_t>(files.size());

  ComponentRequest request;
  request.transformer = true;  // the text length and the latent layout it takes
  request.cuda_index = env.local_rank;
  ModelComponents m = load_model_components(recipe.model, base_model_seed(recipe.run.seed), request);
  std::unique_ptr<TextEncoder> encoder;
  if (!m.has_random_weights() && !m.text_root.empty() && is_directory(path_join(m.text_root, "text_encoder"))) {
    encoder = std::make_unique<TextEncoder>(TextEncoder::load(m.text_root, m.device, m.dtype));
  }
  report.text = encoder != nullptr;
  const std::string identity = identity_of(recipe, m, report.text);
  const int64_t ratio = m.vae->config().temporal_compression_ratio;

  const auto start = std::chrono::steady_clock::now();
  ProgressOptions po;
  po.unit = "shards";
  po.enabled = env.is_main();
  ProgressBar bar("precompute", static_cast<int64_t>((files.size() + env.world_size - 1 - env.rank) / env.world_size), po);
  for (size_t i = static_cast<size_t>(env.rank); i < files.size(); i += static_cast<size_t>(env.world_size)) {
    const std::string path = path_join(options.shards, files[i]);
    const data::ShardHeader header = data::read_shard_header(path);
    if (!options.force && header.precomputed == identity) {
      ++report.skipped;
      bar.update();
      continue;
    }
    std::vector<data::ShardVideo> videos;
    for (const std::string& id : videos_of[files[i]]) {
      data::ShardVideo v = reader.read(id);
      const int64_t frames = v.frames.size(0);
      ErrorContext ctx;
      ctx.file = path;
      ctx.key = id;
      ctx.expected = t4g::str(ratio, "k+1 frames (the VAE's)");
      ctx.got = std::to_string(frames);
      T4G_CHECK_CTX((frames - 1) % ratio == 0, ctx, "cannot precompute latents for this video");
      torch::NoGradGuard no_grad;
      v.latents = encode_frames_to_latents(m.vae, v.frames.unsqueeze(0))[0].to(torch::kCPU).contiguous();
      v.text_embedding = encoder ? encoder->encode({v.prompt}, m.text_tokens)[0].to(torch::kCPU).contiguous()
                                 : torch::Tensor();
      videos.push_back(std::move(v));
      ++report.videos;
    }
    data::ShardWriteOptions write;
    write.recipe = header.recipe;
    write.precomputed = identity;
    data::write_shard(path, videos, write);
    ++report.written;
    bar.update();
  }
  bar.finish();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  comm->barrier();  // every shard is rewritten before the index is
  if (env.is_main()) data::write_shard_index(options.shards);
  comm->barrier();
  comm->shutdown();
  return report;
}

}  // namespace t4g
