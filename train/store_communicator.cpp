// Store-based collectives; see train/store_communicator.h for the protocol.
#include "train/store_communicator.h"

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>

#include <cstring>

#include "common/error.h"

namespace t4g {
namespace {

// What a payload belongs to: a rank that called a different collective at the same position in
// the call sequence is reported instead of producing garbage.
enum class OpTag : uint8_t {
  kAllReduce = 'R',
  kAllGather = 'G',
  kBarrier = 'B',
  kBroadcast = 'C',
  kReduceScatter = 'S',
};

const char* op_name(uint8_t tag) {
  switch (static_cast<OpTag>(tag)) {
    case OpTag::kAllReduce: return "all_reduce";
    case OpTag::kAllGather: return "all_gather";
    case OpTag::kBarrier: return "barrier";
    case OpTag::kBroadcast: return "broadcast";
    case OpTag::kReduceScatter: return "reduce_scatter";
  }
  return "an unknown collective";
}

constexpr char kMagic[4] = {'t', '4', 'g', 'c'};

// Payload: magic, op tag, dtype, ndim (uint32), sizes (int64 each), raw contiguous bytes.
std::vector<uint8_t> encode(OpTag tag, const torch::Tensor* tensor) {
  torch::Tensor cpu;
  if (tensor != nullptr) cpu = tensor->detach().to(torch::kCPU).contiguous();
  const uint32_t ndim = tensor ? static_cast<uint32_t>(cpu.dim()) : 0;
  const size_t nbytes = tensor ? cpu.nbytes() : 0;
  std::vector<uint8_t> out(4 + 2 + 4 + 8 * ndim + nbytes);
  uint8_t* p = out.data();
  std::memcpy(p, kMagic, 4);
  p[4] = static_cast<uint8_t>(tag);
  p[5] = tensor ? static_cast<uint8_t>(cpu.scalar_type()) : 0xff;
  std::memcpy(p + 6, &ndim, 4);
  for (uint32_t d = 0; d < ndim; ++d) {
    const int64_t size = cpu.size(d);
    std::memcpy(p + 10 + 8 * d, &size, 8);
  }
  if (nbytes > 0) std::memcpy(p + 10 + 8 * ndim, cpu.data_ptr(), nbytes);
  return out;
}

struct Decoded {
  uint8_t tag = 0;
  torch::Tensor tensor;  // undefined for barriers
};

Decoded decode(const std::vector<uint8_t>& bytes, int from_rank, const std::string& what) {
  T4G_CHECK(bytes.size() >= 10 && std::memcmp(bytes.data(), kMagic, 4) == 0, what, ": rank ", from_rank,
            " wrote a malformed payload (", bytes.size(), " bytes): is another program using the same store keys?");
  Decoded d;
  d.tag = bytes[4];
  if (bytes[5] == 0xff) return d;
  uint32_t ndim = 0;
  std::memcpy(&ndim, bytes.data() + 6, 4);
  T4G_CHECK(bytes.size() >= 10 + 8 * static_cast<size_t>(ndim), what, ": truncated payload from rank ", from_rank);
  std::vector<int64_t> sizes(ndim);
  for (uint32_t i = 0; i < ndim; ++i) std::memcpy(&sizes[i], bytes.data() + 10 + 8 * i, 8);
  d.tensor = torch::empty(sizes, torch::TensorOptions().dtype(static_cast<torch::ScalarType>(bytes[5])));
  const size_t offset = 10 + 8 * static_cast<size_t>(ndim);
  T4G_CHECK(bytes.size() == offset + d.tensor.nbytes(), what, ": payload from rank ", from_rank, " has ",
            bytes.size() - offset, " data bytes, expected ", d.tensor.nbytes());
  if (d.tensor.nbytes() > 0) std::memcpy(d.tensor.data_ptr(), bytes.data() + offset, d.tensor.nbytes());
  return d;
}

std::string describe_tensor(const torch::Tensor& t) {
  return t4g::str(c10::toString(t.scalar_type()), " ", t.sizes());
}

// Checks that every rank called the same collective with a tensor like ours.
void check_same(const std::vector<Decoded>& all, int self, uint8_t tag, const std::string& what) {
  for (size_t r = 0; r < all.size(); ++r) {
    T4G_CHECK(all[r].tag == tag, what, ": rank ", r, " called ", op_name(all[r].tag), " while rank ", self,
              " called ", op_name(tag), " (collectives must be called in the same order on every rank)");
    if (!all[self].tensor.defined()) continue;
    ErrorContext ctx;
    ctx.tensor = str("rank ", r, "'s input");
    ctx.expected = describe_tensor(all[self].tensor);
    ctx.got = describe_tensor(all[r].tensor);
    T4G_CHECK_CTX(all[r].tensor.scalar_type() == all[self].tensor.scalar_type() &&
                      all[r].tensor.sizes() == all[self].tensor.sizes(),
                  ctx, what, ": every rank must pass a tensor of the same dtype and shape");
  }
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

class CompletedCollective : public PendingCollective {
 public:
  void wait() override {}
};

// The libuv TCPStore server rejects messages over 8 MiB ("Invalid payload size"), so payloads
// travel in chunks of at most 4 MiB: chunk 0 under `base` starts with the chunk count, chunks
// 1..n-1 live under "base/<i>".
constexpr size_t kChunkBytes = size_t{4} << 20;

std::string chunk_key(const std::string& base, uint32_t i) { return i == 0 ? base : base + "/" + std::to_string(i); }

uint32_t chunk_count(size_t bytes) {
  return static_cast<uint32_t>(std::max<size_t>(1, (bytes + kChunkBytes - 1) / kChunkBytes));
}

// Writes the chunks, chunk 0 last: a reader that sees chunk 0 finds all the others in place.
uint32_t put_chunked(c10d::Store& store, const std::string& base, const std::vector<uint8_t>& payload) {
  const uint32_t count = chunk_count(payload.size());
  for (uint32_t i = count; i-- > 0;) {
    const size_t begin = i * kChunkBytes;
    const size_t end = std::min(payload.size(), begin + kChunkBytes);
    const size_t header = i == 0 ? 4 : 0;
    std::vector<uint8_t> chunk(header + (end - begin));
    if (header > 0) std::memcpy(chunk.data(), &count, 4);
    if (end > begin) std::memcpy(chunk.data() + header, payload.data() + begin, end - begin);
    store.set(chunk_key(base, i), chunk);
  }
  return count;
}

// Reassembles a payload from its chunk 0 (already fetched) and the other chunks; appends every
// key it used to `keys`.
std::vector<uint8_t> assemble_chunks(c10d::Store& store, const std::string& base, std::vector<uint8_t> first,
                                     std::vector<std::string>& keys) {
  T4G_CHECK(first.size() >= 4, "store communicator: malformed chunk under ", base);
  uint32_t count = 0;
  std::memcpy(&count, first.data(), 4);
  std::vector<uint8_t> payload(first.begin() + 4, first.end());
  keys.push_back(base);
  if (count > 1) {
    std::vector<std::string> rest;
    for (uint32_t i = 1; i < count; ++i) rest.push_back(chunk_key(base, i));
    for (auto& chunk : store.multiGet(rest)) payload.insert(payload.end(), chunk.begin(), chunk.end());
    keys.insert(keys.end(), rest.begin(), rest.end());
  }
  return payload;
}

}  // namespace

StoreCommunicator::StoreCommunicator(c10::intrusive_ptr<c10d::Store> store, int rank, int world_size,
                                     StoreCommunicatorOptions options)
    : rank_(rank), world_size_(world_size), options_(std::move(options)) {
  T4G_CHECK(store, "StoreCommunicator: no store given");
  T4G_CHECK(world_size >= 1, "StoreCommunicator: world size must be positive, got ", world_size);
  T4G_CHECK(rank >= 0 && rank < world_size, "StoreCommunicator: rank ", rank, " is outside [0, ", world_size, ")");
  T4G_CHECK(options_.timeout.count() > 0, "StoreCommunicator: timeout must be positive");
  store_ = c10::make_intrusive<c10d::PrefixStore>(options_.name, std::move(store));
}

StoreCommunicator::~StoreCommunicator() = default;

std::string StoreCommunicator::key(uint64_t seq, const std::string& leaf) const { return str(seq, "/", leaf); }

void StoreCommunicator::check_open(const char* what) const {
  T4G_CHECK(!closed_, "store communicator: ", what, " called after shutdown()");
}

void StoreCommunicator::wait_for(const std::string& what, const std::vector<std::string>& keys,
                                 const std::vector<int>& ranks) {
  try {
    store_->wait(keys, options_.timeout);
    return;
  } catch (const c10::DistStoreError&) {
    // Timed out: name the ranks that never arrived.
  } catch (const c10::Error& e) {
    throw Error(str(what, " (rank ", rank_, " of ", world_size_,
                    "): lost the connection to the rendezvous store (did its host exit?): ",
                    first_line(e.what_without_backtrace())));
  }
  std::string missing;
  try {
    for (size_t i = 0; i < keys.size(); ++i) {
      if (!store_->check({keys[i]})) missing += str(missing.empty() ? "" : ", ", ranks[i]);
    }
  } catch (const c10::Error&) {
    missing = "unknown (store unreachable)";
  }
  throw Error(str(what, " (rank ", rank_, " of ", world_size_, ") timed out after ", options_.timeout.count(),
                  " ms waiting for rank(s) ", missing.empty() ? "?" : missing,
                  ": a peer died, is stuck, or called the collectives in a different order"));
}

void StoreCommunicator::finish(uint64_t seq, const std::vector<std::string>& keys) {
  const std::string counter = key(seq, "done");
  if (store_->add(counter, 1) == world_size_) {
    for (const std::string& k : keys) store_->deleteKey(k);
    store_->deleteKey(counter);
  }
}

std::vector<std::vector<uint8_t>> StoreCommunicator::exchange(const char* what, std::vector<uint8_t> payload) {
  const uint64_t seq = seq_++;
  const std::string label = str(what, " #", seq);
  std::vector<std::string> firsts;
  std::vector<int> ranks;
  for (int r = 0; r < world_size_; ++r) {
    firsts.push_back(key(seq, std::to_string(r)));
    ranks.push_back(r);
  }
  try {
    put_chunked(*store_, firsts[rank_], payload);
  } catch (const c10::Error& e) {
    throw Error(str(label, " (rank ", rank_, "): cannot write to the rendezvous store: ",
                    first_line(e.what_without_backtrace())));
  }
  wait_for(label, firsts, ranks);
  std::vector<std::vector<uint8_t>> all(world_size_);
  std::vector<std::string> used;  // every key of this call, for the rank that cleans up
  // Our own bytes need no trip over the network, only our key names.
  for (uint32_t i = 0; i < chunk_count(payload.size()); ++i) used.push_back(chunk_key(firsts[rank_], i));
  std::vector<std::string> others;
  for (int r = 0; r < world_size_; ++r) {
    if (r != rank_) others.push_back(firsts[r]);
  }
  if (!others.empty()) {
    auto heads = store_->multiGet(others);
    size_t k = 0;
    for (int r = 0; r < world_size_; ++r) {
      if (r != rank_) all[r] = assemble_chunks(*store_, firsts[r], std::move(heads[k++]), used);
    }
  }
  all[rank_] = std::move(payload);
  finish(seq, used);
  return all;
}

void StoreCommunicator::all_reduce(torch::Tensor& tensor, ReduceOp op) {
  std::lock_guard<std::mutex> lock(mutex_);
  check_open("all_reduce");
  T4G_CHECK(tensor.defined(), "all_reduce: undefined tensor");
  T4G_CHECK(!tensor.is_complex() && tensor.scalar_type() != torch::kBool, "all_reduce: unsupported dtype ",
            c10::toString(tensor.scalar_type()));
  T4G_CHECK(op != ReduceOp::kAvg || tensor.is_floating_point(), "all_reduce: average of an integer tensor (",
            c10::toString(tensor.scalar_type()), ") is not defined; use sum");
  const std::string label = str("all_reduce #", seq_);
  const auto payloads = exchange("all_reduce", encode(OpTag::kAllReduce, &tensor));
  std::vector<Decoded> all;
  for (int r = 0; r < world_size_; ++r) all.push_back(decode(payloads[r], r, label));
  check_same(all, rank_, static_cast<uint8_t>(OpTag::kAllReduce), label);
  // Fixed rank order, same input bytes on every rank: the result is bit-identical everywhere.
  // Half and bfloat16 are accumulated in float32 (then rounded once), like a careful NCCL sum.
  const bool widen = tensor.scalar_type() == torch::kHalf || tensor.scalar_type() == torch::kBFloat16;
  torch::Tensor acc = widen ? all[0].tensor.to(torch::kFloat) : all[0].tensor.clone();
  for (int r = 1; r < world_size_; ++r) acc.add_(all[r].tensor);
  if (op == ReduceOp::kAvg) acc.div_(world_size_);
  torch::NoGradGuard no_grad;
  tensor.copy_(acc);
}

std::unique_ptr<PendingCollective> StoreCommunicator::all_reduce_async(torch::Tensor& tensor, ReduceOp op) {
  all_reduce(tensor, op);
  return std::make_unique<CompletedCollective>();
}

void StoreCommunicator::reduce_scatter(const torch::Tensor& input, torch::Tensor& output, ReduceOp op) {
  std::lock_guard<std::mutex> lock(mutex_);
  check_open("reduce_scatter");
  T4G_CHECK(input.defined() && output.defined(), "reduce_scatter: undefined tensor");
  T4G_CHECK(!input.is_complex() && input.scalar_type() != torch::kBool, "reduce_scatter: unsupported dtype ",
            c10::toString(input.scalar_type()));
  T4G_CHECK(op != ReduceOp::kAvg || input.is_floating_point(), "reduce_scatter: average of an integer tensor (",
            c10::toString(input.scalar_type()), ") is not defined; use sum");
  const int64_t n = output.numel();
  {
    ErrorContext ctx;
    ctx.tensor = "reduce_scatter input";
    ctx.expected = str(world_size_, " x ", n, " ", c10::toString(output.scalar_type()), " values");
    ctx.got = str(input.numel(), " ", c10::toString(input.scalar_type()), " values");
    T4G_CHECK_CTX(input.numel() == n * world_size_ && input.scalar_type() == output.scalar_type(), ctx,
                  "reduce_scatter: input must hold world_size equal chunks of the output's dtype");
  }
  const uint64_t seq = seq_++;
  const std::string label = str("reduce_scatter #", seq);
  const torch::Tensor flat = input.detach().reshape({-1});
  auto chunk_key_of = [&](int from, int to) { return key(seq, str(from, "/to/", to)); };
  try {
    for (int j = 0; j < world_size_; ++j) {
      if (j == rank_) continue;
      const torch::Tensor chunk = flat.narrow(0, j * n, n);
      put_chunked(*store_, chunk_key_of(rank_, j), encode(OpTag::kReduceScatter, &chunk));
    }
  } catch (const c10::Error& e) {
    throw Error(str(label, " (rank ", rank_, "): cannot write to the rendezvous store: ",
                    first_line(e.what_without_backtrace())));
  }
  std::vector<Decoded> all(world_size_);
  all[rank_].tag = static_cast<uint8_t>(OpTag::kReduceScatter);
  all[rank_].tensor = flat.narrow(0, rank_ * n, n).to(torch::kCPU).contiguous();
  std::vector<std::string> firsts;
  std::vector<int> ranks;
  for (int q = 0; q < world_size_; ++q) {
    if (q == rank_) continue;
    firsts.push_back(chunk_key_of(q, rank_));
    ranks.push_back(q);
  }
  if (!firsts.empty()) {
    wait_for(label, firsts, ranks);
    auto heads = store_->multiGet(firsts);
    std::vector<std::string> used;
    for (size_t i = 0; i < firsts.size(); ++i) {
      all[ranks[i]] = decode(assemble_chunks(*store_, firsts[i], std::move(heads[i]), used), ranks[i], label);
    }
    // Only this rank reads what was addressed to it, so it can clean up at once.
    for (const std::string& k : used) store_->deleteKey(k);
  }
  check_same(all, rank_, static_cast<uint8_t>(OpTag::kReduceScatter), label);
  // The same arithmetic as all_reduce, on this rank's chunk only.
  const bool widen = input.scalar_type() == torch::kHalf || input.scalar_type() == torch::kBFloat16;
  torch::Tensor acc = widen ? all[0].tensor.to(torch::kFloat) : all[0].tensor.clone();
  for (int r = 1; r < world_size_; ++r) acc.add_(all[r].tensor);
  if (op == ReduceOp::kAvg) acc.div_(world_size_);
  torch::NoGradGuard no_grad;
  output.copy_(acc.view(output.sizes()));
}

std::unique_ptr<PendingCollective> StoreCommunicator::reduce_scatter_async(const torch::Tensor& input,
                                                                           torch::Tensor& output, ReduceOp op) {
  reduce_scatter(input, output, op);
  return std::make_unique<CompletedCollective>();
}

std::vector<torch::Tensor> StoreCommunicator::all_gather(const torch::Tensor& tensor) {
  std::lock_guard<std::mutex> lock(mutex_);
  check_open("all_gather");
  T4G_CHECK(tensor.defined(), "all_gather: undefined tensor");
  const std::string label = str("all_gather #", seq_);
  const auto payloads = exchange("all_gather", encode(OpTag::kAllGather, &tensor));
  std::vector<Decoded> all;
  for (int r = 0; r < world_size_; ++r) all.push_back(decode(payloads[r], r, label));
  check_same(all, rank_, static_cast<uint8_t>(OpTag::kAllGather), label);
  std::vector<torch::Tensor> out;
  for (auto& d : all) out.push_back(d.tensor.to(tensor.device()));
  return out;
}

void StoreCommunicator::barrier() {
  std::lock_guard<std::mutex> lock(mutex_);
  check_open("barrier");
  const std::string label = str("barrier #", seq_);
  const auto payloads = exchange("barrier", encode(OpTag::kBarrier, nullptr));
  std::vector<Decoded> all;
  for (int r = 0; r < world_size_; ++r) all.push_back(decode(payloads[r], r, label));
  check_same(all, rank_, static_cast<uint8_t>(OpTag::kBarrier), label);
}

void StoreCommunicator::broadcast(torch::Tensor& tensor, int root) {
  std::lock_guard<std::mutex> lock(mutex_);
  check_open("broadcast");
  T4G_CHECK(tensor.defined(), "broadcast: undefined tensor");
  T4G_CHECK(root >= 0 && root < world_size_, "broadcast: root ", root, " is outside [0, ", world_size_, ")");
  const uint64_t seq = seq_++;
  const std::string label = str("broadcast #", seq, " from rank ", root);
  const std::string base = key(seq, std::to_string(root));
  std::vector<std::string> used;
  if (rank_ == root) {
    uint32_t count = 0;
    try {
      count = put_chunked(*store_, base, encode(OpTag::kBroadcast, &tensor));
    } catch (const c10::Error& e) {
      throw Error(str(label, ": cannot write to the rendezvous store: ", first_line(e.what_without_backtrace())));
    }
    for (uint32_t i = 0; i < count; ++i) used.push_back(chunk_key(base, i));
  } else {
    wait_for(label, {base}, {root});
    Decoded d = decode(assemble_chunks(*store_, base, store_->get(base), used), root, label);
    T4G_CHECK(d.tag == static_cast<uint8_t>(OpTag::kBroadcast), label, ": rank ", root, " called ",
              op_name(d.tag), " while rank ", rank_, " called broadcast");
    ErrorContext ctx;
    ctx.tensor = str("rank ", rank_, "'s receive buffer");
    ctx.expected = describe_tensor(d.tensor);
    ctx.got = describe_tensor(tensor);
    T4G_CHECK_CTX(d.tensor.scalar_type() == tensor.scalar_type() && d.tensor.sizes() == tensor.sizes(), ctx,
                  label, ": every rank must pass a tensor of the same dtype and shape");
    torch::NoGradGuard no_grad;
    tensor.copy_(d.tensor);
  }
  finish(seq, used);
}

void StoreCommunicator::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return;
  }
  barrier();
  std::lock_guard<std::mutex> lock(mutex_);
  // Every rank's last request is its "gone" key; rank 0 waits for them and removes them, so a
  // store hosted by rank 0 (no agent store) is still there for every request of every peer.
  if (rank_ != 0) {
    store_->set(str("gone/", rank_), std::vector<uint8_t>{1});
  } else {
    std::vector<std::string> keys;
    std::vector<int> ranks;
    for (int r = 1; r < world_size_; ++r) {
      keys.push_back(str("gone/", r));
      ranks.push_back(r);
    }
    if (!keys.empty()) {
      wait_for("shutdown", keys, ranks);
      for (const std::string& k : keys) store_->deleteKey(k);
    }
  }
  closed_ = true;
}

}  // namespace t4g
