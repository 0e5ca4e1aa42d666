// PNG encoding with stored (uncompressed) deflate blocks, and decoding of 8-bit PNGs through
// zlib; see png.h for why.
#include "common/png.h"

#include <zlib.h>

#include <array>
#include <cstdlib>
#include <limits>

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

const char kSignature[] = "\x89PNG\r\n\x1a\n";

uint32_t get_u32_be(const std::string& s, size_t pos) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(s[pos])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[pos + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[pos + 2])) << 8) |
         static_cast<uint32_t>(static_cast<uint8_t>(s[pos + 3]));
}

// The header fields decode_png needs.
struct PngHeader {
  uint32_t width = 0;
  uint32_t height = 0;
  int channels = 0;  // from the colour type: 0 -> 1, 4 -> 2, 2 -> 3, 6 -> 4
};

PngHeader parse_ihdr(const std::string& data) {
  T4G_CHECK(data.size() == 13, "PNG: IHDR chunk of ", data.size(), " bytes (expected 13)");
  PngHeader h;
  h.width = get_u32_be(data, 0);
  h.height = get_u32_be(data, 4);
  const int bit_depth = static_cast<uint8_t>(data[8]);
  const int colour_type = static_cast<uint8_t>(data[9]);
  T4G_CHECK(h.width > 0 && h.height > 0, "PNG: empty image (", h.width, "x", h.height, ")");
  T4G_CHECK(colour_type != 3, "PNG: palette images are not supported (save it as RGB)");
  T4G_CHECK(bit_depth == 8, "PNG: bit depth ", bit_depth, " is not supported (8 bits per channel only)");
  switch (colour_type) {
    case 0: h.channels = 1; break;
    case 4: h.channels = 2; break;
    case 2: h.channels = 3; break;
    case 6: h.channels = 4; break;
    default: T4G_CHECK(false, "PNG: unknown colour type ", colour_type);
  }
  T4G_CHECK(data[10] == 0 && data[11] == 0, "PNG: unknown compression or filter method");
  T4G_CHECK(data[12] == 0, "PNG: interlaced images are not supported");
  return h;
}

// The paeth predictor of the PNG specification (section 9.4).
uint8_t paeth(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return static_cast<uint8_t>(a);
  if (pb <= pc) return static_cast<uint8_t>(b);
  return static_cast<uint8_t>(c);
}

// Inflates the zlib stream `compressed`, which must hold exactly `size` bytes.
std::string inflate_exact(const std::string& compressed, size_t size) {
  std::string out(size, '\0');
  z_stream z{};
  T4G_CHECK(inflateInit(&z) == Z_OK, "PNG: zlib initialisation failed");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  z.avail_in = static_cast<uInt>(compressed.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(size);
  const int rc = inflate(&z, Z_FINISH);
  const uLong produced = z.total_out;
  inflateEnd(&z);
  T4G_CHECK(rc == Z_STREAM_END && produced == size, "PNG: damaged image data (zlib stream ",
            rc == Z_DATA_ERROR ? "corrupt" : rc == Z_STREAM_END ? "of the wrong length" : "truncated or too long",
            ")");
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

torch::Tensor decode_png(const std::string& bytes) {
  T4G_CHECK(bytes.size() >= 8 && bytes.compare(0, 8, kSignature, 8) == 0, "not a PNG file (no PNG signature)");
  PngHeader header;
  bool have_header = false, ended = false;
  std::string idat;
  size_t pos = 8;
  while (pos + 12 <= bytes.size() && !ended) {
    const uint32_t length = get_u32_be(bytes, pos);
    T4G_CHECK(length <= bytes.size() - pos - 12, "PNG: truncated file (a chunk runs past the end)");
    const std::string type = bytes.substr(pos + 4, 4);
    const auto* typed = reinterpret_cast<const uint8_t*>(bytes.data() + pos + 4);
    T4G_CHECK(crc32(typed, 4 + static_cast<size_t>(length)) == get_u32_be(bytes, pos + 8 + length), "PNG: chunk ",
              type, " fails its CRC (damaged file)");
    const std::string data = bytes.substr(pos + 8, length);
    if (type == "IHDR") {
      header = parse_ihdr(data);
      have_header = true;
    } else if (type == "IDAT") {
      idat += data;
    } else if (type == "IEND") {
      ended = true;
    }  // ancillary chunks (and an RGB image's suggested PLTE) do not change the pixels
    T4G_CHECK(have_header, "PNG: the first chunk is ", type, ", not IHDR");
    pos += 12 + static_cast<size_t>(length);
  }
  T4G_CHECK(ended, "PNG: truncated file (no IEND chunk)");
  T4G_CHECK(!idat.empty(), "PNG: no image data (IDAT)");

  const uint64_t row_bytes = static_cast<uint64_t>(header.width) * header.channels;
  const uint64_t raw_size = (row_bytes + 1) * header.height;
  T4G_CHECK(raw_size < std::numeric_limits<uInt>::max(), "PNG: image too large (", header.width, "x", header.height,
            ")");
  const std::string raw = inflate_exact(idat, static_cast<size_t>(raw_size));

  torch::Tensor image = torch::empty({static_cast<int64_t>(header.height), static_cast<int64_t>(header.width),
                                      static_cast<int64_t>(header.channels)},
                                     torch::kUInt8);
  uint8_t* out = image.data_ptr<uint8_t>();
  const auto* in = reinterpret_cast<const uint8_t*>(raw.data());
  const size_t n = static_cast<size_t>(row_bytes);
  const size_t bpp = static_cast<size_t>(header.channels);  // bytes per complete pixel at 8 bits
  for (size_t y = 0; y < header.height; ++y) {
    const int filter = in[y * (n + 1)];
    const uint8_t* src = in + y * (n + 1) + 1;
    uint8_t* row = out + y * n;
    const uint8_t* up = y > 0 ? row - n : nullptr;
    for (size_t i = 0; i < n; ++i) {
      const int a = i >= bpp ? row[i - bpp] : 0;
      const int b = up != nullptr ? up[i] : 0;
      const int c = up != nullptr && i >= bpp ? up[i - bpp] : 0;
      int predictor = 0;
      switch (filter) {
        case 0: break;
        case 1: predictor = a; break;
        case 2: predictor = b; break;
        case 3: predictor = (a + b) / 2; break;
        case 4: predictor = paeth(a, b, c); break;
        default: T4G_CHECK(false, "PNG: unknown filter type ", filter, " on row ", y, " (damaged file)");
      }
      row[i] = static_cast<uint8_t>(src[i] + predictor);
    }
  }
  return image;
}

torch::Tensor read_png(const std::string& path) {
  ErrorContext ctx;
  ctx.file = path;
  T4G_CHECK_CTX(path_exists(path), ctx, "image file not found");
  const std::string bytes = read_file(path);
  try {
    return decode_png(bytes);
  } catch (const Error& e) {
    throw Error(e.message(), ctx);
  }
}

}  // namespace t4g
