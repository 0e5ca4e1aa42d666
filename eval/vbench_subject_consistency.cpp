// VBench subject consistency: VBench's preprocessing, DINO CLS features, VBench's formula.
// Preprocessing and cosines use the same torch operations in the same order as VBench and
// torchvision, so they run the same kernels; frames are batched because the ViT treats each
// image independently.
#include "eval/vbench_subject_consistency.h"

#include <algorithm>

#include "common/error.h"
#include "common/shape_string.h"
#include "eval/vbench_transforms.h"
#include "eval/video_frames.h"

namespace t4g {

torch::Tensor vbench_dino_preprocess(const torch::Tensor& frames, int64_t short_side) {
  check_video_frames(frames, "frames");
  // load_video: torch.Tensor(frames).permute(0, 3, 1, 2); then dino_transform's three steps.
  const torch::Tensor x = frames.permute({0, 3, 1, 2}).to(torch::kFloat32);
  return imagenet_normalize(resize_short_side(x, short_side, ResizeMode::kBilinear, /*antialias=*/false).div(255.0));
}

SubjectConsistencyResult subject_consistency_from_features(const torch::Tensor& features) {
  ErrorContext ctx;
  ctx.tensor = "features";
  ctx.expected = "[T, D] with T >= 2";
  ctx.got = shape_string(features.sizes());
  T4G_CHECK_CTX(features.dim() == 2 && features.size(0) >= 2 && features.size(1) >= 1, ctx,
                "subject consistency: wrong feature shape");
  namespace nnf = torch::nn::functional;
  const torch::Tensor f = nnf::normalize(features.to(torch::kFloat32), nnf::NormalizeFuncOptions().p(2).dim(-1));
  const int64_t t = f.size(0);
  const torch::Tensor rest = f.slice(0, 1);
  const torch::Tensor to_previous = nnf::cosine_similarity(f.slice(0, 0, t - 1), rest).to(torch::kCPU);
  const torch::Tensor to_first = nnf::cosine_similarity(f.slice(0, 0, 1).expand_as(rest), rest).to(torch::kCPU);
  const auto* previous = to_previous.data_ptr<float>();
  const auto* first = to_first.data_ptr<float>();
  SubjectConsistencyResult result;
  for (int64_t i = 0; i + 1 < t; ++i) {
    result.sum += (std::max(0.0, static_cast<double>(previous[i])) + std::max(0.0, static_cast<double>(first[i]))) / 2;
  }
  result.pairs = t - 1;
  result.score = result.sum / static_cast<double>(result.pairs);
  return result;
}

torch::Tensor dino_frame_features(DinoVit& model, const torch::Tensor& frames,
                                  const SubjectConsistencyOptions& options) {
  const int64_t short_side = options.short_side;
  return dino_features_batched(model, frames, options.batch_size,
                               [short_side](const torch::Tensor& batch) { return vbench_dino_preprocess(batch, short_side); });
}

SubjectConsistencyResult subject_consistency(DinoVit& model, const torch::Tensor& frames,
                                             const SubjectConsistencyOptions& options) {
  check_video_frames(frames, "frames", 2);
  return subject_consistency_from_features(dino_frame_features(model, frames, options));
}

double subject_consistency_frame_weighted(const std::vector<SubjectConsistencyResult>& per_video) {
  double sum = 0;
  int64_t pairs = 0;
  for (const auto& r : per_video) {
    sum += r.sum;
    pairs += r.pairs;
  }
  T4G_CHECK(pairs > 0, "subject consistency: no videos to aggregate");
  return sum / static_cast<double>(pairs);
}

}  // namespace t4g
