// Tests of the safe pickle reader and the TAP-Vid reader on pickles made by Python's pickle and
// numpy (tests/fixtures/tapvid/make_fixtures.py): exact values at protocols 2-5 with both numpy
// module spellings, JPEG frames, conversion to pixels, and hostile pickles that must be refused
// without running anything.
#include "data/tapvid.h"
#include "common/fs.h"

#include <gtest/gtest.h>


#include "common/error.h"
#include "data/pickle.h"
#include "t4g/build_config.h"
#include "tests/testing.h"

namespace t4g::data {
namespace {

using t4g::testing::fixture;

using t4g::testing::error_of;

// The formulas of make_fixtures.py (davis_video).
struct DavisExpected {
  torch::Tensor video, points, occluded;
};
DavisExpected davis_expected(int64_t T, int64_t H, int64_t W, int64_t N, int64_t offset) {
  DavisExpected e;
  e.video = torch::empty({T, H, W, 3}, torch::kUInt8);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        for (int64_t c = 0; c < 3; ++c) e.video[t][y][x][c] = (t * 50 + y * 20 + x * 7 + c * 3 + offset) % 256;
  e.points = torch::empty({N, T, 2}, torch::kFloat64);
  e.occluded = torch::empty({N, T}, torch::kBool);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t t = 0; t < T; ++t) {
      // Stored as float32; these binary fractions are exact in float32.
      e.points[n][t][0] = (n + 1) / 8.0 + t / 32.0;
      e.points[n][t][1] = 1.0 - (n + 1) / 8.0 - t / 64.0;
      e.occluded[n][t] = (n + t + offset) % 3 == 0;
    }
  }
  return e;
}

class DavisForms : public ::testing::TestWithParam<std::string> {};

TEST_P(DavisForms, ValuesExact) {
  const std::vector<TapVidVideo> videos = read_tapvid_pickle(fixture("tapvid/" + GetParam()));
  ASSERT_EQ(videos.size(), 2u);
  EXPECT_EQ(videos[0].name, "bear");  // dict order is the pickled order
  EXPECT_EQ(videos[1].name, "car-shadow");
  const DavisExpected bear = davis_expected(3, 4, 5, 4, 0), car = davis_expected(2, 3, 4, 2, 1);
  for (const auto& [v, e] : {std::pair<const TapVidVideo&, const DavisExpected&>{videos[0], bear}, {videos[1], car}}) {
    EXPECT_TRUE(v.jpeg_frames.empty());
    EXPECT_TRUE(torch::equal(v.frames, e.video)) << v.name;      // exact
    EXPECT_TRUE(torch::equal(v.points, e.points)) << v.name;     // exact (car-shadow's is Fortran-ordered)
    EXPECT_TRUE(torch::equal(v.occluded, e.occluded)) << v.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Protocols, DavisForms,
                         ::testing::Values("davis_p2.pkl", "davis_p3.pkl", "davis_p4.pkl", "davis_p5.pkl",
                                           "davis_numpy1_p2.pkl", "davis_numpy1_p4.pkl"));

TEST(TapVid, ConvertsToPixelsAndVisibility) {
  const TapVidVideo v = read_tapvid_pickle(fixture("tapvid/davis_p4.pkl"))[0];
  const TapVidTracks t = tapvid_to_pixels(v, 4, 5);
  EXPECT_EQ(t.tracks.scalar_type(), torch::kFloat32);
  // Point 1 at frame 2: x = (2/8 + 2/32) * 5 = 1.5625, y = (1 - 2/8 - 2/64) * 4 = 2.875 (exact).
  EXPECT_FLOAT_EQ(t.tracks[1][2][0].item<float>(), 1.5625f);
  EXPECT_FLOAT_EQ(t.tracks[1][2][1].item<float>(), 2.875f);
  EXPECT_TRUE(torch::equal(t.visibility, v.occluded.logical_not()));
  EXPECT_EQ(tapvid_video_id("tapvid_davis", v, 0), "tapvid_davis-bear");
  TapVidVideo unnamed = v;
  unnamed.name.clear();
  EXPECT_EQ(tapvid_video_id("0000_of_0010", unnamed, 7), "0000_of_0010-0007");
}

class KineticsForms : public ::testing::TestWithParam<std::string> {};

TEST_P(KineticsForms, JpegFramesAndFloat64Points) {
  const std::vector<TapVidVideo> videos = read_tapvid_pickle(fixture("tapvid/" + GetParam()));
  ASSERT_EQ(videos.size(), 1u);
  const TapVidVideo& v = videos[0];
  EXPECT_TRUE(v.name.empty());
  ASSERT_EQ(v.jpeg_frames.size(), 3u);
  for (const auto& j : v.jpeg_frames) {
    ASSERT_GE(j.size(), 4u);
    EXPECT_EQ(static_cast<uint8_t>(j[0]), 0xFF);  // SOI
    EXPECT_EQ(static_cast<uint8_t>(j[1]), 0xD8);
    EXPECT_EQ(static_cast<uint8_t>(j[j.size() - 2]), 0xFF);  // EOI, NUL padding stripped
    EXPECT_EQ(static_cast<uint8_t>(j[j.size() - 1]), 0xD9);
  }
  for (int64_t n = 0; n < 3; ++n) {
    for (int64_t t = 0; t < 3; ++t) {
      EXPECT_EQ(v.points[n][t][0].item<double>(), (n + 0.5) / 4 + t / 16.0);  // float64, exact
      EXPECT_EQ(v.points[n][t][1].item<double>(), (n + 1) / 5.0);
      EXPECT_EQ(v.occluded[n][t].item<bool>(), n == t);
    }
  }
#if T4G_HAVE_OPENCV
  const torch::Tensor frames = decode_tapvid_frames(v);
  ASSERT_EQ(frames.sizes(), (std::vector<int64_t>{3, 16, 16, 3}));
  const std::string pil = t4g::testing::read_file(fixture("tapvid/kinetics_decoded_by_pil.bin"));
  const torch::Tensor expected = torch::from_blob(const_cast<char*>(pil.data()), {3, 16, 16, 3}, torch::kUInt8);
  // OpenCV's and PIL's JPEG decoders may round the IDCT differently: tolerance 2 levels.
  EXPECT_LE((frames.to(torch::kInt32) - expected.to(torch::kInt32)).abs().max().item<int>(), 2);
#else
  EXPECT_NE(error_of([&] { decode_tapvid_frames(v); }).find("need OpenCV"), std::string::npos);
#endif
}

INSTANTIATE_TEST_SUITE_P(Protocols, KineticsForms, ::testing::Values("kinetics_p2.pkl", "kinetics_p4.pkl", "kinetics_p5.pkl"));

TEST(TapVid, HostilePicklesAreRefusedWithoutRunningCode) {
  const std::string marker = "/tmp/t4g_tapvid_pickle_was_executed";
  remove_all(marker);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"evil_os_system_p2.pkl", "refusing global 'posix.system'"},
      {"evil_os_system_p4.pkl", "refusing global 'posix.system'"},
      {"evil_eval_p4.pkl", "refusing global 'builtins.eval'"},
      {"object_array_p4.pkl", "unsupported numpy dtype 'O8'"},
  };
  for (const auto& [file, message] : cases) {
    const std::string err = error_of([&] { read_tapvid_pickle(fixture("tapvid/" + file)); });
    EXPECT_NE(err.find(message), std::string::npos) << file << ": " << err;
    EXPECT_NE(err.find(file), std::string::npos) << "the error names the file: " << err;
  }
  EXPECT_FALSE(path_exists(marker));
}

TEST(TapVid, MalformedStreamsGiveClearErrors) {
  const std::string whole = t4g::testing::read_file(fixture("tapvid/davis_p4.pkl"));
  const std::string whole_p2 = t4g::testing::read_file(fixture("tapvid/davis_p2.pkl"));  // no FRAME opcodes
  const std::string u64max = std::string(8, '\xff');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {whole.substr(0, whole.size() / 2), "bytes left"},  // the first FRAME announces more than is there
      {whole_p2.substr(0, whole_p2.size() - 1), "truncated stream (no STOP opcode)"},
      {std::string("\x80\x04\x95", 3) + u64max, "frame of 18446744073709551615 bytes exceeds"},
      {std::string("\x80\x04\x8e", 3) + std::string("\x00\x00\x00\x00\x00\x00\x00\x40", 8), "exceeds the 0 bytes left"},
      {std::string("\x80\x04\x8d", 3) + u64max + "abc", "exceeds the 3 bytes left"},
      {std::string("\x80\x04j\xff\xff\xff\xff.", 9), "memo key 4294967295 was never stored"},
      {std::string("\x80\x06N.", 4), "unsupported pickle protocol 6"},
      {std::string("(dp0\n.", 6), "refusing pickle opcode 0x64 ('d')"},
      {std::string("\x80\x02.", 3), "stack not balanced"},
      {std::string("\x80\x02t.", 4), "no MARK"},
      {std::string("\x80\x02R.", 4), "stack underflow"},
  };
  for (const auto& [bytes, message] : cases) {
    const std::string err = error_of([&] { pickle::load(bytes, "bad.pkl"); });
    EXPECT_NE(err.find(message), std::string::npos) << "want '" << message << "', got: " << err;
    EXPECT_NE(err.find("bad.pkl"), std::string::npos) << err;
  }
  // A huge memo key is only a map key: nothing is allocated for it.
  const pickle::ValuePtr none = pickle::load(std::string("\x80\x04Nr\xff\xff\xff\xff.", 9), "ok.pkl");
  EXPECT_EQ(none->kind, pickle::Value::Kind::kNone);
  // Well-formed pickles that are not TAP-Vid files.
  t4g::testing::TempDir dir;
  t4g::testing::write_file(dir.file("none.pkl"), std::string("\x80\x04N.", 4));
  EXPECT_NE(error_of([&] { read_tapvid_pickle(dir.file("none.pkl")); }).find("top level is a None"), std::string::npos);
  t4g::testing::write_file(dir.file("empty_video.pkl"), std::string("\x80\x04]\x94}\x94\x61.", 8));  // [{}]
  EXPECT_NE(error_of([&] { read_tapvid_pickle(dir.file("empty_video.pkl")); }).find("[0]/video: missing key"),
            std::string::npos);
}

}  // namespace
}  // namespace t4g::data
