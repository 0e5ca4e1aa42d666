// ProbeOptions::stop_after_last_capture: the forward ends after the last probed block and captures
// exactly what a full forward captures there (tracking and analysis rely on it for speed).
#include <gtest/gtest.h>

#include "common/config.h"
#include "models/model_components.h"

namespace t4g {
namespace {

TEST(ProbeEarlyStop, CapturesEqualAFullForward) {
  ModelConfig m;
  m.device = DeviceKind::kCpu;
  m.tiny.num_layers = 3;
  ModelComponents c = load_model_components(m, 1, ComponentRequest{true, false});
  torch::NoGradGuard no_grad;
  const auto latents = torch::randn({1, 3, 4, 8, 12});
  const auto text = tiny_text_embeddings(c, 1);
  const auto t = torch::tensor({500}, torch::kLong);
  ProbeOptions probes;
  probes.query_key_layers = {0};
  probes.hidden_layers = {1};
  TransformerForwardOptions options;
  options.probes = &probes;
  const TransformerOutput full = c.transformer->forward(latents, text, t, options);
  probes.stop_after_last_capture = true;
  const TransformerOutput early = c.transformer->forward(latents, text, t, options);
  EXPECT_TRUE(full.sample.defined());
  EXPECT_FALSE(early.sample.defined());
  // Same computation up to the probes: bitwise equal.
  EXPECT_TRUE(torch::equal(full.captured.query.at(0), early.captured.query.at(0)));
  EXPECT_TRUE(torch::equal(full.captured.key.at(0), early.captured.key.at(0)));
  EXPECT_TRUE(torch::equal(full.captured.hidden.at(1), early.captured.hidden.at(1)));
}

}  // namespace
}  // namespace t4g
