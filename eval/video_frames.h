// Decoded videos as t4g passes them around in memory and on disk: uint8 RGB frames [T, H, W, 3]
// (ARCHITECTURE.md, "Frames on disk"). One check so that every metric that takes frames reports a
// bad tensor with the same one-line error, and the reader of the HDF5 files `t4g sample` writes.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace t4g {

// Throws t4g::Error naming `what` (a tensor or file name) unless `frames` is a defined uint8
// tensor [T, H, W, 3] with T >= min_frames and H, W >= 1.
void check_video_frames(const torch::Tensor& frames, const std::string& what, int64_t min_frames = 1);

// The frames of an HDF5 video as `t4g sample` writes it (dataset `frames`, uint8 [F, H, W, 3]).
// Errors name the file (and the dataset when it is missing or of the wrong type or shape).
torch::Tensor read_frames_h5(const std::string& path);

// Any video t4g reads, at its own size and length: an HDF5 file as above (.h5 / .hdf5), a video
// file (.mp4, .webm, ... through OpenCV) or a folder of frame images. Without OpenCV a video file
// is one error saying so (and that HDF5 works everywhere).
torch::Tensor read_any_video(const std::string& path);

}  // namespace t4g
