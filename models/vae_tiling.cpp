// Tiled VAE processing with the reference's blending (see vae_tiling.h).
#include "models/vae_tiling.h"

#include <algorithm>
#include <vector>

#include "common/error.h"

namespace t4g {
namespace {

// b[..., y] = a[..., a_len - extent + y] * (1 - y / extent) + b[..., y] * (y / extent) along `dim`.
// The reference multiplies by Python floats: each product is computed in the op-math type (float
// for fp32/bf16/fp16, double for fp64) with the coefficient rounded to it, and rounded to the
// tensor's dtype; then the sum is rounded again. The same three roundings happen here.
void blend(const torch::Tensor& a, const torch::Tensor& b, int64_t extent, int64_t dim) {
  extent = std::min({a.size(dim), b.size(dim), extent});
  if (extent <= 0) return;
  const torch::ScalarType dtype = b.scalar_type();
  const torch::ScalarType math = dtype == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  std::vector<double> wa(static_cast<size_t>(extent)), wb(static_cast<size_t>(extent));
  for (int64_t y = 0; y < extent; ++y) {
    const double f = static_cast<double>(y) / static_cast<double>(extent);
    wa[static_cast<size_t>(y)] = 1 - f;
    wb[static_cast<size_t>(y)] = f;
  }
  std::vector<int64_t> shape(static_cast<size_t>(b.dim()), 1);
  shape[static_cast<size_t>(dim)] = extent;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  const torch::Tensor ca = torch::tensor(wa, opts).to(math).reshape(shape).to(b.device());
  const torch::Tensor cb = torch::tensor(wb, opts).to(math).reshape(shape).to(b.device());
  const torch::Tensor a_part = a.narrow(dim, a.size(dim) - extent, extent);
  torch::Tensor b_part = b.narrow(dim, 0, extent);
  const torch::Tensor pa = (a_part.to(math) * ca).to(dtype);
  const torch::Tensor pb = (b_part.to(math) * cb).to(dtype);
  b_part.copy_(pa + pb);
}

}  // namespace

void blend_rows(const torch::Tensor& above, const torch::Tensor& tile, int64_t extent) {
  blend(above, tile, extent, 3);
}

void blend_columns(const torch::Tensor& left, const torch::Tensor& tile, int64_t extent) {
  blend(left, tile, extent, 4);
}

torch::Tensor run_tiled(const torch::Tensor& input, const TileGrid& grid,
                        const std::function<torch::Tensor(const torch::Tensor&)>& fn) {
  T4G_CHECK(input.dim() == 5, "run_tiled: expected a [B, C, T, H, W] tensor, got ", input.dim(), " dimensions");
  T4G_CHECK(grid.stride_height > 0 && grid.stride_width > 0 && grid.tile_height > 0 && grid.tile_width > 0,
            "run_tiled: tile sizes and strides must be positive (tile ", grid.tile_height, "x", grid.tile_width,
            ", stride ", grid.stride_height, "x", grid.stride_width, ")");
  const int64_t height = input.size(3), width = input.size(4);
  std::vector<torch::Tensor> above;  // the previous row's blended tiles
  std::vector<torch::Tensor> rows;   // cropped, joined rows
  for (int64_t i = 0; i < height; i += grid.stride_height) {
    std::vector<torch::Tensor> row;
    std::vector<torch::Tensor> kept;
    for (int64_t j = 0; j < width; j += grid.stride_width) {
      torch::Tensor tile = fn(input.slice(3, i, i + grid.tile_height).slice(4, j, j + grid.tile_width));
      const size_t col = row.size();
      if (!above.empty()) blend_rows(above[col], tile, grid.blend_height);
      if (col > 0) blend_columns(row[col - 1], tile, grid.blend_width);
      kept.push_back(tile.slice(3, 0, grid.keep_height).slice(4, 0, grid.keep_width));
      row.push_back(std::move(tile));
    }
    rows.push_back(torch::cat(kept, 4));
    above = std::move(row);
  }
  return torch::cat(rows, 3);
}

}  // namespace t4g
