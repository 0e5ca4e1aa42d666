// ProcessGroupNCCL behind the Communicator interface; see train/nccl_communicator.h. Everything
// that touches NCCL or CUDA headers is inside the T4G_HAVE_NCCL guard so CPU-only builds compile.
#include "train/nccl_communicator.h"

#include "common/error.h"
#include "t4g/build_config.h"  // T4G_HAVE_NCCL

#if T4G_HAVE_NCCL && defined(USE_C10D_NCCL)
#define T4G_NCCL_COMMUNICATOR 1
#include <c10/cuda/CUDAFunctions.h>  // c10::cuda::set_device, device_count
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <cstdlib>
#else
#define T4G_NCCL_COMMUNICATOR 0
#endif

namespace t4g {

#if T4G_NCCL_COMMUNICATOR
namespace {

c10d::ReduceOp to_c10d(ReduceOp op) {
  return op == ReduceOp::kSum ? c10d::ReduceOp(c10d::ReduceOp::SUM) : c10d::ReduceOp(c10d::ReduceOp::AVG);
}

class NcclPending : public PendingCollective {
 public:
  explicit NcclPending(c10::intrusive_ptr<c10d::Work> work) : work_(std::move(work)) {}
  // Without a timeout WorkNCCL::wait orders the current CUDA stream after the collective and does
  // not block the CPU (research A.2.6).
  void wait() override { work_->wait(); }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(const DistEnv& env, c10::intrusive_ptr<c10d::Store> store, const CommunicatorOptions& options)
      : rank_(env.rank), world_size_(env.world_size), local_rank_(env.local_rank), options_(options) {
    const int visible = static_cast<int>(c10::cuda::device_count());
    const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
    ErrorContext ctx;
    ctx.key = "LOCAL_RANK";
    ctx.expected = str("a visible CUDA device index in [0, ", visible, ")");
    ctx.got = std::to_string(env.local_rank);
    T4G_CHECK_CTX(env.local_rank < visible, ctx, "NCCL communicator: rank ", env.rank, " has no GPU (",
                  visible, " visible, CUDA_VISIBLE_DEVICES=", cvd ? cvd : "unset", ")");
    // Bind the device first: otherwise NCCL picks device 0 on every rank ("Duplicate GPU
    // detected", research A.3.8) and barrier() guesses the device (A.3.7).
    device_ = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(local_rank_));
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(local_rank_));
    auto pg_options = c10d::ProcessGroupNCCL::Options::create();
    pg_options->timeout = options.timeout;
    pg_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(
        c10::make_intrusive<c10d::PrefixStore>(options.name, std::move(store)), rank_, world_size_,
        pg_options);
    pg_->setBoundDeviceId(device_);
    if (options.nccl_eager_init) pg_->eagerConnectSingleDevice(device_);
  }

  ~NcclCommunicator() override {
    // Reached without shutdown() only on an error path, where peers may be gone: a collective
    // teardown could hang, so abort this rank's communicators locally.
    if (pg_) {
      try {
        pg_->abort();
      } catch (...) {
      }
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend_name() const override { return "nccl"; }

  void all_reduce(torch::Tensor& tensor, ReduceOp op) override { all_reduce_async(tensor, op)->wait(); }

  std::unique_ptr<PendingCollective> all_reduce_async(torch::Tensor& tensor, ReduceOp op) override {
    check_tensor(tensor, "all_reduce");
    std::vector<at::Tensor> tensors{tensor};
    c10d::AllreduceOptions opts;
    opts.reduceOp = to_c10d(op);
    return std::make_unique<NcclPending>(pg_->allreduce(tensors, opts));
  }

  void reduce_scatter(const torch::Tensor& input, torch::Tensor& output, ReduceOp op) override {
    reduce_scatter_async(input, output, op)->wait();
  }

  // ncclReduceScatter through c10d's flat-tensor entry point (the one torch.distributed's
  // reduce_scatter_tensor uses): input [W * n] -> output [n], no per-rank list to assemble.
  std::unique_ptr<PendingCollective> reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output,
                                                          ReduceOp op) override {
    check_tensor(input, "reduce_scatter input");
    check_tensor(output, "reduce_scatter output");
    ErrorContext ctx;
    ctx.tensor = "reduce_scatter input";
    ctx.expected = str(world_size_, " x ", output.numel(), " ", c10::toString(output.scalar_type()), " values");
    ctx.got = str(input.numel(), " ", c10::toString(input.scalar_type()), " values");
    T4G_CHECK_CTX(input.numel() == output.numel() * world_size_ && input.scalar_type() == output.scalar_type(), ctx,
                  "NCCL reduce_scatter: input must hold world_size equal chunks of the output's dtype");
    at::Tensor in = input;
    c10d::ReduceScatterOptions opts;
    opts.reduceOp = to_c10d(op);
    return std::make_unique<NcclPending>(pg_->_reduce_scatter_base(output, in, opts));
  }

  void broadcast(torch::Tensor& tensor, int root) override {
    check_tensor(tensor, "broadcast");
    T4G_CHECK(root >= 0 && root < world_size_, "broadcast: root ", root, " is outside [0, ", world_size_, ")");
    std::vector<at::Tensor> tensors{tensor};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    pg_->broadcast(tensors, opts)->wait();
  }

  std::vector<torch::Tensor> all_gather(const torch::Tensor& tensor) override {
    check_tensor(tensor, "all_gather");
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int r = 0; r < world_size_; ++r) outputs[0].push_back(torch::empty_like(tensor));
    std::vector<at::Tensor> inputs{tensor};
    pg_->allgather(outputs, inputs)->wait();
    return outputs[0];
  }

  void barrier() override {
    T4G_CHECK(pg_, "NCCL communicator: barrier called after shutdown()");
    c10d::BarrierOptions opts;
    opts.device_ids = {local_rank_};
    opts.timeout = options_.timeout;
    pg_->barrier(opts)->wait();
  }

  void shutdown() override {
    if (!pg_) return;
    barrier();
    pg_->shutdown();
    pg_.reset();
  }

 private:
  void check_tensor(const torch::Tensor& tensor, const char* what) const {
    T4G_CHECK(pg_, "NCCL communicator: ", what, " called after shutdown()");
    ErrorContext ctx;
    ctx.expected = str("a contiguous tensor on ", device_.str());
    ctx.got = tensor.defined() ? str(tensor.device().str(), tensor.is_contiguous() ? "" : " (not contiguous)")
                               : "undefined";
    T4G_CHECK_CTX(tensor.defined() && tensor.device() == device_ && tensor.is_contiguous(), ctx, "NCCL ", what,
                  ": wrong tensor");
  }

  int rank_;
  int world_size_;
  int local_rank_;
  CommunicatorOptions options_;
  at::Device device_{at::kCPU};
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> pg_;
};

}  // namespace

bool nccl_communicator_built() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(const DistEnv& env, c10::intrusive_ptr<c10d::Store> store,
                                                     const CommunicatorOptions& options) {
  return std::make_unique<NcclCommunicator>(env, std::move(store), options);
}

#else

bool nccl_communicator_built() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(const DistEnv&, c10::intrusive_ptr<c10d::Store>,
                                                     const CommunicatorOptions&) {
  throw Error("this t4g build has no NCCL (configured without the wheel's nccl.h or USE_C10D_NCCL); use the store backend");
}

#endif

}  // namespace t4g
