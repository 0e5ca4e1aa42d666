// Synthetic videos with exact point tracks: textured sprites moving with known affine motion
// (translation, rotation, scale) in depth order over a textured, moving background. Each pixel is
// rendered by mapping its centre back through the motion of the front-most layer that covers it
// and sampling that layer's texture bilinearly, so a tracked point's colour is known exactly.
// It is the bundled dataset of the demo and the tests, and the yardstick for flow-chained tracks.
// Deterministic on every machine: own PRNG (splitmix64), own float conversion, own sin/cos.
#pragma once

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace t4g::data {

struct SyntheticVideoOptions {
  int64_t frames = 16;              // frames per video
  int64_t height = 64;              // frame height in pixels
  int64_t width = 96;               // frame width in pixels
  int64_t sprites = 3;              // moving sprites in front of the background
  int64_t grid_step = 8;            // spacing in pixels of the tracked point grid (frame 0 and each sprite)
  double min_sprite_size = 0.2;     // sprite diameter as a fraction of min(height, width), lower bound
  double max_sprite_size = 0.45;    // ... upper bound
  double max_speed = 2.0;           // sprite translation speed per axis, pixels per frame
  double max_rotation = 0.05;       // sprite rotation, radians per frame
  double max_scale_rate = 0.01;     // sprite scale change per frame, relative to the first frame
  double background_speed = 1.0;    // background translation speed per axis, pixels per frame
  double background_rotation = 0.005;  // background rotation, radians per frame
};

// Affine motion of a layer: frame point p = centre(t) + scale(t) * R(angle(t)) * q for a source
// point q (source units are pixels at scale 1), with centre, angle and scale linear in t.
struct AffineMotion {
  double cx = 0, cy = 0;        // centre at frame 0, pixels
  double vx = 0, vy = 0;        // centre velocity, pixels per frame
  double angle = 0;             // rotation at frame 0, radians (counter-clockwise on screen is negative: y points down)
  double omega = 0;             // rotation per frame, radians
  double scale = 1;             // scale at frame 0
  double scale_rate = 0;        // scale(t) = scale * (1 + scale_rate * t)

  // Frame position at time t of source point (qx, qy).
  std::array<double, 2> forward(double qx, double qy, double t) const;
  // Source point that lands on frame position (px, py) at time t.
  std::array<double, 2> inverse(double px, double py, double t) const;
};

enum class SpriteShape { kEllipse, kRectangle };

// A texture of texels [height, width, 3] in 0..255, sampled bilinearly; texel centres at
// integer + 0.5 in texel units. Background textures wrap around; sprite textures clamp.
struct Texture {
  int64_t height = 0;
  int64_t width = 0;
  double texel_size = 1.0;  // source units per texel
  bool wrap = false;
  std::vector<float> rgb;   // row-major [height][width][3]

  // Bilinear colour at source point (qx, qy); source (0, 0) is the texture's centre.
  std::array<float, 3> sample(double qx, double qy) const;
};

// One depth layer: the background (index 0, covers everything) or a sprite.
struct SceneLayer {
  Texture texture;
  AffineMotion motion;
  bool is_background = false;
  SpriteShape shape = SpriteShape::kEllipse;
  double half_width = 0, half_height = 0;  // sprite extent in source units (ignored for the background)
  std::string colour;                      // colour name used in the prompt

  // True when source point (qx, qy) lies on this layer (always for the background).
  bool contains(double qx, double qy) const;
};

// Layers back to front: index 0 is the background, higher indices are in front.
struct SyntheticScene {
  std::vector<SceneLayer> layers;
  std::string prompt;
};

struct SyntheticVideo {
  torch::Tensor frames;         // uint8 [F, H, W, 3] RGB
  torch::Tensor tracks;         // float32 [N, F, 2] (x, y) pixels, TAP-Vid raster convention
  torch::Tensor visibility;     // bool [N, F], true = visible (in the frame and not covered)
  torch::Tensor track_layer;    // int32 [N]: layer each point lies on (0 = background)
  torch::Tensor source_points;  // float64 [N, 2]: each point's source coordinates on its layer
  std::string prompt;           // describes the sprites and their motion
};

// A random scene for `seed` (same seed, same scene, on any machine).
SyntheticScene make_synthetic_scene(const SyntheticVideoOptions& options, uint64_t seed);

// Colour at frame position (x, y) at time t: the front-most layer covering it, sampled there.
std::array<float, 3> sample_scene(const SyntheticScene& scene, double t, double x, double y);

// Renders a scene and its tracks: a grid of points (step options.grid_step) on whatever layer is
// on top at frame 0, plus a grid over each sprite's own surface; tracks never visible are dropped.
SyntheticVideo render_synthetic_video(const SyntheticScene& scene, const SyntheticVideoOptions& options);

// make_synthetic_scene + render_synthetic_video.
SyntheticVideo generate_synthetic_video(const SyntheticVideoOptions& options, uint64_t seed);

// The deterministic PRNG used above (splitmix64), exposed for other seeded generators in data/.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  // Uniform in [0, 1) from the top 53 bits (exact, no platform distribution involved).
  double uniform();
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n) (n > 0), by rejection (no modulo bias).
  uint64_t below(uint64_t n);

 private:
  uint64_t state_;
};

}  // namespace t4g::data
