// VBench-I2V i2v_subject: VBench's two "internet" transforms (tensor frames through torch's
// antialiased bicubic, the PIL image through Pillow's), DINO CLS features and VBench's
// order-statistic formula. Torch operations are the ones VBench and torchvision call, in the same
// order; frames are batched because the ViT treats each image independently.
#include "eval/vbench_i2v_subject.h"

#include <algorithm>

#include "common/error.h"
#include "common/png.h"
#include "common/shape_string.h"
#include "eval/pil_resize.h"
#include "eval/vbench_transforms.h"
#include "eval/video_frames.h"

namespace t4g {
namespace {

// VBench's weights of the max conformity, the mean and the min consecutive consistency.
constexpr double kMaxWeight = 0.4;
constexpr double kMeanWeight = 0.3;
constexpr double kMinWeight = 0.3;

void check_options(const I2vSubjectOptions& options) {
  T4G_CHECK(options.crop_size > 0 && options.crop_size <= options.resize_size, "i2v_subject: crop size ",
            options.crop_size, " must be positive and at most the resize size ", options.resize_size);
}

}  // namespace

torch::Tensor vbench_i2v_frames_preprocess(const torch::Tensor& frames, const I2vSubjectOptions& options) {
  check_video_frames(frames, "frames");
  check_options(options);
  // load_video: torch.Tensor(frames).permute(0, 3, 1, 2), float 0-255.
  const torch::Tensor x = frames.permute({0, 3, 1, 2}).to(torch::kFloat32);
  const torch::Tensor resized = resize_short_side(x, options.resize_size, ResizeMode::kBicubic, /*antialias=*/true);
  return imagenet_normalize(center_crop(resized, options.crop_size).div(255.0));
}

torch::Tensor vbench_i2v_image_preprocess(const torch::Tensor& image, const I2vSubjectOptions& options) {
  check_rgb_image(image, "image");
  check_options(options);
  const ImageSize size = resized_short_side_size(image.size(0), image.size(1), options.resize_size);
  const torch::Tensor resized = pil_resize_bicubic(image, size.height, size.width);  // a copy when already that size
  // CenterCrop on the PIL image, then ToTensor: HWC -> CHW, to float, / 255.
  const torch::Tensor chw = center_crop(resized.permute({2, 0, 1}), options.crop_size);
  return imagenet_normalize(chw.to(torch::kFloat32).div(255.0).unsqueeze(0));
}

void check_rgb_image(const torch::Tensor& image, const std::string& what) {
  ErrorContext ctx;
  ctx.tensor = what;
  ctx.expected = "uint8 RGB [H, W, 3]";
  T4G_CHECK_CTX(image.defined(), ctx, "no image");
  ctx.got = std::string(c10::toString(image.scalar_type())) + " " + shape_string(image.sizes());
  T4G_CHECK_CTX(image.scalar_type() == torch::kUInt8 && image.dim() == 3 && image.size(2) == 3, ctx,
                "the conditioning image must be uint8 RGB [H, W, 3]");
  T4G_CHECK_CTX(image.size(0) >= 1 && image.size(1) >= 1, ctx, "empty image");
}

torch::Tensor read_vbench_image(const std::string& path) {
  const torch::Tensor image = read_png(path);
  ErrorContext ctx;
  ctx.file = path;
  ctx.expected = "an RGB image (3 channels)";
  ctx.got = str(image.size(2), image.size(2) == 1 ? " channel" : " channels");
  T4G_CHECK_CTX(image.size(2) == 3, ctx,
                "i2v_subject needs an RGB PNG: VBench feeds Image.open(path) to its transform unconverted");
  return image;
}

I2vSubjectResult i2v_subject_from_features(const torch::Tensor& image_features, const torch::Tensor& frame_features) {
  ErrorContext ctx;
  ctx.tensor = "frame_features";
  ctx.expected = "[T, D] with T >= 2 (at least one consecutive pair)";
  ctx.got = shape_string(frame_features.sizes());
  T4G_CHECK_CTX(frame_features.dim() == 2 && frame_features.size(0) >= 2 && frame_features.size(1) >= 1, ctx,
                "i2v_subject: wrong frame feature shape");
  const int64_t dim = frame_features.size(1);
  ctx.tensor = "image_features";
  ctx.expected = str("[1, ", dim, "] or [", dim, "]");
  ctx.got = shape_string(image_features.sizes());
  T4G_CHECK_CTX(image_features.numel() == dim && image_features.size(-1) == dim && image_features.dim() <= 2, ctx,
                "i2v_subject: wrong image feature shape");
  namespace nnf = torch::nn::functional;
  const auto l2 = nnf::NormalizeFuncOptions().p(2).dim(-1);
  const torch::Tensor g = nnf::normalize(image_features.to(torch::kFloat32).reshape({1, dim}), l2);
  const torch::Tensor f = nnf::normalize(frame_features.to(torch::kFloat32).to(g.device()), l2);
  const int64_t t = f.size(0);
  const torch::Tensor to_image = nnf::cosine_similarity(g.expand_as(f), f).to(torch::kCPU).contiguous();
  const torch::Tensor to_previous = nnf::cosine_similarity(f.slice(0, 0, t - 1), f.slice(0, 1)).to(torch::kCPU).contiguous();
  const auto* conformity = to_image.data_ptr<float>();
  const auto* consecutive = to_previous.data_ptr<float>();

  // VBench: max(0.0, cos.item()) as Python floats, then np.max / np.mean / np.min in float64.
  I2vSubjectResult r;
  for (int64_t i = 0; i < t; ++i) r.max_conformity = std::max(r.max_conformity, static_cast<double>(conformity[i]));
  double sum = 0;
  r.min_consistency = std::max(0.0, static_cast<double>(consecutive[0]));
  for (int64_t i = 0; i + 1 < t; ++i) {
    const double c = std::max(0.0, static_cast<double>(consecutive[i]));
    sum += c;
    r.min_consistency = std::min(r.min_consistency, c);
  }
  r.mean_consistency = sum / static_cast<double>(t - 1);
  r.score = kMaxWeight * r.max_conformity + kMeanWeight * r.mean_consistency + kMinWeight * r.min_consistency;
  return r;
}

torch::Tensor dino_i2v_image_features(DinoVit& model, const torch::Tensor& image, const I2vSubjectOptions& options) {
  const torch::Tensor x = vbench_i2v_image_preprocess(image, options).to(model->cls_token.device());
  torch::NoGradGuard no_grad;
  return model->forward(x);
}

torch::Tensor dino_i2v_frame_features(DinoVit& model, const torch::Tensor& frames, const I2vSubjectOptions& options) {
  return dino_features_batched(model, frames, options.batch_size, [&options](const torch::Tensor& batch) {
    return vbench_i2v_frames_preprocess(batch, options);
  });
}

I2vSubjectResult i2v_subject(DinoVit& model, const torch::Tensor& image, const torch::Tensor& frames,
                             const I2vSubjectOptions& options) {
  check_video_frames(frames, "frames", 2);
  check_rgb_image(image, "image");
  return i2v_subject_from_features(dino_i2v_image_features(model, image, options),
                                   dino_i2v_frame_features(model, frames, options));
}

double i2v_subject_mean(const std::vector<I2vSubjectResult>& per_video) {
  T4G_CHECK(!per_video.empty(), "i2v_subject: no videos to aggregate");
  double sum = 0;
  for (const auto& r : per_video) sum += r.score;
  return sum / static_cast<double>(per_video.size());
}

}  // namespace t4g
