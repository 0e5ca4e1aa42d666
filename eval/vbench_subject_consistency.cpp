// VBench subject consistency: VBench's preprocessing, DINO CLS features, VBench's formula.
// Preprocessing and cosines use the same torch operations in the same order as VBench and
// torchvision, so they run the same kernels; frames are batched because the ViT treats each
// image independently.
#include "eval/vbench_subject_consistency.h"

#include <algorithm>

#include "common/error.h"
#include "common/shape_string.h"
#include "eval/video_frames.h"

namespace t4g {

torch::Tensor vbench_dino_preprocess(const torch::Tensor& frames, int64_t short_side) {
  check_video_frames(frames, "frames");
  T4G_CHECK(short_side > 0, "dino preprocessing: short side must be positive, got ", short_side);
  torch::Tensor x = frames.permute({0, 3, 1, 2}).to(torch::kFloat32);  // load_video: torch.Tensor(...).permute
  const int64_t h = x.size(2), w = x.size(3);
  // torchvision's _compute_resized_output_size for an int size (truncating the long side).
  const int64_t shorter = std::min(h, w), longer = std::max(h, w);
  const auto new_long = static_cast<int64_t>(static_cast<double>(short_side * longer) / static_cast<double>(shorter));
  const int64_t new_h = w <= h ? new_long : short_side;
  const int64_t new_w = w <= h ? short_side : new_long;
  if (new_h != h || new_w != w) {
    x = torch::nn::functional::interpolate(x, torch::nn::functional::InterpolateFuncOptions()
                                                  .size(std::vector<int64_t>{new_h, new_w})
                                                  .mode(torch::kBilinear)
                                                  .align_corners(false));
  }
  x = x.div(255.0);
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(x.device());
  const torch::Tensor mean = torch::tensor({0.485, 0.456, 0.406}, options).view({-1, 1, 1});
  const torch::Tensor std = torch::tensor({0.229, 0.224, 0.225}, options).view({-1, 1, 1});
  return x.sub(mean).div(std);
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
  check_video_frames(frames, "frames");
  T4G_CHECK(options.batch_size > 0, "subject consistency: batch_size must be positive, got ", options.batch_size);
  const torch::Device device = model->cls_token.device();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> features;
  for (int64_t begin = 0; begin < frames.size(0); begin += options.batch_size) {
    const int64_t end = std::min(frames.size(0), begin + options.batch_size);
    // Preprocess on the model's device, a batch at a time: the resized float frames of a whole
    // video would be large.
    const torch::Tensor images = vbench_dino_preprocess(frames.slice(0, begin, end).to(device), options.short_side);
    features.push_back(model->forward(images));
  }
  return torch::cat(features, 0);
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
