// Opening the job's TCPStore; see train/rendezvous.h.
#include "train/rendezvous.h"

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "common/error.h"
#include "common/log.h"

namespace t4g {

std::string attempt_prefix(int restart_count) { return str("attempt_", restart_count); }

c10::intrusive_ptr<c10d::Store> connect_store(const DistEnv& env, const RendezvousOptions& options) {
  c10::intrusive_ptr<c10d::Store> store;
  if (!env.launched) {
    store = c10::make_intrusive<c10d::HashStore>();
    store->setTimeout(options.store_timeout);
  } else {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(env.master_port);
    opts.isServer = !env.use_agent_store && env.rank == 0;
    // Like torch's _create_c10d_store: the host waits for all ranks when it owns the store; under
    // an agent store the workers are plain clients and nobody counts them.
    opts.numWorkers = env.use_agent_store ? std::nullopt : std::optional<std::size_t>(env.world_size);
    opts.waitWorkers = !env.use_agent_store;
    opts.multiTenant = true;
    opts.timeout = options.connect_timeout;
    try {
      store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, opts);
    } catch (const c10::Error& e) {
      ErrorContext ctx;
      ctx.key = str("MASTER_ADDR:MASTER_PORT=", env.master_addr, ":", env.master_port);
      throw Error(str("cannot open the rendezvous store as ", opts.isServer ? "host" : "client", " (",
                      describe(env), ") within ", options.connect_timeout.count(), " ms: ",
                      e.what_without_backtrace()),
                  ctx);
    }
    store->setTimeout(options.store_timeout);
    T4G_DEBUG("rendezvous store open: ", describe(env));
  }
  return c10::make_intrusive<c10d::PrefixStore>(attempt_prefix(env.restart_count), store);
}

}  // namespace t4g
