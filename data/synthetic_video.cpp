// Synthetic videos with exact tracks (see synthetic_video.h). Everything that decides a pixel
// value goes through plain IEEE double arithmetic (no libm transcendental, no std::*_distribution)
// so the same seed gives the same bytes on every machine.
#include "data/synthetic_video.h"

#include <cmath>

#include "common/error.h"

namespace t4g::data {
namespace {

constexpr double kPi = 3.14159265358979323846;

// sin and cos from Taylor series after reduction to [-pi/4, pi/4]: libm results may differ in
// the last bit between platforms, these do not (only +, -, *, / and floor).
void det_sincos(double x, double* s, double* c) {
  const double quadrant = std::floor(x / (kPi / 2) + 0.5);
  const double r = x - quadrant * (kPi / 2);
  const double r2 = r * r;
  double sin_r = 0, cos_r = 0, term_s = r, term_c = 1;
  for (int k = 0; k < 12; ++k) {  // |r| <= pi/4: terms beyond r^24/24! are below 1e-26
    sin_r += term_s;
    cos_r += term_c;
    term_s *= -r2 / ((2 * k + 2) * (2 * k + 3));
    term_c *= -r2 / ((2 * k + 1) * (2 * k + 2));
  }
  int q = static_cast<int>(std::fmod(quadrant, 4.0));
  if (q < 0) q += 4;
  switch (q) {
    case 0: *s = sin_r; *c = cos_r; break;
    case 1: *s = cos_r; *c = -sin_r; break;
    case 2: *s = -sin_r; *c = -cos_r; break;
    default: *s = -cos_r; *c = sin_r; break;
  }
}

// Inverse affine map q = M (p - centre) of a motion at time t.
struct InverseMap {
  double m00, m01, m10, m11, cx, cy;
  std::array<double, 2> apply(double px, double py) const {
    const double dx = px - cx, dy = py - cy;
    return {m00 * dx + m01 * dy, m10 * dx + m11 * dy};
  }
};

InverseMap inverse_map(const AffineMotion& m, double t) {
  double s, c;
  det_sincos(m.angle + m.omega * t, &s, &c);
  const double scale = m.scale * (1.0 + m.scale_rate * t);
  // forward: p = centre + scale * [c -s; s c] q  =>  q = [c s; -s c] (p - centre) / scale
  return {c / scale, s / scale, -s / scale, c / scale, m.cx + m.vx * t, m.cy + m.vy * t};
}

struct NamedColour {
  const char* name;
  float r, g, b;
};

constexpr NamedColour kPalette[] = {
    {"red", 210, 40, 40},     {"orange", 235, 140, 30}, {"yellow", 230, 210, 50}, {"green", 50, 170, 60},
    {"teal", 30, 160, 160},   {"blue", 40, 80, 210},    {"purple", 140, 60, 190}, {"pink", 235, 120, 180},
    {"brown", 130, 85, 45},   {"white", 235, 235, 235}, {"gray", 128, 128, 128},
};
constexpr int kPaletteSize = static_cast<int>(sizeof(kPalette) / sizeof(kPalette[0]));

// Blocky noise around a base colour plus a coarse brightness pattern: rich enough for
// tracking and optical flow, smooth enough (bilinear) to be sampled at sub-pixel positions.
Texture make_texture(SplitMix64& rng, const NamedColour& base, int64_t height, int64_t width, double texel_size,
                     bool wrap) {
  Texture tex;
  tex.height = height;
  tex.width = width;
  tex.texel_size = texel_size;
  tex.wrap = wrap;
  tex.rgb.resize(static_cast<size_t>(height * width * 3));
  const double period = 4.0 + 4.0 * rng.uniform();
  const double phase = rng.uniform(0, 2 * kPi);
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      double s, c;
      det_sincos((x + 0.7 * y) * 2 * kPi / period + phase, &s, &c);
      const double shade = 0.75 + 0.25 * s;  // stripes
      const float rgb[3] = {base.r, base.g, base.b};
      for (int ch = 0; ch < 3; ++ch) {
        double v = rgb[ch] * shade + rng.uniform(-45, 45);
        v = std::min(255.0, std::max(0.0, v));
        tex.rgb[static_cast<size_t>((y * width + x) * 3 + ch)] = static_cast<float>(v);
      }
    }
  }
  return tex;
}

// A direction word for a velocity ("left", "up and to the right", "" when nearly still).
std::string direction_words(double vx, double vy, double threshold) {
  const std::string h = vx > threshold ? "right" : (vx < -threshold ? "left" : "");
  const std::string v = vy > threshold ? "down" : (vy < -threshold ? "up" : "");
  if (!h.empty() && !v.empty()) return v + " and to the " + h;
  return h.empty() ? v : h;
}

std::string describe_sprite(const SceneLayer& layer, const SyntheticVideoOptions& o) {
  const AffineMotion& m = layer.motion;
  const std::string shape = layer.shape == SpriteShape::kEllipse
                                ? (std::abs(layer.half_width - layer.half_height) < 0.1 * layer.half_width ? "disc" : "ellipse")
                                : "rectangle";
  std::string text = "a textured " + layer.colour + " " + shape;
  const std::string dir = direction_words(m.vx, m.vy, 0.25 * o.max_speed);
  const double speed = std::sqrt(m.vx * m.vx + m.vy * m.vy);
  std::vector<std::string> parts;
  if (dir.empty()) {
    parts.push_back("stays nearly in place");
  } else {
    parts.push_back(std::string("moves ") + (speed > 1.2 * o.max_speed ? "quickly " : "") + dir);
  }
  if (std::abs(m.omega) > 0.3 * o.max_rotation && o.max_rotation > 0) {
    parts.push_back(m.omega > 0 ? "rotates clockwise" : "rotates counter-clockwise");
  }
  if (std::abs(m.scale_rate) > 0.3 * o.max_scale_rate && o.max_scale_rate > 0) {
    parts.push_back(m.scale_rate > 0 ? "grows" : "shrinks");
  }
  for (size_t i = 0; i < parts.size(); ++i) {
    text += (i == 0 ? " " : (i + 1 == parts.size() ? " and " : ", ")) + parts[i];
  }
  return text;
}

std::string describe_scene(const SyntheticScene& scene, const SyntheticVideoOptions& o) {
  std::string text;
  const int64_t sprites = static_cast<int64_t>(scene.layers.size()) - 1;
  // Front-most first: that is what a viewer notices first.
  for (int64_t i = sprites; i >= 1; --i) {
    std::string part = describe_sprite(scene.layers[static_cast<size_t>(i)], o);
    if (i == sprites) part[0] = static_cast<char>(std::toupper(part[0]));
    text += part + (i > 1 ? (i == 2 ? ", and " : ", ") : "");
  }
  const SceneLayer& bg = scene.layers[0];
  const std::string dir = direction_words(bg.motion.vx, bg.motion.vy, 0.25 * o.background_speed);
  std::string bg_text = "a " + bg.colour + " patterned background" + (dir.empty() ? " that barely moves" : " drifting " + dir);
  if (sprites == 0) {
    bg_text[0] = static_cast<char>(std::toupper(bg_text[0]));
    return bg_text + ".";
  }
  return text + (sprites > 1 ? ", in front of " : " in front of ") + bg_text + ".";
}

void validate(const SyntheticVideoOptions& o) {
  T4G_CHECK(o.frames > 0 && o.height > 0 && o.width > 0, "synthetic video: frames, height and width must be positive (got ",
            o.frames, "x", o.height, "x", o.width, ")");
  T4G_CHECK(o.sprites >= 0 && o.sprites < kPaletteSize, "synthetic video: sprites must be in [0, ", kPaletteSize - 1,
            "], got ", o.sprites);
  T4G_CHECK(o.grid_step > 0, "synthetic video: grid_step must be positive, got ", o.grid_step);
  T4G_CHECK(o.min_sprite_size > 0 && o.min_sprite_size <= o.max_sprite_size,
            "synthetic video: need 0 < min_sprite_size <= max_sprite_size");
  T4G_CHECK(o.max_scale_rate * static_cast<double>(o.frames) < 0.5,
            "synthetic video: max_scale_rate * frames must stay below 0.5 so sprites never vanish");
}

}  // namespace

// ---- SplitMix64 -------------------------------------------------------------------------

uint64_t SplitMix64::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double SplitMix64::uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }

uint64_t SplitMix64::below(uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do {
    x = next();
  } while (x >= limit);
  return x % n;
}

// ---- Geometry and sampling --------------------------------------------------------------

std::array<double, 2> AffineMotion::forward(double qx, double qy, double t) const {
  double s, c;
  det_sincos(angle + omega * t, &s, &c);
  const double sc = scale * (1.0 + scale_rate * t);
  return {cx + vx * t + sc * (c * qx - s * qy), cy + vy * t + sc * (s * qx + c * qy)};
}

std::array<double, 2> AffineMotion::inverse(double px, double py, double t) const {
  return inverse_map(*this, t).apply(px, py);
}

std::array<float, 3> Texture::sample(double qx, double qy) const {
  const double u = qx / texel_size + 0.5 * static_cast<double>(width) - 0.5;
  const double v = qy / texel_size + 0.5 * static_cast<double>(height) - 0.5;
  const double fu = std::floor(u), fv = std::floor(v);
  const double au = u - fu, av = v - fv;
  auto index = [&](int64_t i, int64_t n) {
    if (wrap) {
      i %= n;
      return i < 0 ? i + n : i;
    }
    return std::min(std::max<int64_t>(i, 0), n - 1);
  };
  const int64_t x0 = index(static_cast<int64_t>(fu), width), x1 = index(static_cast<int64_t>(fu) + 1, width);
  const int64_t y0 = index(static_cast<int64_t>(fv), height), y1 = index(static_cast<int64_t>(fv) + 1, height);
  std::array<float, 3> out{};
  for (int ch = 0; ch < 3; ++ch) {
    auto at = [&](int64_t y, int64_t x) { return static_cast<double>(rgb[static_cast<size_t>((y * width + x) * 3 + ch)]); };
    const double top = at(y0, x0) * (1 - au) + at(y0, x1) * au;
    const double bottom = at(y1, x0) * (1 - au) + at(y1, x1) * au;
    out[static_cast<size_t>(ch)] = static_cast<float>(top * (1 - av) + bottom * av);
  }
  return out;
}

bool SceneLayer::contains(double qx, double qy) const {
  if (is_background) return true;
  if (shape == SpriteShape::kRectangle) return std::abs(qx) <= half_width && std::abs(qy) <= half_height;
  const double nx = qx / half_width, ny = qy / half_height;
  return nx * nx + ny * ny <= 1.0;
}

std::array<float, 3> sample_scene(const SyntheticScene& scene, double t, double x, double y) {
  for (size_t i = scene.layers.size(); i-- > 0;) {
    const SceneLayer& layer = scene.layers[i];
    const auto q = layer.motion.inverse(x, y, t);
    if (layer.contains(q[0], q[1])) return layer.texture.sample(q[0], q[1]);
  }
  return {0, 0, 0};
}

// ---- Scenes -----------------------------------------------------------------------------

SyntheticScene make_synthetic_scene(const SyntheticVideoOptions& o, uint64_t seed) {
  validate(o);
  SplitMix64 rng(seed);
  const double w = static_cast<double>(o.width), h = static_cast<double>(o.height);
  // Colours drawn without replacement: background first, then the sprites.
  std::vector<int> colours;
  for (int i = 0; i < kPaletteSize; ++i) colours.push_back(i);
  auto take_colour = [&]() {
    const size_t k = static_cast<size_t>(rng.below(colours.size()));
    const int c = colours[k];
    colours.erase(colours.begin() + static_cast<std::ptrdiff_t>(k));
    return kPalette[c];
  };

  SyntheticScene scene;
  {
    SceneLayer bg;
    bg.is_background = true;
    const NamedColour colour = take_colour();
    bg.colour = colour.name;
    const double texel = rng.uniform(3.0, 6.0);
    // Larger than the frame's diagonal so the wrap-around period is not visible.
    const int64_t texels = static_cast<int64_t>(std::ceil(1.5 * std::max(w, h) / texel)) + 2;
    bg.texture = make_texture(rng, colour, texels, texels, texel, /*wrap=*/true);
    bg.motion.cx = w / 2;
    bg.motion.cy = h / 2;
    bg.motion.vx = rng.uniform(-o.background_speed, o.background_speed);
    bg.motion.vy = rng.uniform(-o.background_speed, o.background_speed);
    bg.motion.angle = 0;
    bg.motion.omega = rng.uniform(-o.background_rotation, o.background_rotation);
    scene.layers.push_back(std::move(bg));
  }
  const double base = std::min(w, h);
  for (int64_t s = 0; s < o.sprites; ++s) {
    SceneLayer sp;
    const NamedColour colour = take_colour();
    sp.colour = colour.name;
    sp.shape = rng.uniform() < 0.5 ? SpriteShape::kEllipse : SpriteShape::kRectangle;
    const double size = rng.uniform(o.min_sprite_size, o.max_sprite_size) * base;
    sp.half_width = 0.5 * size * rng.uniform(0.75, 1.25);
    sp.half_height = 0.5 * size * rng.uniform(0.75, 1.25);
    const double texel = rng.uniform(2.0, 4.0);
    const int64_t tw = static_cast<int64_t>(std::ceil(2 * sp.half_width / texel)) + 2;
    const int64_t th = static_cast<int64_t>(std::ceil(2 * sp.half_height / texel)) + 2;
    sp.texture = make_texture(rng, colour, th, tw, texel, /*wrap=*/false);
    AffineMotion& m = sp.motion;
    // Centres may start outside the frame (the sprite enters); velocities then point inward.
    m.cx = rng.uniform(-0.1 * w, 1.1 * w);
    m.cy = rng.uniform(-0.1 * h, 1.1 * h);
    m.vx = rng.uniform(-o.max_speed, o.max_speed);
    m.vy = rng.uniform(-o.max_speed, o.max_speed);
    if ((m.cx < 0 && m.vx < 0) || (m.cx > w && m.vx > 0)) m.vx = -m.vx;
    if ((m.cy < 0 && m.vy < 0) || (m.cy > h && m.vy > 0)) m.vy = -m.vy;
    m.angle = rng.uniform(-kPi, kPi);
    m.omega = rng.uniform(-o.max_rotation, o.max_rotation);
    m.scale = 1.0;
    m.scale_rate = rng.uniform(-o.max_scale_rate, o.max_scale_rate);
    scene.layers.push_back(std::move(sp));
  }
  scene.prompt = describe_scene(scene, o);
  return scene;
}

SyntheticVideo render_synthetic_video(const SyntheticScene& scene, const SyntheticVideoOptions& o) {
  validate(o);
  T4G_CHECK(!scene.layers.empty() && scene.layers[0].is_background, "synthetic scene: layer 0 must be the background");
  const int64_t F = o.frames, H = o.height, W = o.width;
  const size_t L = scene.layers.size();
  SyntheticVideo video;
  video.prompt = scene.prompt;

  // Frames: each pixel centre (j + 0.5, i + 0.5) mapped back through the front-most covering layer.
  video.frames = torch::empty({F, H, W, 3}, torch::kUInt8);
  uint8_t* out = video.frames.data_ptr<uint8_t>();
  // Single-threaded on purpose: `t4g prepare` runs one video per worker thread.
  {
    for (int64_t t = 0; t < F; ++t) {
      std::vector<InverseMap> maps;
      for (const auto& layer : scene.layers) maps.push_back(inverse_map(layer.motion, static_cast<double>(t)));
      for (int64_t i = 0; i < H; ++i) {
        for (int64_t j = 0; j < W; ++j) {
          const double px = static_cast<double>(j) + 0.5, py = static_cast<double>(i) + 0.5;
          std::array<float, 3> rgb{};
          for (size_t k = L; k-- > 0;) {
            const auto q = maps[k].apply(px, py);
            if (scene.layers[k].contains(q[0], q[1])) {
              rgb = scene.layers[k].texture.sample(q[0], q[1]);
              break;
            }
          }
          uint8_t* p = out + ((t * H + i) * W + j) * 3;
          for (int ch = 0; ch < 3; ++ch) {
            p[ch] = static_cast<uint8_t>(std::min(255.0, std::max(0.0, std::floor(static_cast<double>(rgb[ch]) + 0.5))));
          }
        }
      }
    }
  }

  // Query points: a frame-0 grid on the background, and a grid over each sprite's surface.
  struct Point {
    int32_t layer;
    double qx, qy;
  };
  std::vector<Point> points;
  const double step = static_cast<double>(o.grid_step);
  for (double y = 0.5 * step; y < static_cast<double>(H); y += step) {
    for (double x = 0.5 * step; x < static_cast<double>(W); x += step) {
      const auto q = scene.layers[0].motion.inverse(x, y, 0.0);
      points.push_back({0, q[0], q[1]});
    }
  }
  for (size_t k = 1; k < L; ++k) {
    const SceneLayer& layer = scene.layers[k];
    const double src_step = step / layer.motion.scale;
    for (double qy = -layer.half_height + 0.5 * src_step; qy < layer.half_height; qy += src_step) {
      for (double qx = -layer.half_width + 0.5 * src_step; qx < layer.half_width; qx += src_step) {
        if (layer.contains(qx, qy)) points.push_back({static_cast<int32_t>(k), qx, qy});
      }
    }
  }

  // Tracks: forward-map each point; visible when inside the frame and no layer in front covers it.
  std::vector<float> tracks;
  std::vector<uint8_t> visible;
  std::vector<int32_t> layers;
  std::vector<double> sources;
  std::vector<std::vector<InverseMap>> maps(static_cast<size_t>(F));
  for (int64_t t = 0; t < F; ++t) {
    for (const auto& layer : scene.layers) maps[static_cast<size_t>(t)].push_back(inverse_map(layer.motion, static_cast<double>(t)));
  }
  std::vector<float> track(static_cast<size_t>(F * 2));
  std::vector<uint8_t> vis(static_cast<size_t>(F));
  for (const Point& pt : points) {
    bool ever = false;
    for (int64_t t = 0; t < F; ++t) {
      const auto p = scene.layers[static_cast<size_t>(pt.layer)].motion.forward(pt.qx, pt.qy, static_cast<double>(t));
      bool v = p[0] >= 0 && p[0] < static_cast<double>(W) && p[1] >= 0 && p[1] < static_cast<double>(H);
      for (size_t k = static_cast<size_t>(pt.layer) + 1; v && k < L; ++k) {
        const auto q = maps[static_cast<size_t>(t)][k].apply(p[0], p[1]);
        if (scene.layers[k].contains(q[0], q[1])) v = false;
      }
      track[static_cast<size_t>(2 * t)] = static_cast<float>(p[0]);
      track[static_cast<size_t>(2 * t + 1)] = static_cast<float>(p[1]);
      vis[static_cast<size_t>(t)] = v ? 1 : 0;
      ever = ever || v;
    }
    if (!ever) continue;
    tracks.insert(tracks.end(), track.begin(), track.end());
    visible.insert(visible.end(), vis.begin(), vis.end());
    layers.push_back(pt.layer);
    sources.push_back(pt.qx);
    sources.push_back(pt.qy);
  }
  const int64_t N = static_cast<int64_t>(layers.size());
  if (N == 0) {  // from_blob needs a real pointer
    tracks.resize(1);
    visible.resize(1);
    layers.resize(1);
    sources.resize(1);
  }
  video.tracks = torch::from_blob(tracks.data(), {N, F, 2}, torch::kFloat32).clone();
  video.visibility = torch::from_blob(visible.data(), {N, F}, torch::kUInt8).to(torch::kBool);
  video.track_layer = torch::from_blob(layers.data(), {N}, torch::kInt32).clone();
  video.source_points = torch::from_blob(sources.data(), {N, 2}, torch::kFloat64).clone();
  return video;
}

SyntheticVideo generate_synthetic_video(const SyntheticVideoOptions& options, uint64_t seed) {
  return render_synthetic_video(make_synthetic_scene(options, seed), options);
}

}  // namespace t4g::data
