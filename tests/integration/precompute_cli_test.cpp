// `t4g precompute` as a user runs it: a pipeline with a VAE and a T5 (the tiny t4g export's
// transformer, VAE and scheduler beside the transformers-made tiny T5 of tests/fixtures/t5) writes
// latents and prompt embeddings into prepared shards, equal to what the trainer would compute; a
// second run skips every shard; bad input is one error line.
#include <gtest/gtest.h>

#include "common/fs.h"
#include "common/json.h"
#include "data/shards.h"
#include "models/model_components.h"
#include "models/text_encoder.h"
#include "tests/testing.h"

namespace t4g {
namespace {

using testing::fixture;
using testing::program;
using testing::run_command;

// A CogVideoX pipeline folder with a text encoder: links to the fixtures' components.
std::string pipeline_with_t5(const testing::TempDir& dir) {
  const std::string root = dir.file("pipeline");
  make_dirs(root);
  const std::string exported = fixture("trained_export/full/export");
  for (const char* part : {"transformer", "vae", "scheduler"}) {
    EXPECT_EQ(run_command("ln -s " + path_join(exported, part) + " " + path_join(root, part)).exit_code, 0);
  }
  for (const char* part : {"text_encoder", "tokenizer"}) {
    EXPECT_EQ(run_command("ln -s " + path_join(fixture("t5/pipeline"), part) + " " + path_join(root, part)).exit_code, 0);
  }
  Json index = read_json(path_join(exported, "model_index.json"));
  index["text_encoder"] = Json::array({"transformers", "T5EncoderModel"});
  index["tokenizer"] = Json::array({"transformers", "T5Tokenizer"});
  write_json(path_join(root, "model_index.json"), index);
  return root;
}

TEST(PrecomputeCli, WritesLatentsAndPromptEmbeddingsResumably) {
  testing::TempDir dir;
  const std::string model = pipeline_with_t5(dir);
  const std::string ds = dir.file("ds");
  ASSERT_EQ(run_command(program("t4g") + " prepare --out " + ds + " --synthetic 2 --frames 9 --height 64 --width 96")
                .exit_code,
            0);
  const std::string cmd = program("t4g") + " precompute --data " + ds + " --model " + model +
                          " --set model.device=cpu --set model.dtype=fp32";
  auto r = run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const data::ShardReader reader(ds);
  ModelConfig mc;
  mc.path = model;
  mc.device = DeviceKind::kCpu;
  mc.dtype = DType::kFloat32;
  ModelComponents m = load_model_components(mc, 0);
  TextEncoder t5 = TextEncoder::load(model);
  for (const auto& e : reader.entries()) {
    ASSERT_TRUE(e.has_latents && e.has_text_embedding) << e.id;
    const data::ShardVideo v = reader.read(e.id);
    EXPECT_TRUE(torch::equal(v.latents, encode_frames_to_latents(m.vae, v.frames.unsqueeze(0))[0])) << e.id;
    EXPECT_TRUE(torch::equal(v.text_embedding, t5.encode({v.prompt}, m.text_tokens)[0])) << e.id;
  }
  r = run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("0 shard(s) written, 1 already done"), std::string::npos) << r.err;
  // Bad input: not a dataset.
  r = run_command(program("t4g") + " precompute --data " + dir.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace
}  // namespace t4g
