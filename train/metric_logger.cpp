// Metric sinks (see metric_logger.h).
#include "train/metric_logger.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "common/error.h"
#include "common/fs.h"
#include "common/json.h"
#include "train/tensorboard_events.h"

namespace t4g {
namespace {

// Keeps the lines of an existing metrics.jsonl whose step is <= `step` (torn or unparsable
// trailing lines from a crash are dropped too), rewriting the file atomically.
void truncate_jsonl(const std::string& path, int64_t step) {
  if (!path_exists(path)) return;
  std::istringstream in(read_file(path));
  std::string kept;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      const Json j = parse_json(line, path);
      if (j.contains("step") && j["step"].get<int64_t>() <= step) kept += line + "\n";
    } catch (const std::exception&) {
      // a line cut by a crash: drop it
    }
  }
  write_file_atomically(path, kept);
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}
std::string sci(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.1e", v);
  return buf;
}

}  // namespace

MetricLogger::MetricLogger(const MetricLoggerOptions& options) : options_(options) {
  make_dirs(options.dir);
  if (options.jsonl) {
    jsonl_path_ = path_join(options.dir, "metrics.jsonl");
    if (options.resume_step >= 0) {
      truncate_jsonl(jsonl_path_, options.resume_step);
    } else if (path_exists(jsonl_path_)) {
      write_file_atomically(jsonl_path_, "");  // a fresh run starts a fresh file
    }
    jsonl_ = std::fopen(jsonl_path_.c_str(), "ab");
    ErrorContext ctx;
    ctx.file = jsonl_path_;
    T4G_CHECK_CTX(jsonl_ != nullptr, ctx, "cannot open the metrics file: ", std::strerror(errno));
  }
  if (options.tensorboard) tensorboard_ = std::make_unique<TensorBoardWriter>(path_join(options.dir, "tb"));
}

MetricLogger::~MetricLogger() {
  if (jsonl_ != nullptr) std::fclose(jsonl_);
}

void MetricLogger::log(int64_t step, const std::string& kind, const std::map<std::string, double>& values) {
  if (jsonl_ != nullptr) {
    Json j = {{"step", step}, {"kind", kind}};
    for (const auto& [k, v] : values) j[k] = std::isfinite(v) ? Json(v) : Json(nullptr);  // JSON has no NaN
    const std::string line = j.dump() + "\n";
    std::fwrite(line.data(), 1, line.size(), jsonl_);
  }
  if (tensorboard_) {
    for (const auto& [k, v] : values) tensorboard_->add_scalar(kind + "/" + k, v, step);
  }
}

void MetricLogger::flush() {
  if (jsonl_ != nullptr) std::fflush(jsonl_);
  if (tensorboard_) tensorboard_->flush();
}

std::string format_train_line(int64_t step, int64_t total_steps, const std::map<std::string, double>& v) {
  auto get = [&](const char* key) -> const double* {
    auto it = v.find(key);
    return it == v.end() ? nullptr : &it->second;
  };
  std::string s = "step " + std::to_string(step) + "/" + std::to_string(total_steps);
  if (const double* loss = get("loss")) {
    s += " | loss " + fixed(*loss, 4);
    const double* diff = get("loss_diffusion");
    const double* corr = get("loss_corr");
    if (diff != nullptr || corr != nullptr) {
      s += " (";
      if (diff != nullptr) s += "diff " + fixed(*diff, 4);
      if (diff != nullptr && corr != nullptr) s += ", ";
      if (corr != nullptr) s += "corr " + fixed(*corr, 4);
      s += ")";
    }
  }
  if (const double* lr = get("lr")) s += " | lr " + sci(*lr);
  if (const double* g = get("grad_norm")) s += " | grad " + fixed(*g, 3);
  if (const double* r = get("it_per_s")) s += " | " + fixed(*r, 2) + " it/s";
  if (const double* r = get("samples_per_s")) s += " | " + fixed(*r, 2) + " samples/s";
  if (const double* m = get("memory_gib")) s += " | mem " + fixed(*m, 2) + " GiB";
  if (const double* k = get("skipped_steps"); k != nullptr && *k > 0) s += " | skipped " + fixed(*k, 0);
  return s;
}

}  // namespace t4g
