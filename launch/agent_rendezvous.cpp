// The agent-hosted store and the static multi-node rendezvous; see launch/agent_rendezvous.h.
#include "launch/agent_rendezvous.h"

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <thread>

#include "common/error.h"
#include "common/log.h"

namespace t4g::launch {
namespace {

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

std::vector<uint8_t> bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }
std::string text(const std::vector<uint8_t>& b) { return std::string(b.begin(), b.end()); }

}  // namespace

AgentRendezvous::AgentRendezvous(const LauncherOptions& options) : options_(options) {
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<std::uint16_t>(options.master_port);
  opts.isServer = options.node_rank == 0;
  opts.waitWorkers = false;  // workers connect later, attempt after attempt
  opts.multiTenant = true;
  opts.timeout = to_ms(options.rendezvous_timeout_s);
  try {
    auto tcp = c10::make_intrusive<c10d::TCPStore>(options.master_addr, opts);
    port_ = tcp->getPort();
    tcp_ = tcp;
  } catch (const c10::Error& e) {
    ErrorContext ctx;
    ctx.key = str("--master-addr/--master-port ", options.master_addr, ":", options.master_port);
    throw Error(str(opts.isServer ? "cannot host the rendezvous store" : "cannot reach node 0's rendezvous store",
                    " (node ", options.node_rank, " of ", options.nnodes, "): ", first_line(e.what_without_backtrace())),
                ctx);
  }
  store_ = c10::make_intrusive<c10d::PrefixStore>("t4grun/" + options.run_id, tcp_);
  // All agents must agree on the restart budget, or they would fall out of step.
  const std::string mine = std::to_string(options.max_restarts);
  if (options.node_rank == 0) {
    store_->set("max_restarts", bytes(mine));
  } else {
    store_->wait({"max_restarts"}, to_ms(options.rendezvous_timeout_s));
    const std::string theirs = text(store_->get("max_restarts"));
    ErrorContext ctx;
    ctx.key = "--max-restarts";
    ctx.expected = theirs + " (node 0's value)";
    ctx.got = mine;
    T4G_CHECK_CTX(theirs == mine, ctx, "all nodes must be started with the same --max-restarts");
  }
}

AgentRendezvous::~AgentRendezvous() = default;

std::string AgentRendezvous::key(int attempt, const std::string& leaf) const {
  return str("attempt_", attempt, "/", leaf);
}

bool AgentRendezvous::wait_keys(const std::vector<std::string>& keys, const std::vector<int>& nodes,
                                const std::string& what, const std::function<bool()>& interrupted) {
  const auto deadline = std::chrono::steady_clock::now() + to_ms(options_.rendezvous_timeout_s);
  for (;;) {
    if (store_->check(keys)) return true;
    if (interrupted && interrupted()) return false;
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string missing;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!store_->check({keys[i]})) missing += str(missing.empty() ? "" : ", ", nodes[i]);
  }
  throw Error(str(what, " timed out after ", options_.rendezvous_timeout_s, " s (--rdzv-timeout) waiting for node(s) ",
                  missing, " of ", options_.nnodes,
                  " (are they started, with the same --nnodes, --master-addr and --master-port?)"));
}

std::optional<Assignment> AgentRendezvous::join(int attempt, const std::function<bool()>& interrupted) {
  store_->set(key(attempt, str("nproc/", options_.node_rank)), bytes(std::to_string(options_.nproc_per_node)));
  std::vector<std::string> keys;
  std::vector<int> nodes;
  for (int n = 0; n < options_.nnodes; ++n) {
    keys.push_back(key(attempt, str("nproc/", n)));
    nodes.push_back(n);
  }
  if (!wait_keys(keys, nodes, str("rendezvous of attempt ", attempt), interrupted)) return std::nullopt;
  Assignment a;
  const auto values = store_->multiGet(keys);
  for (int n = 0; n < options_.nnodes; ++n) {
    const int nproc = std::stoi(text(values[n]));
    if (n < options_.node_rank) a.rank_offset += nproc;
    a.world_size += nproc;
  }
  return a;
}

void AgentRendezvous::report_failure(int attempt, const std::string& what) {
  const std::string k = key(attempt, "failed");
  // compareSet with an empty expected value sets only when absent: the first failure stays.
  store_->compareSet(k, std::vector<uint8_t>{}, bytes(what));
}

std::optional<std::string> AgentRendezvous::reported_failure(int attempt) {
  const std::string k = key(attempt, "failed");
  if (!store_->check({k})) return std::nullopt;
  return text(store_->get(k));
}

ExitVote AgentRendezvous::exit_barrier(int attempt, double poll_s, const std::function<bool()>& interrupted) {
  store_->set(key(attempt, str("done/", options_.node_rank)), bytes("1"));
  std::vector<std::string> keys;
  for (int n = 0; n < options_.nnodes; ++n) keys.push_back(key(attempt, str("done/", n)));
  const auto deadline = std::chrono::steady_clock::now() + to_ms(options_.rendezvous_timeout_s);
  for (;;) {
    if (store_->check(keys)) return ExitVote::kAllSucceeded;
    if (reported_failure(attempt)) return ExitVote::kPeerFailed;
    if (interrupted()) return ExitVote::kInterrupted;
    if (std::chrono::steady_clock::now() >= deadline) {
      throw Error(str("exit barrier of attempt ", attempt, " timed out after ", options_.rendezvous_timeout_s,
                      " s: this node's workers succeeded but other nodes neither finished nor failed"));
    }
    std::this_thread::sleep_for(to_ms(poll_s));
  }
}

void AgentRendezvous::leave(const std::function<bool()>& interrupted) {
  if (left_) return;
  left_ = true;
  try {
    if (options_.node_rank != 0) {
      store_->set(str("left/", options_.node_rank), bytes("1"));
      return;
    }
    std::vector<std::string> keys;
    std::vector<int> nodes;
    for (int n = 1; n < options_.nnodes; ++n) {
      keys.push_back(str("left/", n));
      nodes.push_back(n);
    }
    if (!keys.empty()) wait_keys(keys, nodes, "waiting for the other nodes to finish", interrupted);
  } catch (const std::exception& e) {
    // The job's outcome is decided; a node that vanished must not change the exit status.
    T4G_WARN("t4grun: leaving the rendezvous: ", first_line(e.what()));
  }
}

}  // namespace t4g::launch
