// Rendezvous: the c10d TCPStore every worker of a job shares, opened as torch's env:// does
// (research/distributed_and_style.md A.1.3): a client on every rank when the launcher hosts the
// store (TORCHELASTIC_USE_AGENT_STORE=True, torchrun and t4grun), else rank 0 hosts it. The store
// is wrapped in a PrefixStore "attempt_<restart count>" (keys become "attempt_<k>/<key>") so a
// restarted group never reads keys left by the previous attempt in a long-lived agent store.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>  // c10d::Store, c10::intrusive_ptr

#include <chrono>
#include <string>

#include "train/dist_env.h"

namespace t4g {

struct RendezvousOptions {
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(300)};  // wait this long for the store host and peers
  std::chrono::milliseconds store_timeout{std::chrono::seconds(300)};    // default timeout of blocking store calls
};

// Opens the job's store for `env` and returns it wrapped in PrefixStore("attempt_<k>").
// Not launched (single process): an in-process HashStore, so nothing listens on the network.
// Throws t4g::Error naming MASTER_ADDR:MASTER_PORT when the store cannot be reached in time.
c10::intrusive_ptr<c10d::Store> connect_store(const DistEnv& env, const RendezvousOptions& options = {});

// The PrefixStore prefix of one attempt: "attempt_<restart_count>" (PrefixStore adds the "/").
std::string attempt_prefix(int restart_count);

}  // namespace t4g
