// Where training metrics go: a JSON-lines file (metrics.jsonl, one object per record with the
// step, a kind such as "train" or "eval" and the values), TensorBoard event files (tb/), and the
// console line. Only rank 0 owns one. On resume the JSON-lines file is cut back to the resumed
// step (atomically) so a run that crashed after its last checkpoint never shows those steps twice.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace t4g {

class TensorBoardWriter;

struct MetricLoggerOptions {
  std::string dir;           // run folder; files go to <dir>/metrics.jsonl and <dir>/tb/
  bool jsonl = true;         // write metrics.jsonl
  bool tensorboard = true;   // write TensorBoard event files
  int64_t resume_step = -1;  // >= 0: keep only records with step <= this in an existing metrics.jsonl
};

class MetricLogger {
 public:
  explicit MetricLogger(const MetricLoggerOptions& options);
  ~MetricLogger();

  // One record. TensorBoard tags are "<kind>/<name>".
  void log(int64_t step, const std::string& kind, const std::map<std::string, double>& values);
  void flush();

  const std::string& jsonl_path() const { return jsonl_path_; }

 private:
  MetricLoggerOptions options_;
  std::string jsonl_path_;
  std::FILE* jsonl_ = nullptr;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
};

// The console summary of a train record: "step 12/100 | loss 0.1234 (diff 0.1, corr 0.0029) |
// lr 1.0e-04 | grad 0.53 | 2.1 it/s | 4.2 samples/s | mem 1.2 GiB", from the keys the trainer logs.
std::string format_train_line(int64_t step, int64_t total_steps, const std::map<std::string, double>& values);

}  // namespace t4g
