// TAP-Vid datasets read from their pickles (research/benchmarks.md section 1) through the safe
// pickle reader (data/pickle.h): the DAVIS form (dict name -> {video uint8 [T,H,W,3], points
// [N,T,2] normalised (x, y), occluded bool [N,T]}) and the Kinetics / RGB-Stacking list form,
// whose Kinetics frames are JPEG files (decoded with OpenCV where the build has it). Conversion
// to t4g's conventions (pixels, visibility) happens here, at the edge.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace t4g::data {

// One TAP-Vid video exactly as stored.
struct TapVidVideo {
  std::string name;                      // the dict key (DAVIS, RoboTAP); empty in list-form files
  torch::Tensor frames;                  // uint8 [T, H, W, 3] RGB; undefined when frames are JPEG
  std::vector<std::string> jpeg_frames;  // T JPEG files (Kinetics form); empty otherwise
  torch::Tensor points;                  // float64 [N, T, 2] (x, y) normalised to [0, 1], as stored
  torch::Tensor occluded;                // bool [N, T], true = occluded
  int64_t num_frames() const;
};

// Reads every video of a TAP-Vid pickle (dict or list form) and validates shapes and dtypes;
// errors name the file and the video.
std::vector<TapVidVideo> read_tapvid_pickle(const std::string& path);

// The frames as uint8 [T, H, W, 3] RGB, decoding JPEG frames (needs OpenCV; without it this
// throws one line saying so).
torch::Tensor decode_tapvid_frames(const TapVidVideo& video);

// Tracks in t4g's convention for frames of height x width: pixels = normalised * (width,
// height) (TAP-Vid raster convention, no half-pixel shift), visibility = !occluded.
struct TapVidTracks {
  torch::Tensor tracks;      // float32 [N, T, 2]
  torch::Tensor visibility;  // bool [N, T]
};
TapVidTracks tapvid_to_pixels(const TapVidVideo& video, int64_t height, int64_t width);

// A dataset id for video `index` of file stem `stem`: "<stem>-<name>" for named videos
// ('/' replaced by '_'), "<stem>-<index, 4 digits>" otherwise.
std::string tapvid_video_id(const std::string& stem, const TapVidVideo& video, int64_t index);

}  // namespace t4g::data
