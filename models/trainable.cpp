// set_trainable: one pass over named_parameters() deciding each parameter by its name, so the
// returned order is the module's own and identical on every rank.
#include "models/trainable.h"

#include <set>

#include "common/error.h"

namespace t4g {
namespace {

bool is_adapter(const std::string& name) {
  return name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos;
}

// Block index of a "transformer_blocks.<i>.*" name, or -1.
int64_t block_of(const std::string& name) {
  static const std::string kPrefix = "transformer_blocks.";
  if (name.rfind(kPrefix, 0) != 0) return -1;
  const size_t dot = name.find('.', kPrefix.size());
  if (dot == std::string::npos) return -1;
  return std::stoll(name.substr(kPrefix.size(), dot - kPrefix.size()));
}

}  // namespace

std::string train_mode_name(TrainMode mode) {
  switch (mode) {
    case TrainMode::kFull:
      return "full";
    case TrainMode::kBlocks:
      return "blocks";
    case TrainMode::kLora:
      return "lora";
    case TrainMode::kNone:
      return "none";
  }
  throw Error("unknown train mode");
}

TrainMode parse_train_mode(const std::string& name) {
  if (name == "refiner") return TrainMode::kNone;  // only the refiner trains
  for (const TrainMode mode : {TrainMode::kFull, TrainMode::kBlocks, TrainMode::kLora, TrainMode::kNone}) {
    if (train_mode_name(mode) == name) return mode;
  }
  ErrorContext ctx;
  ctx.expected = "full, blocks, lora, none or refiner";
  ctx.got = name;
  throw Error("unknown train mode", ctx);
}

NamedParameters set_trainable(torch::nn::Module& transformer, const TrainableOptions& options) {
  const auto params = transformer.named_parameters();
  std::set<int64_t> blocks(options.blocks.begin(), options.blocks.end());
  if (options.mode == TrainMode::kBlocks) {
    int64_t count = 0;
    for (const auto& item : params) count = std::max(count, block_of(item.key()) + 1);
    ErrorContext ctx;
    ctx.key = "blocks";
    T4G_CHECK_CTX(!blocks.empty(), ctx, "train mode 'blocks' needs at least one block index");
    for (const int64_t b : blocks) {
      ctx.got = std::to_string(b);
      T4G_CHECK_CTX(b >= 0 && b < count, ctx, "block index outside the model's ", count, " blocks");
    }
  }
  NamedParameters trainable;
  bool has_adapters = false;
  for (const auto& item : params) {
    const std::string& name = item.key();
    has_adapters = has_adapters || is_adapter(name);
    bool train = false;
    switch (options.mode) {
      case TrainMode::kFull:
        train = true;
        break;
      case TrainMode::kBlocks:
        train = blocks.count(block_of(name)) != 0;
        break;
      case TrainMode::kLora:
        train = is_adapter(name);
        break;
      case TrainMode::kNone:
        break;
    }
    item.value().set_requires_grad(train);
    if (train) trainable.emplace_back(name, item.value());
  }
  T4G_CHECK(options.mode != TrainMode::kLora || has_adapters,
            "train mode 'lora' but the transformer has no LoRA adapters (add them with add_lora first)");
  return trainable;
}

}  // namespace t4g
