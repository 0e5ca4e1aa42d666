// Choosing a Communicator implementation; see train/communicator.h.
#include "train/communicator.h"

#include "common/error.h"
#include "common/log.h"
#include "train/nccl_communicator.h"
#include "train/store_communicator.h"

namespace t4g {

CommBackend parse_comm_backend(const std::string& text, const std::string& key) {
  if (text == "auto") return CommBackend::kAuto;
  if (text == "store") return CommBackend::kStore;
  if (text == "nccl") return CommBackend::kNccl;
  ErrorContext ctx;
  ctx.key = key;
  ctx.expected = "auto|store|nccl";
  ctx.got = text;
  throw Error("unknown communication backend", ctx);
}

CommBackend comm_backend_for(CommBackend requested, const torch::Device& model_device) {
  if (requested != CommBackend::kAuto) return requested;
  return model_device.is_cuda() ? CommBackend::kNccl : CommBackend::kStore;
}

std::unique_ptr<Communicator> make_communicator(const DistEnv& env, c10::intrusive_ptr<c10d::Store> store,
                                                const CommunicatorOptions& options) {
  CommBackend backend = options.backend;
  if (backend == CommBackend::kAuto) {
    backend = nccl_communicator_built() && torch::cuda::is_available() ? CommBackend::kNccl : CommBackend::kStore;
  }
  if (backend == CommBackend::kNccl) return make_nccl_communicator(env, std::move(store), options);
  StoreCommunicatorOptions store_options;
  store_options.timeout = options.timeout;
  store_options.name = options.name;
  return std::make_unique<StoreCommunicator>(std::move(store), env.rank, env.world_size, store_options);
}

}  // namespace t4g
