// torchvision's Resize / CenterCrop / Normalize semantics as VBench's transforms use them. The
// resize calls the same torch kernel torchvision does (F.interpolate), so the pixels are the
// same; the size and crop arithmetic restates torchvision's Python, rounding included.
#include "eval/vbench_transforms.h"

#include <algorithm>
#include <vector>

#include "common/error.h"
#include "common/shape_string.h"

namespace t4g {

ImageSize resized_short_side_size(int64_t height, int64_t width, int64_t short_side) {
  T4G_CHECK(height > 0 && width > 0 && short_side > 0, "resize: sizes must be positive, got ", height, "x", width,
            " to short side ", short_side);
  const int64_t shorter = std::min(height, width), longer = std::max(height, width);
  // int(requested * long / short): a float division, truncated.
  const auto new_long =
      static_cast<int64_t>(static_cast<double>(short_side * longer) / static_cast<double>(shorter));
  ImageSize size;
  size.height = width <= height ? new_long : short_side;
  size.width = width <= height ? short_side : new_long;
  return size;
}

torch::Tensor resize_short_side(const torch::Tensor& images, int64_t short_side, ResizeMode mode, bool antialias) {
  ErrorContext ctx;
  ctx.tensor = "images";
  ctx.expected = "float [N, C, H, W]";
  ctx.got = std::string(c10::toString(images.scalar_type())) + " " + shape_string(images.sizes());
  T4G_CHECK_CTX(images.dim() == 4 && images.is_floating_point(), ctx, "resize: wrong image tensor");
  const ImageSize size = resized_short_side_size(images.size(2), images.size(3), short_side);
  if (size.height == images.size(2) && size.width == images.size(3)) return images;
  namespace nnf = torch::nn::functional;
  nnf::InterpolateFuncOptions options;
  options.size(std::vector<int64_t>{size.height, size.width}).align_corners(false).antialias(antialias);
  if (mode == ResizeMode::kBicubic) {
    options.mode(torch::kBicubic);
  } else {
    options.mode(torch::kBilinear);
  }
  return nnf::interpolate(images, options);
}

int64_t center_crop_offset(int64_t size, int64_t crop) {
  T4G_CHECK(crop > 0 && crop <= size, "center crop: crop ", crop, " does not fit in ", size);
  const int64_t twice = size - crop;  // the offset is twice / 2, possibly a half
  const int64_t half = twice / 2;
  if (twice % 2 == 0) return half;
  return half % 2 == 0 ? half : half + 1;  // round half to even
}

torch::Tensor center_crop(const torch::Tensor& images, int64_t crop) {
  ErrorContext ctx;
  ctx.tensor = "images";
  ctx.expected = str("[..., H, W] with H, W >= ", crop);
  ctx.got = shape_string(images.sizes());
  T4G_CHECK_CTX(images.dim() >= 2 && images.size(-2) >= crop && images.size(-1) >= crop && crop > 0, ctx,
                "center crop: image smaller than the crop");
  const int64_t top = center_crop_offset(images.size(-2), crop);
  const int64_t left = center_crop_offset(images.size(-1), crop);
  return images.slice(-2, top, top + crop).slice(-1, left, left + crop);
}

torch::Tensor imagenet_normalize(const torch::Tensor& images) {
  ErrorContext ctx;
  ctx.tensor = "images";
  ctx.expected = "float [N, 3, H, W]";
  ctx.got = std::string(c10::toString(images.scalar_type())) + " " + shape_string(images.sizes());
  T4G_CHECK_CTX(images.dim() == 4 && images.size(1) == 3 && images.is_floating_point(), ctx,
                "normalize: wrong image tensor");
  // torchvision: torch.as_tensor(mean, dtype=tensor.dtype).view(-1, 1, 1), then sub_ and div_.
  const auto options = torch::TensorOptions().dtype(images.scalar_type()).device(images.device());
  const torch::Tensor mean = torch::tensor({0.485, 0.456, 0.406}, options).view({-1, 1, 1});
  const torch::Tensor std = torch::tensor({0.229, 0.224, 0.225}, options).view({-1, 1, 1});
  return images.sub(mean).div(std);
}

}  // namespace t4g
