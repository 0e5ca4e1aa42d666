// HDF5 shards (schema in shards.h): writing, validation, the index and random-access reads.
// Every error names the file and the HDF5 path (or the index key) so a broken dataset can be
// found and fixed without a debugger.
#include "data/shards.h"

#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/error.h"
#include "common/shape_string.h"
#include "common/fs.h"
#include "common/hdf5.h"
#include "t4g/build_config.h"

namespace t4g::data {
namespace {


ErrorContext ctx_of(const std::string& file, const std::string& key, const std::string& tensor = "") {
  ErrorContext ctx;
  ctx.file = file;
  ctx.key = key;
  ctx.tensor = tensor;
  return ctx;
}

// Checks tensors of one video; `file` and `key` say where it came from (for the error).
void check_video_tensors(const ShardVideo& v, const std::string& file, const std::string& key) {
  auto fail = [&](const std::string& tensor, const std::string& expected, const std::string& got,
                  const std::string& message) {
    ErrorContext ctx = ctx_of(file, key, tensor);
    ctx.expected = expected;
    ctx.got = got;
    throw Error(message, ctx);
  };
  auto dtype_name = [](const torch::Tensor& t) { return std::string(c10::toString(t.scalar_type())); };
  if (!v.frames.defined()) fail("frames", "uint8 [F,H,W,3]", "nothing", "missing frames");
  if (v.frames.scalar_type() != torch::kUInt8) fail("frames", "uint8", dtype_name(v.frames), "wrong dtype");
  if (v.frames.dim() != 4 || v.frames.size(3) != 3 || v.frames.size(0) == 0) {
    fail("frames", "[F>0,H,W,3]", shape_string(v.frames.sizes()), "wrong shape");
  }
  const int64_t F = v.frames.size(0);
  if (!v.tracks.defined()) fail("tracks", "float32 [N,F,2]", "nothing", "missing tracks");
  if (v.tracks.scalar_type() != torch::kFloat32) fail("tracks", "float32", dtype_name(v.tracks), "wrong dtype");
  if (v.tracks.dim() != 3 || v.tracks.size(1) != F || v.tracks.size(2) != 2) {
    fail("tracks", str("[N,", F, ",2]"), shape_string(v.tracks.sizes()), "wrong shape");
  }
  if (!v.visibility.defined()) fail("visibility", "bool [N,F]", "nothing", "missing visibility");
  if (v.visibility.scalar_type() != torch::kBool) fail("visibility", "bool", dtype_name(v.visibility), "wrong dtype");
  if (v.visibility.dim() != 2 || v.visibility.size(0) != v.tracks.size(0) || v.visibility.size(1) != F) {
    fail("visibility", str("[", v.tracks.size(0), ",", F, "]"), shape_string(v.visibility.sizes()), "wrong shape");
  }
  if (v.tracks.numel() > 0 && !torch::isfinite(v.tracks).all().item<bool>()) {
    const int64_t bad = (~torch::isfinite(v.tracks)).sum().item<int64_t>();
    fail("tracks", "finite values", str(bad, " NaN or infinite values"), "non-finite track coordinates");
  }
  // A point marked visible must lie in the frame (raster convention: 0 <= x <= W, 0 <= y <= H);
  // occluded points may be anywhere, since tracks go on after leaving the frame.
  if (v.tracks.numel() > 0) {
    const double w = static_cast<double>(v.frames.size(2)), h = static_cast<double>(v.frames.size(1));
    const torch::Tensor x = v.tracks.select(2, 0), y = v.tracks.select(2, 1);
    const torch::Tensor outside = v.visibility & ((x < 0) | (x > w) | (y < 0) | (y > h));
    const int64_t bad = outside.sum().item<int64_t>();
    if (bad > 0) {
      fail("tracks", str("visible points inside the ", v.frames.size(2), "x", v.frames.size(1), " frame"),
           str(bad, " visible points outside it"), "visible track points outside the frame");
    }
  }
  for (const auto* opt : {&v.latents, &v.text_embedding}) {
    if (opt->defined() && !opt->is_floating_point()) {
      fail(opt == &v.latents ? "latents" : "text_embedding", "a float dtype", dtype_name(*opt), "wrong dtype");
    }
  }
}

void check_id(const std::string& id, const std::string& file, const std::string& key) {
  T4G_CHECK_CTX(!id.empty() && id.find('/') == std::string::npos && id != "." && id != "..", ctx_of(file, key),
                "invalid video id '", id, "' (empty, '.', '..' or contains '/')");
}

void check_format(const h5::Group& root, const std::string& path) {
  T4G_CHECK_CTX(root.has_attr("format") && root.attr_string("format") == kShardFormat, ctx_of(path, "/@format"),
                "not a t4g shard (missing or wrong 'format' attribute; expected '", kShardFormat, "')");
  const int64_t version = root.attr_int("schema_version");
  ErrorContext ctx = ctx_of(path, "/@schema_version");
  ctx.expected = str("<= ", kShardSchemaVersion);
  ctx.got = str(version);
  T4G_CHECK_CTX(version >= 1, ctx, "invalid shard schema version");
  T4G_CHECK_CTX(version <= kShardSchemaVersion, ctx, "shard written by a newer t4g (schema version ", version,
                "); this build reads up to version ", kShardSchemaVersion);
}

nlohmann::json entry_to_json(const ShardIndexEntry& e) {
  return {{"id", e.id},         {"shard", e.shard},   {"frames", e.frames},
          {"height", e.height}, {"width", e.width},   {"tracks", e.tracks},
          {"visible_fraction", e.visible_fraction},   {"fps", e.fps},
          {"stride", e.stride}, {"prompt", e.prompt}, {"source", e.source},
          {"has_latents", e.has_latents},             {"has_text_embedding", e.has_text_embedding}};
}

ShardIndexEntry entry_from_json(const nlohmann::json& j, const std::string& file, size_t i) {
  const std::string key = str("videos[", i, "]");
  try {
    ShardIndexEntry e;
    e.id = j.at("id").get<std::string>();
    e.shard = j.at("shard").get<std::string>();
    e.frames = j.at("frames").get<int64_t>();
    e.height = j.at("height").get<int64_t>();
    e.width = j.at("width").get<int64_t>();
    e.tracks = j.at("tracks").get<int64_t>();
    e.visible_fraction = j.at("visible_fraction").get<double>();
    e.fps = j.at("fps").get<double>();
    e.stride = j.at("stride").get<int64_t>();
    e.prompt = j.at("prompt").get<std::string>();
    e.source = j.at("source").get<std::string>();
    e.has_latents = j.at("has_latents").get<bool>();
    e.has_text_embedding = j.at("has_text_embedding").get<bool>();
    check_id(e.id, file, key + ".id");
    T4G_CHECK_CTX(!e.shard.empty() && e.shard.find('/') == std::string::npos, ctx_of(file, key + ".shard"),
                  "shard must be a file name inside the dataset folder, got '", e.shard, "'");
    return e;
  } catch (const nlohmann::json::exception& ex) {
    throw Error(str("malformed index entry: ", ex.what()), ctx_of(file, key));
  }
}

}  // namespace

void validate_shard_video(const ShardVideo& video, const std::string& where) {
  check_id(video.id, where, video.id);
  check_video_tensors(video, where, video.id);
}

void write_shard(const std::string& path, const std::vector<ShardVideo>& videos, const ShardWriteOptions& options) {
  std::set<std::string> ids;
  for (const auto& v : videos) {
    validate_shard_video(v, path);
    T4G_CHECK_CTX(ids.insert(v.id).second, ctx_of(path, v.id), "duplicate video id in one shard");
  }
  h5::File file = h5::File::create(path);
  h5::Group root = file.root();
  root.set_attr("format", kShardFormat);
  root.set_attr("schema_version", kShardSchemaVersion);
  root.set_attr("writer", std::string("t4g ") + T4G_VERSION);
  root.set_attr("recipe", options.recipe);
  if (!options.precomputed.empty()) root.set_attr("precomputed", options.precomputed);
  h5::Group group = root.create_group("videos");
  for (const auto& v : videos) {
    h5::Group g = group.create_group(v.id);
    const int64_t F = v.frames.size(0), H = v.frames.size(1), W = v.frames.size(2);
    g.set_attr("fps", v.fps);
    g.set_attr("stride", v.stride);
    g.set_attr("frames", F);
    g.set_attr("height", H);
    g.set_attr("width", W);
    // One frame per chunk: a loader reading a frame range decompresses only those frames.
    g.write("frames", v.frames, {{1, H, W, 3}, options.gzip_level});
    h5::WriteOptions small;
    small.gzip_level = options.gzip_level;
    g.write("tracks", v.tracks, small);
    g.write("visibility", v.visibility, small);
    g.write_string("prompt", v.prompt);
    g.write_string("source", v.source);
    if (v.latents.defined()) g.write("latents", v.latents, small);
    if (v.text_embedding.defined()) g.write("text_embedding", v.text_embedding, small);
  }
  file.commit();
}

ShardHeader read_shard_header(const std::string& path) {
  h5::File file = h5::File::open(path);
  h5::Group root = file.root();
  check_format(root, path);
  ShardHeader header;
  header.file = path;
  header.schema_version = root.attr_int("schema_version");
  header.recipe = root.has_attr("recipe") ? root.attr_string("recipe") : "";
  header.precomputed = root.has_attr("precomputed") ? root.attr_string("precomputed") : "";
  T4G_CHECK_CTX(root.has_group("videos"), ctx_of(path, "/videos"), "missing group");
  h5::Group videos = root.group("videos");
  const std::string name = file_name(path);
  for (const auto& id : videos.children()) {
    h5::Group g = videos.group(id);
    ShardIndexEntry e;
    e.id = id;
    e.shard = name;
    for (const char* ds : {"frames", "tracks", "visibility", "prompt", "source"}) {
      T4G_CHECK_CTX(g.has_dataset(ds), ctx_of(path, g.path() + "/" + ds), "missing dataset");
    }
    const auto frames = g.dataset("frames").info().shape;
    T4G_CHECK_CTX(frames.size() == 4 && frames[3] == 3, ctx_of(path, g.path() + "/frames"), "expected [F,H,W,3]");
    e.frames = frames[0];
    e.height = frames[1];
    e.width = frames[2];
    const auto tracks = g.dataset("tracks").info().shape;
    T4G_CHECK_CTX(tracks.size() == 3, ctx_of(path, g.path() + "/tracks"), "expected [N,F,2]");
    e.tracks = tracks[0];
    const torch::Tensor vis = g.read("visibility");
    e.visible_fraction = vis.numel() > 0 ? vis.to(torch::kFloat64).mean().item<double>() : 0.0;
    e.fps = g.attr_double("fps");
    e.stride = g.attr_int("stride");
    e.prompt = g.read_string("prompt");
    e.source = g.read_string("source");
    e.has_latents = g.has_dataset("latents");
    e.has_text_embedding = g.has_dataset("text_embedding");
    header.videos.push_back(std::move(e));
  }
  return header;
}

std::vector<ShardIndexEntry> write_shard_index(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& name : list_dir(dir)) {  // sorted
    const bool h5 = name.size() > 3 && name.compare(name.size() - 3, 3, ".h5") == 0;
    if (h5 && is_regular_file(dir + "/" + name)) files.push_back(name);
  }
  nlohmann::json shards = nlohmann::json::array(), videos = nlohmann::json::array();
  std::vector<ShardIndexEntry> entries;
  std::map<std::string, std::string> seen;  // id -> shard
  for (const auto& name : files) {
    const std::string path = dir + "/" + name;
    const ShardHeader header = read_shard_header(path);
    for (const auto& e : header.videos) {
      const auto [it, inserted] = seen.emplace(e.id, name);
      T4G_CHECK_CTX(inserted, ctx_of(path, "/videos/" + e.id), "video id also in ", it->second,
                    "; ids must be unique in a dataset");
      videos.push_back(entry_to_json(e));
      entries.push_back(e);
    }
    shards.push_back({{"file", name}, {"videos", header.videos.size()}, {"bytes", static_cast<int64_t>(file_size(path))}});
  }
  const nlohmann::json index = {
      {"format", kShardFormat}, {"schema_version", kShardSchemaVersion}, {"shards", shards}, {"videos", videos}};
  write_file_atomically(dir + "/" + kShardIndexName, index.dump(1) + "\n");
  return entries;
}

ShardReader::ShardReader(const std::string& dir) : dir_(dir) {
  const std::string path = dir + "/" + kShardIndexName;
  T4G_CHECK_CTX(is_regular_file(path), ctx_of(path, ""), "no shard index here (run `t4g prepare --out ", dir, "`)");
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& ex) {
    throw Error(str("index is not valid JSON: ", ex.what()), ctx_of(path, ""));
  }
  T4G_CHECK_CTX(index.is_object() && index.value("format", "") == kShardFormat, ctx_of(path, "format"),
                "not a t4g shard index (expected format '", kShardFormat, "')");
  T4G_CHECK_CTX(index.contains("schema_version") && index["schema_version"].is_number_integer(), ctx_of(path, "schema_version"),
                "missing or non-integer schema_version");
  const int64_t version = index["schema_version"].get<int64_t>();
  T4G_CHECK_CTX(version <= kShardSchemaVersion, ctx_of(path, "schema_version"), "index written by a newer t4g (schema version ",
                version, "); this build reads up to version ", kShardSchemaVersion);
  T4G_CHECK_CTX(index.contains("videos") && index["videos"].is_array(), ctx_of(path, "videos"), "missing video list");
  const auto& videos = index["videos"];
  for (size_t i = 0; i < videos.size(); ++i) {
    ShardIndexEntry e = entry_from_json(videos[i], path, i);
    T4G_CHECK_CTX(by_id_.emplace(e.id, entries_.size()).second, ctx_of(path, str("videos[", i, "].id")), "duplicate id '",
                  e.id, "'");
    entries_.push_back(std::move(e));
  }
}

const ShardIndexEntry& ShardReader::entry(const std::string& id) const {
  const auto it = by_id_.find(id);
  T4G_CHECK_CTX(it != by_id_.end(), ctx_of(dir_ + "/" + kShardIndexName, id), "no video with this id in the dataset");
  return entries_[it->second];
}

ShardVideo ShardReader::read(const std::string& id) const {
  const ShardIndexEntry& e = entry(id);
  const std::string path = dir_ + "/" + e.shard;
  h5::File file = h5::File::open(path);
  h5::Group root = file.root();
  check_format(root, path);
  const std::string key = "/videos/" + id;
  T4G_CHECK_CTX(root.has_group("videos") && root.group("videos").has_group(id), ctx_of(path, key),
                "video listed in the index is missing from its shard (index out of date? rerun `t4g prepare`)");
  h5::Group g = root.group("videos").group(id);
  ShardVideo v;
  v.id = id;
  v.frames = g.read("frames");
  v.tracks = g.read("tracks");
  v.visibility = g.read("visibility");
  v.prompt = g.read_string("prompt");
  v.source = g.read_string("source");
  v.fps = g.attr_double("fps");
  v.stride = g.attr_int("stride");
  if (g.has_dataset("latents")) v.latents = g.read("latents");
  if (g.has_dataset("text_embedding")) v.text_embedding = g.read("text_embedding");
  check_video_tensors(v, path, key);
  T4G_CHECK_CTX(v.frames.size(0) == e.frames && v.frames.size(1) == e.height && v.frames.size(2) == e.width &&
                    v.tracks.size(0) == e.tracks,
                ctx_of(path, key), "shard and index disagree about this video's size (index out of date?)");
  return v;
}

ShardSummary summarize_shards(const std::string& dir) {
  const ShardReader reader(dir);
  ShardSummary s;
  std::set<std::string> shards;
  double visible = 0;
  for (const auto& e : reader.entries()) {
    shards.insert(e.shard);
    s.videos += 1;
    s.frames += e.frames;
    s.tracks += e.tracks;
    visible += e.visible_fraction * static_cast<double>(e.tracks * e.frames);
    s.sizes[str(e.height, "x", e.width)] += 1;
    s.lengths[e.frames] += 1;
    s.with_latents += e.has_latents ? 1 : 0;
    s.with_text_embedding += e.has_text_embedding ? 1 : 0;
    s.with_prompt += e.prompt.empty() ? 0 : 1;
  }
  s.shards = static_cast<int64_t>(shards.size());
  for (const auto& name : shards) {
    T4G_CHECK_CTX(is_regular_file(dir + "/" + name), ctx_of(dir + "/" + name, ""), "shard listed in the index is missing");
    s.bytes += static_cast<int64_t>(file_size(dir + "/" + name));
  }
  double point_frames = 0;
  for (const auto& e : reader.entries()) point_frames += static_cast<double>(e.tracks * e.frames);
  s.visible_fraction = point_frames > 0 ? visible / point_frames : 0.0;
  return s;
}

std::string format_shard_summary(const std::string& dir, const ShardSummary& s) {
  std::ostringstream os;
  auto join = [](const auto& map, const char* unit) {
    std::ostringstream o;
    bool first = true;
    for (const auto& [k, n] : map) {
      o << (first ? "" : ", ") << k << unit << " (" << n << ")";
      first = false;
    }
    return o.str();
  };
  os.setf(std::ios::fixed);
  os.precision(1);
  os << "dataset " << dir << " (schema version " << kShardSchemaVersion << ")\n";
  os << "  shards: " << s.shards << ", " << static_cast<double>(s.bytes) / 1e6 << " MB on disk\n";
  os << "  videos: " << s.videos << ", frames: " << s.frames << "\n";
  os << "  frame sizes: " << join(s.sizes, "") << "\n";
  os << "  frames per video: " << join(s.lengths, "") << "\n";
  os << "  tracks: " << s.tracks << " (" << (s.videos > 0 ? static_cast<double>(s.tracks) / static_cast<double>(s.videos) : 0.0)
     << " per video), visible: " << 100.0 * s.visible_fraction << "% of point-frames\n";
  os << "  prompts: " << s.with_prompt << "/" << s.videos << ", latents: " << s.with_latents << "/" << s.videos
     << ", text embeddings: " << s.with_text_embedding << "/" << s.videos;
  return os.str();
}

}  // namespace t4g::data
