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
enum class OpTag : uint8_t { kAllReduce = 'R', kAllGather = 'G', kBarrier = 'B', kBroadcast = 'C' };

const char* op_name(uint8_t tag) {
  switch (static_cast<OpTag>(tag)) {
    case OpTag::kAllReduce: return "all_reduce";
    case OpTag::kAllGather: return "all_gather";
    case OpTag::kBarrier: return "barrier";
    case OpTag::kBroadcast: return "broadcast";
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

std::vector<std::vector<uint8_t>> StoreCommunicator::exchange(const char* what, std::vector<uint8_t> payload,
                                                              bool read) {
  const uint64_t seq = seq_++;
  const std::string label = str(what, " #", seq);
  std::vector<std::string> keys;
  std::vector<int> ranks;
  for (int r = 0; r < world_size_; ++r) {
    keys.push_back(key(seq, std::to_string(r)));
    ranks.push_back(r);
  }
  std::vector<std::vector<uint8_t>> all;
  try {
    store_->set(keys[rank_], payload);
  } catch (const c10::Error& e) {
    throw Error(str(label, " (rank ", rank_, "): cannot write to the rendezvous store: ",
                    first_line(e.what_without_backtrace())));
  }
  wait_for(label, keys, ranks);
  if (read) {
    all = store_->multiGet(keys);
    all[rank_] = std::move(payload);  // our own bytes, without a copy over the network
  }
  finish(seq, keys);
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
  const auto payloads = exchange("all_reduce", encode(OpTag::kAllReduce, &tensor), /*read=*/true);
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

std::vector<torch::Tensor> StoreCommunicator::all_gather(const torch::Tensor& tensor) {
  std::lock_guard<std::mutex> lock(mutex_);
  check_open("all_gather");
  T4G_CHECK(tensor.defined(), "all_gather: undefined tensor");
  const std::string label = str("all_gather #", seq_);
  const auto payloads = exchange("all_gather", encode(OpTag::kAllGather, &tensor), /*read=*/true);
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
  const auto payloads = exchange("barrier", encode(OpTag::kBarrier, nullptr), /*read=*/true);
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
  const std::vector<std::string> keys = {key(seq, std::to_string(root))};
  if (rank_ == root) {
    try {
      store_->set(keys[0], encode(OpTag::kBroadcast, &tensor));
    } catch (const c10::Error& e) {
      throw Error(str(label, ": cannot write to the rendezvous store: ", first_line(e.what_without_backtrace())));
    }
  } else {
    wait_for(label, keys, {root});
    Decoded d = decode(store_->get(keys[0]), root, label);
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
  finish(seq, keys);
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
