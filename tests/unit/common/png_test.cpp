// common/png: the checksums against their published check values, PNG files decoded back by an
// independent reader written here (chunk CRCs, zlib header, stored blocks, Adler-32, pixels), and
// decode_png on Pillow's files (tests/fixtures/vbench_i2v/png, every scanline filter) against the
// pixels Pillow reads from them, plus its errors.
#include "common/png.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "tests/testing.h"

namespace t4g {
namespace {

uint32_t be32(const std::string& s, size_t pos) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(s[pos])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[pos + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[pos + 2])) << 8) | static_cast<uint32_t>(static_cast<uint8_t>(s[pos + 3]));
}

// Bitwise CRC-32, deliberately not table-driven, to check the table version.
uint32_t slow_crc32(const std::string& bytes) {
  uint32_t c = 0xFFFFFFFFU;
  for (const char ch : bytes) {
    c ^= static_cast<uint8_t>(ch);
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320U & (0U - (c & 1U)));
  }
  return ~c;
}

struct Decoded {
  int64_t width = 0, height = 0, colour_type = -1;
  std::string pixels;  // scanlines without filter bytes
};

// Parses a PNG made of stored deflate blocks, checking every CRC and the Adler-32.
Decoded decode_stored_png(const std::string& png) {
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  Decoded d;
  std::string idat;
  size_t pos = 8;
  bool ended = false;
  while (pos < png.size()) {
    const uint32_t len = be32(png, pos);
    const std::string type = png.substr(pos + 4, 4);
    const std::string data = png.substr(pos + 8, len);
    EXPECT_EQ(be32(png, pos + 8 + len), slow_crc32(type + data)) << "chunk " << type;
    if (type == "IHDR") {
      d.width = be32(data, 0);
      d.height = be32(data, 4);
      EXPECT_EQ(static_cast<int>(data[8]), 8);
      d.colour_type = data[9];
    } else if (type == "IDAT") {
      idat += data;
    } else if (type == "IEND") {
      ended = true;
    }
    pos += 12 + len;
  }
  EXPECT_TRUE(ended);
  EXPECT_EQ(((static_cast<uint8_t>(idat[0]) << 8) | static_cast<uint8_t>(idat[1])) % 31, 0);
  std::string raw;
  size_t p = 2;
  for (;;) {
    const uint8_t header = static_cast<uint8_t>(idat[p]);
    EXPECT_EQ(header & 0x6, 0) << "only stored blocks expected";
    const uint32_t len = static_cast<uint8_t>(idat[p + 1]) | (static_cast<uint8_t>(idat[p + 2]) << 8);
    const uint32_t nlen = static_cast<uint8_t>(idat[p + 3]) | (static_cast<uint8_t>(idat[p + 4]) << 8);
    EXPECT_EQ(len ^ 0xFFFFU, nlen);
    raw += idat.substr(p + 5, len);
    p += 5 + len;
    if ((header & 1) != 0) break;
  }
  EXPECT_EQ(be32(idat, p), adler32(reinterpret_cast<const uint8_t*>(raw.data()), raw.size()));
  const int64_t channels = d.colour_type == 2 ? 3 : 1;
  const size_t row = static_cast<size_t>(d.width * channels);
  for (int64_t y = 0; y < d.height; ++y) {
    EXPECT_EQ(raw[y * (row + 1)], '\0');
    d.pixels += raw.substr(y * (row + 1) + 1, row);
  }
  return d;
}

TEST(Png, ChecksumsMatchPublishedCheckValues) {
  const std::string check = "123456789";
  const auto* bytes = reinterpret_cast<const uint8_t*>(check.data());
  EXPECT_EQ(crc32(bytes, check.size()), 0xCBF43926U);  // CRC-32/ISO-HDLC check value
  EXPECT_EQ(crc32(reinterpret_cast<const uint8_t*>("IEND"), 4), 0xAE426082U);  // every PNG's last CRC
  const std::string wiki = "Wikipedia";
  EXPECT_EQ(adler32(reinterpret_cast<const uint8_t*>(wiki.data()), wiki.size()), 0x11E60398U);
  // Continuation equals one pass.
  EXPECT_EQ(crc32(bytes + 4, 5, crc32(bytes, 4)), 0xCBF43926U);
  EXPECT_EQ(adler32(bytes + 4, 5, adler32(bytes, 4)), adler32(bytes, 9));
}

TEST(Png, RgbImageDecodesBackExactly) {
  // 150 x 200 x 3 = 90,000 bytes of scanlines: more than one stored block (65,535).
  const auto image = torch::randint(0, 256, {150, 200, 3}, torch::TensorOptions().dtype(torch::kUInt8));
  const Decoded d = decode_stored_png(encode_png(image));
  EXPECT_EQ(d.width, 200);
  EXPECT_EQ(d.height, 150);
  EXPECT_EQ(d.colour_type, 2);
  const auto c = image.contiguous();
  EXPECT_EQ(d.pixels, std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), c.numel()));
}

TEST(Png, GreyImageAndAtomicFile) {
  const auto image = torch::arange(0, 12, torch::kInt).to(torch::kUInt8).reshape({3, 4});
  testing::TempDir dir;
  const std::string path = dir.file("grey.png");
  write_png(path, image);
  const Decoded d = decode_stored_png(read_file(path));
  EXPECT_EQ(d.colour_type, 0);
  EXPECT_EQ(d.width, 4);
  EXPECT_EQ(d.height, 3);
  EXPECT_EQ(d.pixels, std::string("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b", 12));
}

TEST(Png, BadImagesAreRefusedNamingTheFile) {
  testing::TempDir dir;
  const std::string path = dir.file("bad.png");
  const std::string msg = testing::error_of([&] { write_png(path, torch::zeros({4, 4, 3}, torch::kFloat32)); });
  EXPECT_NE(msg.find("bad.png"), std::string::npos) << msg;
  EXPECT_NE(msg.find("uint8"), std::string::npos) << msg;
  EXPECT_FALSE(path_exists(path));
  EXPECT_NE(testing::error_of([] { encode_png(torch::zeros({4, 4, 2}, torch::kUInt8)); }), "");
}

TEST(PngDecode, PillowFilesDecodeToPillowsPixels) {
  const auto pixels = load_safetensors(testing::fixture("vbench_i2v/png.safetensors"));
  for (const char* mode : {"RGB", "L", "LA", "RGBA"}) {
    SCOPED_TRACE(mode);
    const torch::Tensor image = read_png(testing::fixture(std::string("vbench_i2v/png/") + mode + ".png"));
    torch::Tensor expected = pixels.at(std::string("pixels_") + mode);
    if (expected.dim() == 2) expected = expected.unsqueeze(-1);  // Pillow's L is [H, W]
    ASSERT_EQ(image.sizes(), expected.sizes());
    EXPECT_TRUE(torch::equal(image, expected));  // PNG is lossless: exact
  }
}

TEST(PngDecode, RoundTripsOurOwnFiles) {
  const auto rgb = torch::randint(0, 256, {150, 200, 3}, torch::TensorOptions().dtype(torch::kUInt8));
  EXPECT_TRUE(torch::equal(decode_png(encode_png(rgb)), rgb));
  const auto grey = torch::randint(0, 256, {5, 7}, torch::TensorOptions().dtype(torch::kUInt8));
  EXPECT_TRUE(torch::equal(decode_png(encode_png(grey)), grey.unsqueeze(-1)));
}

TEST(PngDecode, UnsupportedAndDamagedFilesAreOneErrorNamingTheFile) {
  auto error_for = [](const std::string& path) { return testing::error_of([&] { read_png(path); }); };
  const std::string palette = testing::fixture("vbench_i2v/png/P.png");
  std::string msg = error_for(palette);
  EXPECT_NE(msg.find("P.png"), std::string::npos) << msg;
  EXPECT_NE(msg.find("palette"), std::string::npos) << msg;
  msg = error_for(testing::fixture("vbench_i2v/png/I16.png"));
  EXPECT_NE(msg.find("bit depth 16"), std::string::npos) << msg;

  testing::TempDir dir;
  msg = error_for(dir.file("absent.png"));
  EXPECT_NE(msg.find("absent.png"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not found"), std::string::npos) << msg;
  testing::write_file(dir.file("text.png"), "not a png at all");
  EXPECT_NE(error_for(dir.file("text.png")).find("no PNG signature"), std::string::npos);

  const std::string good = read_file(testing::fixture("vbench_i2v/png/RGB.png"));
  testing::write_file(dir.file("cut.png"), good.substr(0, good.size() / 2));
  msg = error_for(dir.file("cut.png"));
  EXPECT_NE(msg.find("cut.png"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  std::string flipped = good;
  flipped[60] = static_cast<char>(flipped[60] ^ 0x10);  // inside the first IDAT: its CRC fails
  testing::write_file(dir.file("flipped.png"), flipped);
  EXPECT_NE(error_for(dir.file("flipped.png")).find("CRC"), std::string::npos);
}

}  // namespace
}  // namespace t4g
