// PNG encoding with stored (uncompressed) deflate blocks; see png.h for why.
#include "common/png.h"

#include <array>

#include "common/error.h"
#include "common/fs.h"
#include "common/shape_string.h"

namespace t4g {
namespace {

// Largest payload of one stored deflate block (its LEN field is 16 bits).
constexpr size_t kMaxStoredBlock = 65535;

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1U) != 0 ? 0xEDB88320U ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  return table;
}

void put_u32_be(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>((v >> 24) & 0xFF));
  out.push_back(static_cast<char>((v >> 16) & 0xFF));
  out.push_back(static_cast<char>((v >> 8) & 0xFF));
  out.push_back(static_cast<char>(v & 0xFF));
}

// Length, type, data, CRC over type + data.
void put_chunk(std::string& out, const char* type, const std::string& data) {
  put_u32_be(out, static_cast<uint32_t>(data.size()));
  const size_t start = out.size();
  out.append(type, 4);
  out.append(data);
  put_u32_be(out, crc32(reinterpret_cast<const uint8_t*>(out.data() + start), out.size() - start));
}

// A zlib stream (RFC 1950) holding `raw` in stored deflate blocks (RFC 1951 section 3.2.4).
std::string zlib_stored(const std::string& raw) {
  std::string out;
  out.push_back(static_cast<char>(0x78));  // CMF: deflate, 32K window
  out.push_back(static_cast<char>(0x01));  // FLG: no dictionary, fastest; (0x78 << 8 | 0x01) % 31 == 0
  size_t pos = 0;
  do {
    const size_t len = std::min(kMaxStoredBlock, raw.size() - pos);
    const bool final = pos + len == raw.size();
    out.push_back(static_cast<char>(final ? 1 : 0));  // BFINAL, BTYPE = 00 (stored), byte-aligned
    out.push_back(static_cast<char>(len & 0xFF));
    out.push_back(static_cast<char>((len >> 8) & 0xFF));
    out.push_back(static_cast<char>(~len & 0xFF));
    out.push_back(static_cast<char>((~len >> 8) & 0xFF));
    out.append(raw, pos, len);
    pos += len;
  } while (pos < raw.size());
  put_u32_be(out, adler32(reinterpret_cast<const uint8_t*>(raw.data()), raw.size()));
  return out;
}

}  // namespace

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc) {
  const auto& table = crc_table();
  uint32_t c = crc ^ 0xFFFFFFFFU;
  for (size_t i = 0; i < size; ++i) c = table[(c ^ data[i]) & 0xFFU] ^ (c >> 8);
  return c ^ 0xFFFFFFFFU;
}

uint32_t adler32(const uint8_t* data, size_t size, uint32_t adler) {
  constexpr uint32_t kMod = 65521;
  uint32_t a = adler & 0xFFFF, b = adler >> 16;
  for (size_t i = 0; i < size; ++i) {
    a = (a + data[i]) % kMod;
    b = (b + a) % kMod;
  }
  return (b << 16) | a;
}

std::string encode_png(const torch::Tensor& image) {
  const bool rgb = image.dim() == 3 && image.size(2) == 3;
  T4G_CHECK(image.scalar_type() == torch::kUInt8 && (rgb || image.dim() == 2) && image.numel() > 0,
            "a PNG image must be non-empty uint8 [H, W, 3] or [H, W], got ", c10::toString(image.scalar_type()), " [",
            shape_string(image.sizes()), "]");
  const auto pixels = image.to(torch::kCPU).contiguous();
  const int64_t height = pixels.size(0), width = pixels.size(1), channels = rgb ? 3 : 1;
  const size_t row_bytes = static_cast<size_t>(width * channels);

  // Scanlines, each preceded by filter type 0 (None).
  std::string raw;
  raw.reserve(static_cast<size_t>(height) * (row_bytes + 1));
  const auto* src = reinterpret_cast<const char*>(pixels.data_ptr<uint8_t>());
  for (int64_t y = 0; y < height; ++y) {
    raw.push_back('\0');
    raw.append(src + static_cast<size_t>(y) * row_bytes, row_bytes);
  }

  std::string ihdr;
  put_u32_be(ihdr, static_cast<uint32_t>(width));
  put_u32_be(ihdr, static_cast<uint32_t>(height));
  ihdr.push_back(static_cast<char>(8));             // bit depth
  ihdr.push_back(static_cast<char>(rgb ? 2 : 0));   // colour type: truecolour or greyscale
  ihdr.append(3, '\0');                             // compression, filter, interlace: 0

  std::string png("\x89PNG\r\n\x1a\n", 8);
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", zlib_stored(raw));
  put_chunk(png, "IEND", "");
  return png;
}

void write_png(const std::string& path, const torch::Tensor& image) {
  std::string bytes;
  try {
    bytes = encode_png(image);
  } catch (const Error& e) {
    ErrorContext ctx;
    ctx.file = path;
    throw Error(e.message(), ctx);
  }
  write_file_atomically(path, bytes);
}

}  // namespace t4g
