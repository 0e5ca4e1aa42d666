// Spatial tiling for the VAE (diffusers AutoencoderKLCogVideoX.tiled_encode / tiled_decode): a
// [B, C, T, H, W] tensor is cut into overlapping tiles, each tile is processed on its own, and the
// outputs are cross-faded with the tile above and the tile to the left, cropped and joined. This
// bounds memory by the tile size instead of the frame size. The blending reproduces the
// reference's in-place loop exactly, including that an already-blended tile is what its right
// and lower neighbours blend with.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>

namespace t4g {

// Where the tiles start and what is kept of each output. Input sizes are in the input's units
// (pixels for encode, latents for decode), output sizes in the output's.
struct TileGrid {
  int64_t tile_height = 0;    // input rows per tile (edge tiles may be smaller)
  int64_t tile_width = 0;     // input columns per tile
  int64_t stride_height = 0;  // input rows from one tile start to the next (> 0)
  int64_t stride_width = 0;   // input columns from one tile start to the next (> 0)
  int64_t blend_height = 0;   // output rows cross-faded with the tile above
  int64_t blend_width = 0;    // output columns cross-faded with the tile on the left
  int64_t keep_height = 0;    // output rows kept of every tile
  int64_t keep_width = 0;     // output columns kept of every tile
};

// diffusers blend_v: the first `extent` rows (dim 3) of `tile` become
// above[-extent + y] * (1 - y / extent) + tile[y] * (y / extent), with extent capped by both
// heights; computed with the reference's roundings for fp32, bf16 and fp16. In place on `tile`.
void blend_rows(const torch::Tensor& above, const torch::Tensor& tile, int64_t extent);
// diffusers blend_h: the same along the columns (dim 4) with the tile on the left.
void blend_columns(const torch::Tensor& left, const torch::Tensor& tile, int64_t extent);

// Runs `fn` on every tile of `input` ([B, C, T, H, W], tiles in row-major order) and assembles
// the blended, cropped outputs. `fn` must return a new tensor (it is blended in place). Only one
// row of tile outputs is held at a time.
torch::Tensor run_tiled(const torch::Tensor& input, const TileGrid& grid,
                        const std::function<torch::Tensor(const torch::Tensor&)>& fn);

}  // namespace t4g
