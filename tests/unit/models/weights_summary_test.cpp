// `t4g inspect weights` library side: parameter counts against the reference (torch's own
// sum of p.numel() over module.parameters(), recorded by make_fixtures.py), per-prefix counts,
// readable numbers, and the JSON form. Tolerance: exact counts.
#include "models/weights_summary.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/json.h"
#include "tests/testing.h"

namespace t4g {
namespace {

using testing::fixture;

TEST(WeightsSummary, ReadableNumbers) {
  EXPECT_EQ(human_count(1693783872), "1.69 B");
  EXPECT_EQ(human_count(5570283072), "5.57 B");
  EXPECT_EQ(human_count(215583907), "215.58 M");
  EXPECT_EQ(human_count(9544), "9.54 K");
  EXPECT_EQ(human_count(999), "999");
  EXPECT_EQ(human_bytes(3387567744), "3.39 GB");
  EXPECT_EQ(human_bytes(512), "512 B");
  EXPECT_EQ(grouped_count(1693783872), "1,693,783,872");
  EXPECT_EQ(grouped_count(100), "100");
}

TEST(WeightsSummary, PipelineCountsMatchTorch) {
  const nlohmann::json expected = read_json(fixture("safetensors/pipeline.json"));
  const WeightsSummary summary = summarize_weights(fixture("safetensors/pipeline"));
  ASSERT_EQ(summary.components.size(), 3u);
  int64_t total = 0;
  for (const auto& c : summary.components) {
    if (c.component.name == "scheduler") {
      EXPECT_TRUE(c.tensors.empty());
      continue;
    }
    const auto& want = expected["components"][c.component.name];
    // T5 ties encoder.embed_tokens to shared: torch counts it once, and the file stores it once.
    EXPECT_EQ(c.parameters, want["parameters"].get<int64_t>()) << c.component.name;
    EXPECT_EQ(c.tensors.size(), want["tensors"].size());
    EXPECT_TRUE(std::is_sorted(c.tensors.begin(), c.tensors.end(),
                               [](const TensorSummary& a, const TensorSummary& b) { return a.name < b.name; }));
    int64_t by_prefix = 0;
    for (const auto& entry : c.by_prefix) by_prefix += entry.second;
    EXPECT_EQ(by_prefix, c.parameters);
    total += c.parameters;
  }
  EXPECT_EQ(summary.parameters, total);
  const auto& transformer = summary.components[2];
  EXPECT_EQ(transformer.by_dtype.at("F16"), transformer.parameters);
  EXPECT_EQ(transformer.bytes, static_cast<uint64_t>(transformer.parameters) * 2);
  EXPECT_EQ(transformer.files.size(), 19u);

  const std::string text = format_weights_summary(summary);
  EXPECT_NE(text.find("[transformer] diffusers CogVideoXTransformer3DModel: 64 tensors in 19 files"), std::string::npos)
      << text;
  EXPECT_NE(text.find("[scheduler] diffusers CogVideoXDDIMScheduler: no weights"), std::string::npos);
  EXPECT_NE(text.find("  patch_embed.proj.weight"), std::string::npos);
  EXPECT_NE(text.find("transformer_blocks  8.54 K (8,544)"), std::string::npos) << text;

  const nlohmann::json json = nlohmann::json::parse(weights_summary_json(summary));
  EXPECT_EQ(json["kind"], "pipeline");
  EXPECT_EQ(json["parameters"].get<int64_t>(), summary.parameters);
  EXPECT_EQ(json["components"][2]["tensors"].size(), 64u);
  EXPECT_EQ(json["components"][2]["parameters_by_prefix"]["transformer_blocks"].get<int64_t>(), 8544);
}

TEST(WeightsSummary, SingleFileListsEveryDtype) {
  const WeightsSummary summary = summarize_weights(fixture("safetensors/dtypes.safetensors"));
  ASSERT_EQ(summary.components.size(), 1u);
  const std::string text = format_weights_summary(summary);
  for (const char* line : {"bf16         BF16         [4, 3]", "scalar_f32   F32          []",
                           "empty_f32    F32          [0, 3]", "f8_e4m3fnuz  F8_E4M3FNUZ  [4]"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  }
}

}  // namespace
}  // namespace t4g
