// A minimal PNG writer (8-bit RGB or greyscale, no filtering, zlib "stored" deflate blocks) so
// that heatmaps and track strips can be written on machines without OpenCV (the GPU machines).
// Uncompressed deflate keeps it ~100 lines with nothing to get subtly wrong; the files are small
// pictures, so their size does not matter. Also the two checksums PNG needs, and a reader for the
// 8-bit PNGs other tools write (Pillow's, for VBench-I2V's conditioning images), which inflates
// with zlib and undoes the five scanline filters: PNG is lossless, so the pixels are exact.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace t4g {

// CRC-32 (ISO 3309 / PNG chunk CRC, polynomial 0xEDB88320) of `size` bytes, continuing from `crc`
// (pass 0 to start).
uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0);

// Adler-32 (zlib stream checksum) of `size` bytes, continuing from `adler` (pass 1 to start).
uint32_t adler32(const uint8_t* data, size_t size, uint32_t adler = 1);

// The PNG file bytes of uint8 `image` [H, W, 3] (RGB) or [H, W] (grey), on any device.
std::string encode_png(const torch::Tensor& image);

// encode_png written atomically to `path`; errors name the file and the tensor's shape.
void write_png(const std::string& path, const torch::Tensor& image);

// The pixels of PNG file bytes as uint8 [H, W, C] on the CPU: 8-bit, non-interlaced greyscale
// (C = 1), grey + alpha (2), RGB (3) or RGBA (4), any compression level and scanline filters.
// Palette, 16-bit and interlaced images, and damaged files (signature, chunk CRCs, zlib stream,
// sizes) are one t4g::Error saying which.
torch::Tensor decode_png(const std::string& bytes);

// decode_png of a file; errors name the file (a missing file included).
torch::Tensor read_png(const std::string& path);

}  // namespace t4g
