// Attention Motion Flow (see attention_motion_flow.h). The head mean of the logits is one matrix
// product: mean_h(Q_h K_h^T) = (Q_1 | ... | Q_H)(K_1 | ... | K_H)^T / H, so the heads are laid
// side by side as channels and never get a score matrix each (the reference builds
// [heads, S, S], 6.3 GB for 5B). Each chunk of source tokens costs chunk x video tokens.
#include "eval/attention_motion_flow.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/error.h"
#include "common/shape_string.h"

namespace t4g {
namespace {

ErrorContext option_context(const std::string& key, const std::string& expected, const std::string& got) {
  ErrorContext ctx;
  ctx.key = key;
  ctx.expected = expected;
  ctx.got = got;
  return ctx;
}

// Video tokens of one batch element with the heads side by side: [video tokens, heads * head_dim].
torch::Tensor heads_as_channels(const torch::Tensor& t, int64_t batch, int64_t text_len) {
  return t.select(0, batch).slice(1, text_len).to(torch::kFloat32).transpose(0, 1).flatten(1);
}

// (x, y) patch coordinates of the tokens of one frame, float32 [tokens_per_frame, 2].
torch::Tensor token_positions(const TokenGrid& grid, const torch::Device& device) {
  const auto n = torch::arange(grid.tokens_per_frame(), torch::TensorOptions().dtype(torch::kLong));
  return torch::stack({n.remainder(grid.width), n.div(grid.width, "floor")}, 1).to(device, torch::kFloat32);
}

std::vector<int64_t> blocks_or_default(const CogVideoXTransformerConfig& config, const std::vector<int64_t>& blocks) {
  return blocks.empty() ? std::vector<int64_t>{default_amf_block(config)} : blocks;
}

// The forward that captures Q/K at `blocks` and stops after the last of them; the caller's own
// probes (DiTFlow's K/V injection) stay in force.
ProbeCapture capture_query_key(CogVideoXTransformer3DModel& transformer, const torch::Tensor& latents,
                               const torch::Tensor& text, int64_t timestep, const std::vector<int64_t>& blocks,
                               const TransformerForwardOptions& positions) {
  ProbeOptions probes = positions.probes != nullptr ? *positions.probes : ProbeOptions{};
  probes.query_key_layers.insert(blocks.begin(), blocks.end());
  TransformerForwardOptions forward = positions;
  forward.probes = &probes;
  forward.last_block = *std::max_element(blocks.begin(), blocks.end());
  const auto device = transformer->parameters().front().device();
  const torch::Tensor t =
      torch::full({latents.size(0)}, timestep, torch::TensorOptions().dtype(torch::kLong).device(device));
  return transformer->forward(latents, text, t, forward).captured;
}

}  // namespace

torch::Tensor attention_motion_flow(const torch::Tensor& query, const torch::Tensor& key, int64_t text_len,
                                    const TokenGrid& grid, AmfReadout readout, const AmfOptions& options) {
  for (const auto& [t, name] : {std::pair<const torch::Tensor*, const char*>{&query, "query"}, {&key, "key"}}) {
    ErrorContext ctx;
    ctx.tensor = name;
    ctx.expected = "[B, heads, " + std::to_string(text_len + grid.video_tokens()) + ", head_dim]";
    ctx.got = shape_string(t->sizes());
    T4G_CHECK_CTX(t->dim() == 4 && t->size(2) == text_len + grid.video_tokens(), ctx, "AMF ", name, " must be ",
                  ctx.expected, " (text ", text_len, " + video ", grid.frames, "x", grid.height, "x", grid.width,
                  "), got ", ctx.got);
  }
  T4G_CHECK(query.sizes() == key.sizes(), "AMF query ", query.sizes(), " and key ", key.sizes(), " differ");
  T4G_CHECK(options.temperature > 0 && std::isfinite(options.temperature), "AMF temperature must be positive, got ",
            options.temperature);
  const int64_t batch = options.batch_index < 0 ? query.size(0) + options.batch_index : options.batch_index;
  T4G_CHECK(batch >= 0 && batch < query.size(0), "AMF batch index ", options.batch_index, " outside the batch of ",
            query.size(0));

  const int64_t heads = query.size(1);
  const int64_t n = grid.tokens_per_frame();
  const int64_t frames = grid.frames;
  const int64_t chunk = options.query_chunk > 0 ? options.query_chunk : n;
  // Mean over heads of Q_h K_h^T / sqrt(d), times the temperature, in one product.
  const double scale =
      options.temperature / (static_cast<double>(heads) * std::sqrt(static_cast<double>(query.size(-1))));
  const torch::Tensor q = heads_as_channels(query, batch, text_len);
  const torch::Tensor kt = heads_as_channels(key, batch, text_len).transpose(0, 1);
  const torch::Tensor pos = token_positions(grid, q.device());  // [n, 2]

  std::vector<torch::Tensor> per_frame;  // [n, frames (target), 2] per source frame
  per_frame.reserve(static_cast<size_t>(frames));
  for (int64_t i = 0; i < frames; ++i) {
    std::vector<torch::Tensor> chunks;
    for (int64_t begin = 0; begin < n; begin += chunk) {
      const int64_t end = std::min(n, begin + chunk);
      const torch::Tensor logits =
          torch::matmul(q.slice(0, i * n + begin, i * n + end), kt).mul(scale).view({end - begin, frames, n});
      const torch::Tensor source = pos.slice(0, begin, end).unsqueeze(1);  // [c, 1, 2]
      if (readout == AmfReadout::kArgmax) {
        // The softmax is monotone, so the argmax of the logits is the argmax of the attention.
        const torch::Tensor target = pos.index_select(0, logits.argmax(-1).flatten()).view({end - begin, frames, 2});
        chunks.push_back(target - source);
      } else {
        // sum_n P[s, n] (pos(n) - pos(s)) = P pos - pos(s), since each row of P sums to one.
        chunks.push_back(torch::matmul(torch::softmax(logits, -1), pos) - source);
      }
    }
    per_frame.push_back(torch::cat(chunks, 0));
  }
  // [i, n, j, 2] -> [i, j, n, 2] -> [i * frames + j, n, 2].
  return torch::stack(per_frame, 0).permute({0, 2, 1, 3}).reshape({frames * frames, n, 2});
}

torch::Tensor amf_loss(const torch::Tensor& reference, const torch::Tensor& generated, bool threshold) {
  ErrorContext ctx;
  ctx.tensor = "generated AMF";
  ctx.expected = shape_string(reference.sizes()) + " like the reference AMF";
  ctx.got = shape_string(generated.sizes());
  T4G_CHECK_CTX(reference.dim() == 3 && reference.size(2) == 2 && generated.sizes() == reference.sizes(), ctx,
                "the generated AMF must have the reference's shape [pairs, tokens, 2]: expected ", ctx.expected,
                ", got ", ctx.got, " (the reference and the generation must have the same latent frames and size)");
  const torch::Tensor ref = reference.to(generated.device(), torch::kFloat32).detach();
  const torch::Tensor gen = generated.to(torch::kFloat32);
  if (!threshold) return torch::mse_loss(gen, ref);
  const torch::Tensor moving = ref.norm(2, -1) > 0;  // [pairs, tokens]
  T4G_CHECK(moving.any().item<bool>(),
            "the reference AMF has no non-zero displacement: the reference video shows no motion at this block, so "
            "there is nothing to transfer (or turn the threshold off)");
  // Boolean indexing keeps (entry, component) pairs, as the reference's ref[idxs] does.
  return torch::mse_loss(gen.index({moving}), ref.index({moving}));
}

int64_t default_amf_block(const CogVideoXTransformerConfig& config) {
  if (config.use_rotary_positional_embeddings && config.num_layers == 42) return 20;  // CogVideoX-5B
  return config.num_layers / 2;                                                       // 2B: 15
}

void check_amf_blocks(const CogVideoXTransformerConfig& config, const std::vector<int64_t>& blocks) {
  T4G_CHECK_CTX(!blocks.empty(), option_context("amf block", "at least one block", "none"),
                "motion transfer needs at least one AMF block");
  for (const int64_t b : blocks) {
    T4G_CHECK_CTX(b >= 0 && b < config.num_layers,
                  option_context("amf block", "a block index in [0, " + std::to_string(config.num_layers) + ")",
                                 std::to_string(b)),
                  "AMF block ", b, " is outside the model's transformer blocks [0, ", config.num_layers,
                  ") (DiTFlow: 20 for 5B, 15 for 2B)");
  }
}

void check_amf_timestep(int64_t timestep, int64_t num_train_timesteps) {
  T4G_CHECK_CTX(timestep >= 0 && timestep < num_train_timesteps,
                option_context("reference timestep", "in [0, " + std::to_string(num_train_timesteps) + ")",
                               std::to_string(timestep)),
                "the reference timestep ", timestep, " is outside the scheduler's [0, ", num_train_timesteps,
                ") (DiTFlow: 0, the clean latents)");
}

std::map<int64_t, torch::Tensor> extract_reference_amf(CogVideoXTransformer3DModel& transformer,
                                                       const torch::Tensor& latents,
                                                       const torch::Tensor& empty_prompt_embeds,
                                                       const ReferenceAmfOptions& options,
                                                       const TransformerForwardOptions& positions) {
  const CogVideoXTransformerConfig& config = transformer->config();
  const std::vector<int64_t> blocks = blocks_or_default(config, options.blocks);
  check_amf_blocks(config, blocks);
  check_amf_timestep(options.timestep);
  ErrorContext ctx;
  ctx.tensor = "reference latents";
  ctx.expected = "[1, F, " + std::to_string(config.in_channels) + ", h, w]";
  ctx.got = shape_string(latents.sizes());
  T4G_CHECK_CTX(latents.dim() == 5 && latents.size(0) == 1 && latents.size(2) == config.in_channels, ctx,
                "reference latents must be ", ctx.expected, ", got ", ctx.got);
  torch::NoGradGuard no_grad;
  const ProbeCapture captured =
      capture_query_key(transformer, latents, empty_prompt_embeds, options.timestep, blocks, positions);
  const TokenGrid grid = transformer->token_grid(latents.size(1), latents.size(3), latents.size(4));
  const int64_t text_len = empty_prompt_embeds.size(1);
  std::map<int64_t, torch::Tensor> amf;
  for (const int64_t b : blocks) {
    amf[b] = attention_motion_flow(captured.query.at(b), captured.key.at(b), text_len, grid, AmfReadout::kArgmax,
                                   options.amf);
  }
  return amf;
}

torch::Tensor amf_guidance_loss(CogVideoXTransformer3DModel& transformer, const torch::Tensor& latents,
                                const torch::Tensor& prompt_embeds, int64_t timestep,
                                const std::map<int64_t, torch::Tensor>& reference, const AmfOptions& options,
                                bool threshold, const TransformerForwardOptions& positions) {
  T4G_CHECK(!reference.empty(), "the AMF guidance loss needs a reference AMF of at least one block");
  std::vector<int64_t> blocks;
  for (const auto& [b, _] : reference) blocks.push_back(b);
  check_amf_blocks(transformer->config(), blocks);
  const ProbeCapture captured = capture_query_key(transformer, latents, prompt_embeds, timestep, blocks, positions);
  const TokenGrid grid = transformer->token_grid(latents.size(1), latents.size(3), latents.size(4));
  const int64_t text_len = prompt_embeds.size(1);
  torch::Tensor total;
  for (const int64_t b : blocks) {
    const torch::Tensor flow =
        attention_motion_flow(captured.query.at(b), captured.key.at(b), text_len, grid, AmfReadout::kSoft, options);
    const torch::Tensor loss = amf_loss(reference.at(b), flow, threshold);
    total = total.defined() ? total + loss : loss;
  }
  return total / static_cast<double>(blocks.size());
}

}  // namespace t4g
