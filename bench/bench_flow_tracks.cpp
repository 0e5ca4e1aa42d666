// Accuracy and speed of flow-chained tracks against exact synthetic tracks at CogVideoX's size
// (49 frames at 480x720): TAP-Vid <delta_avg, occlusion accuracy and average Jaccard under the
// 'first' protocol, and frames per second on one core (OpenCV and torch single-threaded; CPU
// time of the process, so neighbours on a shared machine do not count).
// Prints one JSON line per configuration and video set.
// Usage: bench_flow_tracks [key=value ...]; keys: videos, frames, height, width, seed, speed
// (sprite pixels/frame), bg_speed, method (dis|farneback|tvl1), preset (ultrafast|fast|medium),
// finest_scale, refine, alpha, beta, subpixel (0|1), grid_step, reseed_every.
#include <torch/torch.h>

#include <cstdio>
#include <map>
#include <string>

#include "data/optical_flow.h"
#include "data/prepare.h"
#include "eval/flow_track_accuracy.h"

int main(int argc, char** argv) {
  std::map<std::string, std::string> args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const size_t eq = a.find('=');
    if (eq == std::string::npos) {
      std::fprintf(stderr, "bench_flow_tracks: arguments are key=value, got '%s'\n", a.c_str());
      return 2;
    }
    args[a.substr(0, eq)] = a.substr(eq + 1);
  }
  auto get = [&](const std::string& key, const std::string& fallback) {
    const auto it = args.find(key);
    return it == args.end() ? fallback : it->second;
  };
  try {
    torch::set_num_threads(1);
    t4g::data::set_opencv_threads(1);
    const int64_t videos = std::stoll(get("videos", "3"));
    const uint64_t seed = std::stoull(get("seed", "1"));
    t4g::data::SyntheticVideoOptions so;
    so.frames = std::stoll(get("frames", "49"));
    so.height = std::stoll(get("height", "480"));
    so.width = std::stoll(get("width", "720"));
    so.grid_step = std::stoll(get("gt_grid_step", "24"));
    so.max_speed = std::stod(get("speed", "4"));
    so.background_speed = std::stod(get("bg_speed", "2"));
    t4g::data::FlowTrackOptions fo;
    fo.flow.method = t4g::data::parse_flow_method(get("method", "dis"));
    fo.flow.dis_preset = t4g::data::parse_dis_preset(get("preset", t4g::data::dis_preset_name(fo.flow.dis_preset)));
    fo.flow.dis_finest_scale = std::stoi(get("finest_scale", "-1"));
    fo.flow.dis_refinement_iterations = std::stoi(get("refine", "-1"));
    fo.fb_alpha = std::stod(get("alpha", std::to_string(fo.fb_alpha)));
    fo.fb_beta = std::stod(get("beta", std::to_string(fo.fb_beta)));
    fo.subpixel = get("subpixel", "1") != "0";
    fo.grid_step = std::stoll(get("grid_step", std::to_string(fo.grid_step)));
    fo.reseed_every = std::stoll(get("reseed_every", std::to_string(fo.reseed_every)));

    std::map<std::string, double> sum;
    double flow_s = 0, chain_s = 0, grid_s = 0, wall_s = 0;
    int64_t frames = 0, queries = 0, grid_tracks = 0;
    for (int64_t i = 0; i < videos; ++i) {
      const auto video = t4g::data::generate_synthetic_video(so, t4g::data::synthetic_video_seed(seed, i));
      const t4g::FlowTrackAccuracy acc = t4g::measure_flow_tracks(video, fo);
      for (const auto& [k, v] : acc.metrics) sum[k] += v / static_cast<double>(videos);
      flow_s += acc.flow_seconds;
      chain_s += acc.chain_seconds;
      grid_s += acc.grid_seconds;
      wall_s += acc.flow_wall_seconds;
      frames += acc.frames;
      queries += acc.queries;
      grid_tracks += acc.grid_tracks;
    }
    std::printf(
        "{\"bench\": \"flow_tracks\", \"method\": \"%s\", \"preset\": \"%s\", \"alpha\": %g, \"beta\": %g, "
        "\"subpixel\": %d, \"videos\": %lld, \"size\": \"%lldx%lldx%lld\", \"speed\": %g, \"bg_speed\": %g, "
        "\"queries\": %lld, \"delta_avg\": %.4f, \"occlusion_accuracy\": %.4f, \"average_jaccard\": %.4f, "
        "\"pts_within_1\": %.4f, \"pts_within_4\": %.4f, \"grid_tracks_per_video\": %.0f, "
        "\"flow_fps_per_core\": %.2f, \"pipeline_fps_per_core\": %.2f, \"flow_fps_wall\": %.2f}\n",
        t4g::data::flow_method_name(fo.flow.method).c_str(), t4g::data::dis_preset_name(fo.flow.dis_preset).c_str(),
        fo.fb_alpha, fo.fb_beta, fo.subpixel ? 1 : 0, static_cast<long long>(videos), static_cast<long long>(so.frames),
        static_cast<long long>(so.height), static_cast<long long>(so.width), so.max_speed, so.background_speed,
        static_cast<long long>(queries), sum["average_pts_within_thresh"], sum["occlusion_accuracy"],
        sum["average_jaccard"], sum["pts_within_1"], sum["pts_within_4"],
        static_cast<double>(grid_tracks) / static_cast<double>(videos), static_cast<double>(frames) / flow_s,
        static_cast<double>(frames) / (flow_s + grid_s), static_cast<double>(frames) / wall_s);
    std::fflush(stdout);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_flow_tracks: %s\n", e.what());
    return 1;
  }
  return 0;
}
