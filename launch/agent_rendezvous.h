// The store t4grun hosts for its workers, and the static rendezvous of the t4grun agents of a
// multi-node job through it (research/distributed_and_style.md A.1.3 and A.1.7 option (a)): node 0
// runs the c10d TCPStore server that outlives worker restarts; every agent is also a client and,
// per attempt, announces its worker count, learns its rank offset, and publishes or sees a
// failure so all nodes stop and restart together. Worker keys live under "attempt_<k>/",
// agent keys under "t4grun/".
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>  // c10d::Store, c10::intrusive_ptr

#include <functional>
#include <optional>
#include <string>

#include "launch/launcher_options.h"

namespace t4g::launch {

// Where this node's workers sit in the job for one attempt.
struct Assignment {
  int rank_offset = 0;  // global rank of local rank 0 (workers of lower node ranks come first)
  int world_size = 0;   // workers on all nodes
};

// The outcome of the exit barrier after this node's workers all succeeded.
enum class ExitVote { kAllSucceeded, kPeerFailed, kInterrupted };

class AgentRendezvous {
 public:
  // Node 0 starts the store server (port 0 picks a free port); the others connect, retrying for
  // up to --rdzv-timeout. Throws t4g::Error naming --master-addr/--master-port on failure.
  explicit AgentRendezvous(const LauncherOptions& options);
  ~AgentRendezvous();

  // The store's actual port (the free port chosen for --standalone).
  int port() const { return port_; }

  // Announces this node for `attempt` and waits (bounded) for all nodes. Returns nullopt when
  // `interrupted()` (checked every 50 ms) returns true first. Throws t4g::Error naming the
  // missing node ranks on timeout.
  std::optional<Assignment> join(int attempt, const std::function<bool()>& interrupted);
  // Marks `attempt` failed for every node; `what` says who failed (the first writer wins).
  void report_failure(int attempt, const std::string& what);
  // The failure another node reported for `attempt`, if any (one store round trip).
  std::optional<std::string> reported_failure(int attempt);
  // Records this node's success and waits until every node succeeded, one failed, or
  // `interrupted()` returns true (checked each `poll_s`). Bounded by --rdzv-timeout.
  ExitVote exit_barrier(int attempt, double poll_s, const std::function<bool()>& interrupted);
  // The last call: node 0 waits (bounded, interruptible) for the other agents to leave before its
  // store server goes away; the others announce that they leave.
  void leave(const std::function<bool()>& interrupted);

 private:
  std::string key(int attempt, const std::string& leaf) const;
  // Polls until every key exists (true), `interrupted()` (false) or the rendezvous timeout (throws
  // t4g::Error: `what`, and the indices of the keys still missing, as node ranks).
  bool wait_keys(const std::vector<std::string>& keys, const std::vector<int>& nodes, const std::string& what,
                 const std::function<bool()>& interrupted);

  LauncherOptions options_;
  c10::intrusive_ptr<c10d::Store> store_;  // PrefixStore("t4grun/") over the TCPStore
  c10::intrusive_ptr<c10d::Store> tcp_;    // the TCPStore itself (server on node 0)
  int port_ = 0;
  bool left_ = false;
};

}  // namespace t4g::launch
