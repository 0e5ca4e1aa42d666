// Atomic, name-keyed training checkpoints (see checkpoint.h).
#include "train/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/safetensors.h"

namespace t4g {
namespace {

constexpr const char* kPrefix = "step_";
constexpr const char* kTmpPrefix = ".tmp-";

bool is_step_folder(const std::string& name) {
  if (name.rfind(kPrefix, 0) != 0 || name.size() <= 5) return false;
  return std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::map<std::string, torch::Tensor> prefixed(const std::string& prefix, const std::map<std::string, torch::Tensor>& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [k, v] : m) out[prefix + k] = v;
  return out;
}

std::map<std::string, torch::Tensor> strip(const std::string& prefix, const std::map<std::string, torch::Tensor>& m,
                                           const std::string& file) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [k, v] : m) {
    ErrorContext ctx;
    ctx.file = file;
    ctx.tensor = k;
    ctx.expected = "a name starting with " + prefix;
    T4G_CHECK_CTX(k.rfind(prefix, 0) == 0, ctx, "unexpected tensor in the optimizer state");
    out[k.substr(prefix.size())] = v;
  }
  return out;
}

}  // namespace

std::string checkpoint_folder_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s%08lld", kPrefix, static_cast<long long>(step));
  return buf;
}

std::string save_checkpoint(const std::string& checkpoints_dir, const CheckpointState& state,
                            const CheckpointTensors& tensors, int64_t keep_last) {
  make_dirs(checkpoints_dir);
  const std::string name = checkpoint_folder_name(state.step);
  const std::string final_dir = path_join(checkpoints_dir, name);
  const std::string tmp = path_join(checkpoints_dir, kTmpPrefix + name + "." + std::to_string(getpid()));
  remove_all(tmp);
  make_dirs(tmp);
  save_safetensors(path_join(tmp, "weights.safetensors"), tensors.weights);
  std::map<std::string, torch::Tensor> opt = prefixed("exp_avg.", tensors.exp_avg);
  for (auto& kv : prefixed("exp_avg_sq.", tensors.exp_avg_sq)) opt.insert(kv);
  save_safetensors(path_join(tmp, "optimizer.safetensors"), opt);
  if (!tensors.ema.empty()) save_safetensors(path_join(tmp, "ema.safetensors"), tensors.ema);
  save_safetensors(path_join(tmp, "rng.safetensors"), tensors.rng);
  const Json j = {{"format", "t4g-checkpoint-v1"},
                  {"step", state.step},
                  {"loader", {{"epoch", state.loader.epoch}, {"batch", state.loader.batch}}},
                  {"optimizer_steps", state.optimizer_steps},
                  {"ema_updates", state.ema_updates},
                  {"nan_streak", state.nan_streak},
                  {"skipped_steps", state.skipped_steps},
                  {"world_size", state.world_size},
                  {"global_batch", state.global_batch},
                  {"config_yaml", state.config_yaml}};
  // state.json last: a folder is complete exactly when it has one (the rename makes it visible).
  write_json(path_join(tmp, "state.json"), j);
  if (path_exists(final_dir)) {
    const std::string old = path_join(checkpoints_dir, kTmpPrefix + name + ".old." + std::to_string(getpid()));
    rename_path(final_dir, old);
    rename_path(tmp, final_dir);
    remove_all(old);
  } else {
    rename_path(tmp, final_dir);
  }
  // Prune: crash leftovers, then all but the newest keep_last.
  for (const std::string& entry : list_dir(checkpoints_dir)) {
    if (entry.rfind(kTmpPrefix, 0) == 0) remove_all(path_join(checkpoints_dir, entry));
  }
  if (keep_last > 0) {
    std::vector<std::string> all = list_checkpoints(checkpoints_dir);
    for (size_t i = 0; i + static_cast<size_t>(keep_last) < all.size(); ++i) remove_all(all[i]);
  }
  return final_dir;
}

std::vector<std::string> list_checkpoints(const std::string& checkpoints_dir) {
  std::vector<std::string> out;
  if (!is_directory(checkpoints_dir)) return out;
  std::vector<std::string> names;
  for (const std::string& entry : list_dir(checkpoints_dir)) {
    if (is_step_folder(entry) && is_regular_file(path_join(checkpoints_dir, entry + "/state.json"))) names.push_back(entry);
  }
  std::sort(names.begin(), names.end());  // zero-padded: lexicographic = numeric
  for (const auto& n : names) out.push_back(path_join(checkpoints_dir, n));
  return out;
}

std::string find_latest_checkpoint(const std::string& checkpoints_dir) {
  const std::vector<std::string> all = list_checkpoints(checkpoints_dir);
  return all.empty() ? "" : all.back();
}

Checkpoint load_checkpoint(const std::string& folder) {
  Checkpoint c;
  c.folder = folder;
  const std::string state_path = path_join(folder, "state.json");
  ErrorContext ctx;
  ctx.file = folder;
  T4G_CHECK_CTX(is_regular_file(state_path), ctx, "not a t4g checkpoint (no state.json)");
  const JsonObject j = JsonObject::from_file(state_path);
  c.state.step = j.get_int("step");
  const JsonObject loader = j.get_object("loader");
  c.state.loader.epoch = loader.get_int("epoch");
  c.state.loader.batch = loader.get_int("batch");
  c.state.optimizer_steps = j.get_int("optimizer_steps");
  c.state.ema_updates = j.get_int("ema_updates");
  c.state.nan_streak = j.get_int("nan_streak");
  c.state.skipped_steps = j.get_int("skipped_steps");
  c.state.world_size = j.get_int("world_size");
  c.state.global_batch = j.get_int("global_batch", 0);
  c.state.config_yaml = j.get_string("config_yaml");
  c.tensors.weights = load_safetensors(path_join(folder, "weights.safetensors"));
  const std::string opt_path = path_join(folder, "optimizer.safetensors");
  std::map<std::string, torch::Tensor> avg;
  std::map<std::string, torch::Tensor> avg_sq;
  for (auto& [k, v] : load_safetensors(opt_path)) (k.rfind("exp_avg_sq.", 0) == 0 ? avg_sq : avg)[k] = v;
  c.tensors.exp_avg = strip("exp_avg.", avg, opt_path);
  c.tensors.exp_avg_sq = strip("exp_avg_sq.", avg_sq, opt_path);
  const std::string ema_path = path_join(folder, "ema.safetensors");
  if (is_regular_file(ema_path)) c.tensors.ema = load_safetensors(ema_path);
  c.tensors.rng = load_safetensors(path_join(folder, "rng.safetensors"));
  return c;
}

}  // namespace t4g
