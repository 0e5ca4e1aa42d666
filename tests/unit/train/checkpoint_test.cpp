// Checkpoints are written atomically, keep the last K, round-trip every field, and name the file
// when something is missing; metric sinks write parseable JSON lines and valid TFRecord frames.
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>

#include "common/error.h"
#include "common/fs.h"
#include "common/json.h"
#include "tests/testing.h"
#include "train/checkpoint.h"
#include "train/metric_logger.h"
#include "train/tensorboard_events.h"

namespace t4g {
namespace {

CheckpointTensors sample_tensors(float v) {
  CheckpointTensors t;
  t.weights["refiner.conv.0.weight"] = torch::full({2, 3}, v);
  t.exp_avg["refiner.conv.0.weight"] = torch::full({2, 3}, v + 1);
  t.exp_avg_sq["refiner.conv.0.weight"] = torch::full({2, 3}, v + 2);
  t.ema["refiner.conv.0.weight"] = torch::full({2, 3}, v + 3);
  t.rng["cpu"] = torch::arange(10, torch::kUInt8);
  return t;
}

TEST(Checkpoint, RoundTripsAndKeepsTheLastK) {
  testing::TempDir dir;
  const std::string ckpts = dir.file("checkpoints");
  EXPECT_EQ(find_latest_checkpoint(ckpts), "");
  for (int64_t step : {10, 20, 30}) {
    CheckpointState s;
    s.step = step;
    s.loader = {1, step};
    s.optimizer_steps = step - 1;
    s.ema_updates = step - 2;
    s.skipped_steps = 1;
    s.world_size = 2;
    s.config_yaml = "run:\n  name: x\n";
    save_checkpoint(ckpts, s, sample_tensors(static_cast<float>(step)), 2);
  }
  const auto all = list_checkpoints(ckpts);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(file_name(all[0]), "step_00000020");
  const std::string latest = find_latest_checkpoint(ckpts);
  EXPECT_EQ(file_name(latest), "step_00000030");
  const Checkpoint c = load_checkpoint(latest);
  EXPECT_EQ(c.state.step, 30);
  EXPECT_EQ(c.state.loader, (data::LoaderPosition{1, 30}));
  EXPECT_EQ(c.state.optimizer_steps, 29);
  EXPECT_EQ(c.state.ema_updates, 28);
  EXPECT_EQ(c.state.world_size, 2);
  EXPECT_EQ(c.state.config_yaml, "run:\n  name: x\n");
  EXPECT_TRUE(torch::equal(c.tensors.exp_avg_sq.at("refiner.conv.0.weight"), torch::full({2, 3}, 32.0f)));
  EXPECT_TRUE(torch::equal(c.tensors.ema.at("refiner.conv.0.weight"), torch::full({2, 3}, 33.0f)));
  EXPECT_TRUE(torch::equal(c.tensors.rng.at("cpu"), torch::arange(10, torch::kUInt8)));
}

TEST(Checkpoint, IncompleteFoldersAreIgnoredAndCleaned) {
  testing::TempDir dir;
  const std::string ckpts = dir.file("checkpoints");
  // A crash mid-save leaves a temporary folder, and a step folder without state.json is not one.
  make_dirs(path_join(ckpts, ".tmp-step_00000050.123"));
  make_dirs(path_join(ckpts, "step_00000040"));
  EXPECT_EQ(find_latest_checkpoint(ckpts), "");
  CheckpointState s;
  s.step = 5;
  save_checkpoint(ckpts, s, sample_tensors(1), 0);
  EXPECT_FALSE(path_exists(path_join(ckpts, ".tmp-step_00000050.123")));
  EXPECT_EQ(file_name(find_latest_checkpoint(ckpts)), "step_00000005");
  // Saving the same step again replaces it.
  save_checkpoint(ckpts, s, sample_tensors(9), 0);
  EXPECT_TRUE(torch::equal(load_checkpoint(find_latest_checkpoint(ckpts)).tensors.weights.at("refiner.conv.0.weight"),
                           torch::full({2, 3}, 9.0f)));
}

TEST(Checkpoint, MissingFilesNameTheFolder) {
  testing::TempDir dir;
  const std::string msg = testing::error_of([&] { load_checkpoint(dir.path()); });
  EXPECT_NE(msg.find(dir.path()), std::string::npos) << msg;
  EXPECT_NE(msg.find("state.json"), std::string::npos) << msg;
  CheckpointState s;
  const std::string folder = save_checkpoint(dir.file("c"), s, sample_tensors(1), 0);
  remove_all(path_join(folder, "optimizer.safetensors"));
  const std::string msg2 = testing::error_of([&] { load_checkpoint(folder); });
  EXPECT_NE(msg2.find("optimizer.safetensors"), std::string::npos) << msg2;
}

TEST(TensorBoard, Crc32cKnownValues) {
  // RFC 3720 test vector: 32 zero bytes -> 0x8A9136AA; "123456789" -> 0xE3069283.
  const std::string zeros(32, '\0');
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
}

// Reads TFRecord frames back, checking both CRCs, and returns the payloads.
std::vector<std::string> read_records(const std::string& bytes) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < bytes.size()) {
    uint64_t len = 0;
    std::memcpy(&len, bytes.data() + pos, 8);
    uint32_t len_crc = 0;
    std::memcpy(&len_crc, bytes.data() + pos + 8, 4);
    EXPECT_EQ(len_crc, masked_crc32c(bytes.data() + pos, 8));
    const std::string payload = bytes.substr(pos + 12, len);
    uint32_t data_crc = 0;
    std::memcpy(&data_crc, bytes.data() + pos + 12 + len, 4);
    EXPECT_EQ(data_crc, masked_crc32c(payload.data(), payload.size()));
    out.push_back(payload);
    pos += 12 + len + 4;
  }
  EXPECT_EQ(pos, bytes.size());
  return out;
}

TEST(MetricLogger, WritesJsonLinesAndTensorBoardScalars) {
  testing::TempDir dir;
  {
    MetricLoggerOptions o;
    o.dir = dir.path();
    MetricLogger logger(o);
    logger.log(1, "train", {{"loss", 0.5}, {"lr", 1e-4}});
    logger.log(2, "train", {{"loss", 0.25}});
    logger.log(2, "eval", {{"average_jaccard", 0.3}});
  }
  std::istringstream lines(testing::read_file(dir.file("metrics.jsonl")));
  std::string line;
  std::vector<Json> records;
  while (std::getline(lines, line)) records.push_back(parse_json(line, "metrics.jsonl"));
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1]["loss"].get<double>(), 0.25);
  EXPECT_EQ(records[2]["kind"].get<std::string>(), "eval");
  const auto files = list_dir(dir.file("tb"));
  ASSERT_EQ(files.size(), 1u);
  const auto records_tb = read_records(testing::read_file(path_join(dir.file("tb"), files[0])));
  ASSERT_EQ(records_tb.size(), 1u + 4u);  // file_version + one per scalar
  EXPECT_NE(records_tb[0].find("brain.Event:2"), std::string::npos);
  EXPECT_NE(records_tb[1].find("train/loss"), std::string::npos);
  EXPECT_NE(records_tb[4].find("eval/average_jaccard"), std::string::npos);
  // The simple_value float follows tag bytes: field 2, wire type 5 -> byte 0x15.
  const std::string& r = records_tb[1];
  const size_t at = r.find('\x15', r.find("train/loss"));
  ASSERT_NE(at, std::string::npos);
  float v = 0;
  std::memcpy(&v, r.data() + at + 1, 4);
  EXPECT_EQ(v, 0.5f);

  // A resumed run keeps the records up to its step and drops the rest (and torn lines).
  testing::write_file(dir.file("metrics.jsonl"), testing::read_file(dir.file("metrics.jsonl")) + "{\"step\": 3, \"lo");
  {
    MetricLoggerOptions o;
    o.dir = dir.path();
    o.resume_step = 1;
    o.tensorboard = false;
    MetricLogger logger(o);
    logger.log(2, "train", {{"loss", 0.75}});
  }
  const std::string text = testing::read_file(dir.file("metrics.jsonl"));
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
  EXPECT_NE(text.find("0.75"), std::string::npos);
}

TEST(MetricLogger, ConsoleLine) {
  const std::string s = format_train_line(
      3, 10, {{"loss", 0.5}, {"loss_diffusion", 0.4}, {"loss_corr", 0.0125}, {"lr", 1e-4}, {"grad_norm", 0.25},
              {"it_per_s", 2.0}, {"samples_per_s", 4.0}, {"memory_gib", 1.5}});
  EXPECT_EQ(s, "step 3/10 | loss 0.5000 (diff 0.4000, corr 0.0125) | lr 1.0e-04 | grad 0.250 | 2.00 it/s | 4.00 samples/s | mem 1.50 GiB");
}

}  // namespace
}  // namespace t4g
