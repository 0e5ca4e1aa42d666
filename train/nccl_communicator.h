// The GPU Communicator: c10d::ProcessGroupNCCL, one process per GPU (research/distributed_and_style.md
// A.2.4 and A.3): the CUDA device (LOCAL_RANK) is bound before the process group exists, barriers
// name that device, and shutdown() runs on every rank after a final barrier. Compiled only when the
// build has NCCL (T4G_HAVE_NCCL and the wheel's USE_C10D_NCCL); otherwise the factory says so.
#pragma once

#include <memory>

#include "train/communicator.h"

namespace t4g {

// True when this build contains the NCCL communicator.
bool nccl_communicator_built();

// Sets the CUDA device to env.local_rank, creates the NCCL process group over
// PrefixStore(options.name, store) and, with options.nccl_eager_init, connects now.
// Throws t4g::Error when the build has no NCCL or LOCAL_RANK names no visible GPU.
std::unique_ptr<Communicator> make_nccl_communicator(const DistEnv& env, c10::intrusive_ptr<c10d::Store> store,
                                                     const CommunicatorOptions& options);

}  // namespace t4g
