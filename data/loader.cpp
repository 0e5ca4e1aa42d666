// The training loader (see loader.h). Batches are numbered by a sequence number
// s = epoch * batches_per_epoch + batch; workers claim sequence numbers in order, at most
// prefetch_batches ahead of the consumer, and park finished batches in a map until next() asks
// for them, so batches come out in order whatever order the workers finish in.
#include "data/loader.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "common/error.h"
#include "common/log.h"
#include "common/rng.h"
#include "data/synthetic_video.h"

namespace t4g::data {
namespace {

// Stream id of the per-sample augmentation generators (keeps them apart from other streams
// derived from the same seed).
constexpr uint64_t kAugmentStream = 0x617567;  // "aug"

// torch's DistributedSampler sizes: samples per rank and the padded or truncated total.
int64_t samples_per_rank(int64_t size, const SamplerOptions& o) {
  if (o.drop_last && size % o.world_size != 0) return std::max<int64_t>(0, (size - o.world_size + o.world_size - 1) / o.world_size);
  return (size + o.world_size - 1) / o.world_size;
}

void check_sampler(int64_t size, const SamplerOptions& o) {
  T4G_CHECK(o.world_size >= 1, "sampler: world_size must be >= 1, got ", o.world_size);
  T4G_CHECK(o.rank >= 0 && o.rank < o.world_size, "sampler: rank must be in [0, ", o.world_size, "), got ", o.rank);
  T4G_CHECK(size > 0, "sampler: the dataset is empty");
}

// One sample after augmentation, before collation.
struct Clip {
  std::string id, prompt;
  torch::Tensor frames, latents, text_embedding, tracks, visibility;
};

ErrorContext video_ctx(const LoaderOptions& o, const std::string& id) {
  ErrorContext ctx;
  ctx.file = o.dataset;
  ctx.key = id;
  return ctx;
}

Clip make_clip(ShardVideo v, const LoaderOptions& o, SplitMix64& rng, bool uses_latents) {
  Clip c;
  c.id = v.id;
  c.prompt = v.prompt;
  c.text_embedding = v.text_embedding;
  c.tracks = v.tracks;
  c.visibility = v.visibility;
  if (uses_latents) {
    ErrorContext ctx = video_ctx(o, v.id);
    ctx.tensor = "latents";
    T4G_CHECK_CTX(v.latents.defined(), ctx, "video has no latents (the index said it had)");
    c.latents = v.latents;
  } else {
    c.frames = v.frames;
    const AugmentOptions& a = o.augment;
    const int64_t F = c.frames.size(0), H = c.frames.size(1), W = c.frames.size(2);
    if (a.clip_frames > 0) {
      ErrorContext ctx = video_ctx(o, v.id);
      ctx.expected = t4g::str(">= ", a.clip_frames, " frames");
      ctx.got = t4g::str(F);
      T4G_CHECK_CTX(F >= a.clip_frames, ctx, "video is shorter than the clip length");
      const int64_t t0 = static_cast<int64_t>(rng.below(static_cast<uint64_t>(F - a.clip_frames + 1)));
      c.frames = c.frames.slice(0, t0, t0 + a.clip_frames);
      c.tracks = c.tracks.slice(1, t0, t0 + a.clip_frames);
      c.visibility = c.visibility.slice(1, t0, t0 + a.clip_frames);
    }
    int64_t width = W;
    if (a.crop_height > 0) {
      ErrorContext ctx = video_ctx(o, v.id);
      ctx.expected = t4g::str(">= ", a.crop_height, "x", a.crop_width);
      ctx.got = t4g::str(H, "x", W);
      T4G_CHECK_CTX(H >= a.crop_height && W >= a.crop_width, ctx, "video is smaller than the crop");
      const int64_t y0 = static_cast<int64_t>(rng.below(static_cast<uint64_t>(H - a.crop_height + 1)));
      const int64_t x0 = static_cast<int64_t>(rng.below(static_cast<uint64_t>(W - a.crop_width + 1)));
      c.frames = c.frames.slice(1, y0, y0 + a.crop_height).slice(2, x0, x0 + a.crop_width);
      c.tracks = c.tracks - torch::tensor({static_cast<float>(x0), static_cast<float>(y0)});
      const torch::Tensor x = c.tracks.select(2, 0), y = c.tracks.select(2, 1);
      c.visibility = c.visibility & (x >= 0) & (x < static_cast<float>(a.crop_width)) & (y >= 0) &
                     (y < static_cast<float>(a.crop_height));
      width = a.crop_width;
    }
    // Always drawn, so the stream's later draws do not depend on the probability.
    const bool flip = rng.uniform() < a.flip_probability;
    if (flip) {
      c.frames = c.frames.flip({2});
      // Raster convention: the mirror of x (0 = left edge) is W - x.
      c.tracks = torch::stack({static_cast<float>(width) - c.tracks.select(2, 0), c.tracks.select(2, 1)}, 2);
    }
    c.frames = c.frames.contiguous();
  }
  if (o.tracks_per_clip > 0) {
    // Tracks visible somewhere in the clip, in a seeded random order; the first tracks_per_clip.
    const torch::Tensor candidates = c.visibility.any(1).nonzero().flatten().contiguous();
    std::vector<int64_t> pick(candidates.data_ptr<int64_t>(), candidates.data_ptr<int64_t>() + candidates.numel());
    for (size_t i = pick.size(); i > 1; --i) std::swap(pick[i - 1], pick[static_cast<size_t>(rng.below(i))]);
    pick.resize(std::min<size_t>(pick.size(), static_cast<size_t>(o.tracks_per_clip)));
    const torch::Tensor index = torch::tensor(pick, torch::kInt64);
    c.tracks = c.tracks.index_select(0, index);
    c.visibility = c.visibility.index_select(0, index);
  }
  return c;
}

// Stacks same-shaped tensors; a mismatch names the two videos.
torch::Tensor stack_checked(const std::vector<Clip>& clips, torch::Tensor Clip::*member, const char* name,
                            const LoaderOptions& o) {
  std::vector<torch::Tensor> parts;
  for (const Clip& c : clips) {
    const torch::Tensor& t = c.*member;
    if (!parts.empty() && t.sizes() != parts.front().sizes()) {
      ErrorContext ctx = video_ctx(o, c.id);
      ctx.tensor = name;
      ctx.expected = t4g::str(parts.front().sizes(), " (as ", clips.front().id, ")");
      ctx.got = t4g::str(t.sizes());
      throw Error("videos in one batch differ in size (use a crop or clip length, or batch size 1)", ctx);
    }
    parts.push_back(t);
  }
  return torch::stack(parts);
}

}  // namespace

std::vector<int64_t> distributed_indices(int64_t dataset_size, int64_t epoch, const SamplerOptions& o) {
  check_sampler(dataset_size, o);
  T4G_CHECK(epoch >= 0, "sampler: epoch must be >= 0, got ", epoch);
  const int64_t per_rank = samples_per_rank(dataset_size, o);
  const int64_t total = per_rank * o.world_size;
  std::vector<int64_t> order(static_cast<size_t>(dataset_size));
  if (o.shuffle) {
    // torch: g = torch.Generator(); g.manual_seed(seed + epoch); torch.randperm(n, generator=g)
    auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + static_cast<uint64_t>(epoch));
    const torch::Tensor perm = torch::randperm(dataset_size, gen, torch::TensorOptions().dtype(torch::kInt64));
    std::copy(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + dataset_size, order.begin());
  } else {
    for (int64_t i = 0; i < dataset_size; ++i) order[static_cast<size_t>(i)] = i;
  }
  // Padding repeats the order from its start (cyclically when it must wrap more than once).
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(per_rank));
  for (int64_t k = o.rank; k < total; k += o.world_size) out.push_back(order[static_cast<size_t>(k % dataset_size)]);
  return out;
}

LatentMode parse_latent_mode(const std::string& text) {
  if (text == "auto") return LatentMode::kAuto;
  if (text == "never") return LatentMode::kNever;
  if (text == "require") return LatentMode::kRequire;
  ErrorContext ctx;
  ctx.expected = "auto, never or require";
  ctx.got = text;
  throw Error("unknown latent mode", ctx);
}

Batch load_batch(const ShardReader& reader, const LoaderOptions& o, const std::vector<int64_t>& indices, int64_t epoch,
                 int64_t batch, bool uses_latents) {
  const int64_t begin = batch * o.batch_size;
  const int64_t end = std::min<int64_t>(begin + o.batch_size, static_cast<int64_t>(indices.size()));
  T4G_CHECK(begin >= 0 && begin < end, "loader: batch ", batch, " is outside epoch ", epoch, " (", indices.size(),
            " samples, batch size ", o.batch_size, ")");
  Batch out;
  out.position = {epoch, batch};
  std::vector<Clip> clips;
  for (int64_t k = begin; k < end; ++k) {
    const int64_t index = indices[static_cast<size_t>(k)];
    SplitMix64 rng(derive_seed(o.sampler.seed, {kAugmentStream, static_cast<uint64_t>(epoch),
                                                static_cast<uint64_t>(o.sampler.rank), static_cast<uint64_t>(k)}));
    clips.push_back(make_clip(reader.read(static_cast<size_t>(index)), o, rng, uses_latents));
    out.ids.push_back(clips.back().id);
    out.prompts.push_back(clips.back().prompt);
    out.dataset_indices.push_back(index);
  }
  if (uses_latents) {
    out.latents = stack_checked(clips, &Clip::latents, "latents", o);
  } else {
    out.frames = stack_checked(clips, &Clip::frames, "frames", o);
  }
  bool all_text = true;
  for (const Clip& c : clips) all_text = all_text && c.text_embedding.defined() &&
                                         c.text_embedding.sizes() == clips.front().text_embedding.sizes();
  if (all_text) out.text_embedding = stack_checked(clips, &Clip::text_embedding, "text_embedding", o);

  // Tracks padded to a common count (tracks_per_clip, or the largest in the batch).
  const int64_t B = static_cast<int64_t>(clips.size());
  const int64_t F = clips.front().tracks.size(1);
  int64_t N = o.tracks_per_clip;
  for (const Clip& c : clips) {
    ErrorContext ctx = video_ctx(o, c.id);
    ctx.tensor = "tracks";
    ctx.expected = t4g::str("[N, ", F, ", 2] (as ", clips.front().id, ")");
    ctx.got = t4g::str(c.tracks.sizes());
    T4G_CHECK_CTX(c.tracks.size(1) == F, ctx, "videos in one batch differ in length");
    if (o.tracks_per_clip == 0) N = std::max(N, c.tracks.size(0));
  }
  out.tracks = torch::zeros({B, N, F, 2}, torch::kFloat32);
  out.visibility = torch::zeros({B, N, F}, torch::kBool);
  out.track_mask = torch::zeros({B, N}, torch::kBool);
  for (int64_t b = 0; b < B; ++b) {
    const Clip& c = clips[static_cast<size_t>(b)];
    const int64_t n = c.tracks.size(0);
    if (n == 0) continue;
    out.tracks[b].slice(0, 0, n).copy_(c.tracks);
    out.visibility[b].slice(0, 0, n).copy_(c.visibility);
    out.track_mask[b].slice(0, 0, n).fill_(true);
  }
  return out;
}

// ---- Loader ------------------------------------------------------------------------------

struct Loader::State {
  std::mutex mutex;                        // guards everything below
  std::condition_variable work_cv;         // workers: room to build ahead, or stop
  std::condition_variable ready_cv;        // consumers: a batch is ready
  int64_t next_to_build = 0;               // sequence number a worker claims next
  int64_t next_to_return = 0;              // sequence number next() hands out next
  struct Result {
    Batch batch;
    std::exception_ptr error;
  };
  std::map<int64_t, Result> ready;         // finished, not yet returned
  bool stop = false;
  std::vector<std::thread> threads;
  std::mutex epochs_mutex;                 // guards epochs
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> epochs;
};

Loader::Loader(const LoaderOptions& options, LoaderPosition start)
    : options_(options), reader_(options.dataset), state_(std::make_unique<State>()) {
  const LoaderOptions& o = options_;
  const AugmentOptions& a = o.augment;
  T4G_CHECK(o.batch_size > 0, "loader: batch_size must be positive, got ", o.batch_size);
  T4G_CHECK(o.workers >= 0, "loader: workers must be >= 0, got ", o.workers);
  T4G_CHECK(o.prefetch_batches >= 1, "loader: prefetch_batches must be >= 1, got ", o.prefetch_batches);
  T4G_CHECK(o.tracks_per_clip >= 0, "loader: tracks_per_clip must be >= 0, got ", o.tracks_per_clip);
  T4G_CHECK(a.clip_frames >= 0, "loader: clip_frames must be >= 0, got ", a.clip_frames);
  T4G_CHECK(a.crop_height >= 0 && a.crop_width >= 0 && (a.crop_height == 0) == (a.crop_width == 0),
            "loader: crop_height and crop_width must both be positive or both 0, got ", a.crop_height, "x", a.crop_width);
  T4G_CHECK(a.flip_probability >= 0 && a.flip_probability <= 1, "loader: flip_probability must be in [0, 1], got ",
            a.flip_probability);
  const int64_t size = static_cast<int64_t>(reader_.size());
  ErrorContext ctx;
  ctx.file = o.dataset;
  T4G_CHECK_CTX(size > 0, ctx, "dataset has no videos");
  check_sampler(size, o.sampler);

  bool all_latents = true;
  for (const auto& e : reader_.entries()) all_latents = all_latents && e.has_latents;
  if (o.latents == LatentMode::kRequire) {
    T4G_CHECK_CTX(all_latents, ctx, "latents required but some videos have none (precompute them first)");
  }
  uses_latents_ = o.latents != LatentMode::kNever && all_latents;
  // A clip length equal to every video's is no window at all: latents of the whole video fit it.
  bool whole_videos = true;
  for (const auto& e : reader_.entries()) whole_videos = whole_videos && e.frames == a.clip_frames;
  T4G_CHECK_CTX(!uses_latents_ || ((a.clip_frames == 0 || whole_videos) && a.crop_height == 0 &&
                                   a.flip_probability == 0),
                ctx,
                "augmentation (clip_frames, crop, flip) works on frames; with precomputed latents set it off or use "
                "latents=never");

  samples_per_epoch_ = samples_per_rank(size, o.sampler);
  batches_per_epoch_ = o.drop_last_batch ? samples_per_epoch_ / o.batch_size
                                         : (samples_per_epoch_ + o.batch_size - 1) / o.batch_size;
  T4G_CHECK_CTX(batches_per_epoch_ > 0, ctx, "dataset of ", size, " videos gives no batch of ", o.batch_size,
                " per rank over ", o.sampler.world_size, " ranks");
  T4G_CHECK(start.epoch >= 0 && start.batch >= 0 && start.batch < batches_per_epoch_, "loader: resume position (epoch ",
            start.epoch, ", batch ", start.batch, ") is outside an epoch of ", batches_per_epoch_, " batches");
  first_sequence_ = start.epoch * batches_per_epoch_ + start.batch;
  state_->next_to_build = first_sequence_;
  state_->next_to_return = first_sequence_;
  for (int64_t i = 0; i < o.workers; ++i) state_->threads.emplace_back([this] { worker_loop(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
  }
  state_->work_cv.notify_all();
  for (auto& t : state_->threads) t.join();
}

std::shared_ptr<const std::vector<int64_t>> Loader::indices_for(int64_t epoch) {
  std::lock_guard<std::mutex> lock(state_->epochs_mutex);
  auto it = state_->epochs.find(epoch);
  if (it != state_->epochs.end()) return it->second;
  auto indices = std::make_shared<const std::vector<int64_t>>(
      distributed_indices(static_cast<int64_t>(reader_.size()), epoch, options_.sampler));
  // Keep a few recent epochs: workers run at most prefetch_batches ahead.
  while (state_->epochs.size() >= 3) state_->epochs.erase(state_->epochs.begin());
  state_->epochs[epoch] = indices;
  return indices;
}

Batch Loader::build(int64_t sequence) {
  const int64_t epoch = sequence / batches_per_epoch_, batch = sequence % batches_per_epoch_;
  return load_batch(reader_, options_, *indices_for(epoch), epoch, batch, uses_latents_);
}

void Loader::worker_loop() {
  State& s = *state_;
  for (;;) {
    int64_t sequence;
    {
      std::unique_lock<std::mutex> lock(s.mutex);
      s.work_cv.wait(lock, [&] { return s.stop || s.next_to_build < s.next_to_return + options_.prefetch_batches; });
      if (s.stop) return;
      sequence = s.next_to_build++;
    }
    State::Result result;
    try {
      result.batch = build(sequence);
    } catch (...) {
      result.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.ready.emplace(sequence, std::move(result));
    }
    s.ready_cv.notify_all();
  }
}

Batch Loader::next() {
  State& s = *state_;
  int64_t sequence;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    sequence = s.next_to_return++;
  }
  if (options_.workers == 0) return build(sequence);
  s.work_cv.notify_all();  // the window moved: workers may build further ahead
  std::unique_lock<std::mutex> lock(s.mutex);
  s.ready_cv.wait(lock, [&] { return s.ready.count(sequence) != 0; });
  State::Result result = std::move(s.ready.at(sequence));
  s.ready.erase(sequence);
  lock.unlock();
  if (result.error) std::rethrow_exception(result.error);
  return std::move(result.batch);
}

LoaderPosition Loader::position() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  const int64_t s = state_->next_to_return;
  return {s / batches_per_epoch_, s % batches_per_epoch_};
}

}  // namespace t4g::data
