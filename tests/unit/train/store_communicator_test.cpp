// The store Communicator with several ranks in one process (one thread and one TCPStore client
// per rank, the server standing in for t4grun's agent store): sums bit-identical on every rank,
// reduce-scatter equal to the all-reduce's chunk, the other collectives, key cleanup, bounded
// waits and the errors for mismatched calls. Also connect_store in both hosting modes and
// make_communicator's backend choice.
#include "train/store_communicator.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <exception>
#include <functional>
#include <thread>

#include "common/error.h"
#include "train/communicator.h"
#include "train/rendezvous.h"

namespace t4g {
namespace {

using Clock = std::chrono::steady_clock;

// A port nobody listens on right now (bind to 0, read it back, close).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// An agent-style store server (what t4grun hosts), on a free port.
c10::intrusive_ptr<c10d::TCPStore> agent_store() {
  c10d::TCPStoreOptions opts;
  opts.port = 0;
  opts.isServer = true;
  opts.waitWorkers = false;
  opts.multiTenant = true;
  opts.timeout = std::chrono::seconds(20);
  return c10::make_intrusive<c10d::TCPStore>("127.0.0.1", opts);
}

DistEnv worker_env(int rank, int world, int port, bool agent) {
  return DistEnv::from_map({{"RANK", std::to_string(rank)},
                            {"WORLD_SIZE", std::to_string(world)},
                            {"MASTER_ADDR", "127.0.0.1"},
                            {"MASTER_PORT", std::to_string(port)},
                            {"TORCHELASTIC_USE_AGENT_STORE", agent ? "True" : "False"}});
}

// Runs body(rank, store) on `world` threads, each with its own client of the store at `port`
// (connect_store, as a worker does); returns each rank's exception (null when it succeeded).
std::vector<std::exception_ptr> run_ranks(int world, int port, bool agent,
                                          const std::function<void(int, c10::intrusive_ptr<c10d::Store>)>& body) {
  std::vector<std::exception_ptr> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        RendezvousOptions rdzv;
        rdzv.connect_timeout = std::chrono::seconds(20);
        rdzv.store_timeout = std::chrono::seconds(20);
        body(r, connect_store(worker_env(r, world, port, agent), rdzv));
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

std::string message_of(const std::exception_ptr& e) {
  if (!e) return "";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
  return "?";
}

void expect_all_ok(const std::vector<std::exception_ptr>& errors) {
  for (size_t r = 0; r < errors.size(); ++r) EXPECT_FALSE(errors[r]) << "rank " << r << ": " << message_of(errors[r]);
}

// Magnitudes from 1 to 1e6 so that the sum depends on the order of the additions.
torch::Tensor rank_values(int rank, int64_t n = 513) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(77 + rank);
  return torch::randn({n}, gen, torch::kFloat) * std::pow(10.0, 3 * (rank % 3));
}

bool same_bytes(const torch::Tensor& a, const torch::Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) == 0;
}

StoreCommunicatorOptions fast_options(int timeout_ms = 20000) {
  StoreCommunicatorOptions o;
  o.timeout = std::chrono::milliseconds(timeout_ms);
  return o;
}

std::string testing_error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class StoreCommunicatorWorld : public ::testing::TestWithParam<int> {};

TEST_P(StoreCommunicatorWorld, SumIsBitIdenticalAndInRankOrder) {
  const int world = GetParam();
  auto server = agent_store();
  std::vector<torch::Tensor> results(world);
  expect_all_ok(run_ranks(world, server->getPort(), true, [&](int rank, auto store) {
    StoreCommunicator comm(store, rank, world, fast_options());
    EXPECT_EQ(comm.world_size(), world);
    EXPECT_EQ(comm.rank(), rank);
    torch::Tensor t = rank_values(rank);
    comm.all_reduce(t, ReduceOp::kSum);
    results[rank] = t;
    comm.shutdown();
  }));
  torch::Tensor forward = rank_values(0);
  for (int r = 1; r < world; ++r) forward.add_(rank_values(r));
  torch::Tensor backward = rank_values(world - 1);
  for (int r = world - 2; r >= 0; --r) backward.add_(rank_values(r));
  // Precondition that makes the test meaningful: with 3 ranks another order gives other bits
  // (with 2, a + b == b + a exactly, and only the identity across ranks is tested).
  if (world >= 3) {
    ASSERT_FALSE(same_bytes(forward, backward));
  }
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(results[r].defined()) << "rank " << r;
    // Tolerance: none. Every rank holds exactly the rank-order sum.
    EXPECT_TRUE(same_bytes(results[r], forward)) << "rank " << r;
  }
}

TEST_P(StoreCommunicatorWorld, AverageBroadcastGatherBarrier) {
  const int world = GetParam();
  auto server = agent_store();
  expect_all_ok(run_ranks(world, server->getPort(), true, [&](int rank, auto store) {
    StoreCommunicator comm(store, rank, world, fast_options());
    // Mean of 1..world: exact in float32 for these sizes (tolerance 0).
    torch::Tensor avg = torch::full({2, 3}, static_cast<float>(rank + 1));
    comm.all_reduce(avg, ReduceOp::kAvg);
    EXPECT_TRUE(torch::equal(avg, torch::full({2, 3}, (world + 1) / 2.0f)));
    // Integer sums are exact.
    torch::Tensor count = torch::tensor({int64_t{1}, int64_t{rank}});
    comm.all_reduce(count);
    EXPECT_EQ(count[0].item<int64_t>(), world);
    EXPECT_EQ(count[1].item<int64_t>(), world * (world - 1) / 2);
    // Half precision accumulates in float32 and rounds once: 2049 + 1 + ... rounds the same everywhere.
    torch::Tensor half = torch::full({4}, rank == 0 ? 2048.0 : 1.0, torch::kHalf);
    comm.all_reduce(half);
    EXPECT_EQ(half.scalar_type(), torch::kHalf);
    EXPECT_TRUE(torch::equal(half, torch::full({4}, 2048.0 + (world - 1), torch::kFloat).to(torch::kHalf)));
    // Broadcast from the last rank, non-contiguous receive buffer included.
    const int root = world - 1;
    torch::Tensor b = rank == root ? torch::arange(6, torch::kFloat).view({2, 3}) : torch::zeros({3, 2}).t();
    comm.broadcast(b, root);
    EXPECT_TRUE(torch::equal(b, torch::arange(6, torch::kFloat).view({2, 3})));
    // All-gather keeps rank order.
    const auto all = comm.all_gather(torch::full({3}, static_cast<int64_t>(rank * 10), torch::kLong));
    ASSERT_EQ(static_cast<int>(all.size()), world);
    for (int r = 0; r < world; ++r) EXPECT_TRUE(torch::equal(all[r], torch::full({3}, int64_t{r * 10})));
    comm.barrier();
    comm.shutdown();
    comm.shutdown();  // idempotent
  }));
}

// Reduce-scatter hands each rank exactly its chunk of what all_reduce gives (tolerance 0: the
// same rank-order sum), for sum, mean and bfloat16 (accumulated in float32, rounded once).
TEST_P(StoreCommunicatorWorld, ReduceScatterIsTheAllReducesChunk) {
  const int world = GetParam();
  const int64_t n = 37;
  auto server = agent_store();
  expect_all_ok(run_ranks(world, server->getPort(), true, [&](int rank, auto store) {
    StoreCommunicator comm(store, rank, world, fast_options());
    for (const ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg}) {
      for (const torch::ScalarType dtype : {torch::kFloat, torch::kBFloat16}) {
        const torch::Tensor input = rank_values(rank, world * n).to(dtype);
        torch::Tensor whole = input.clone();
        comm.all_reduce(whole, op);
        torch::Tensor mine = torch::full({n}, -1.0, dtype);
        comm.reduce_scatter(input, mine, op);
        const torch::Tensor expected = whole.narrow(0, rank * n, n).contiguous();
        EXPECT_TRUE(same_bytes(mine, expected)) << "rank " << rank << " " << c10::toString(dtype);
        // The input is left as it was.
        EXPECT_TRUE(same_bytes(input, rank_values(rank, world * n).to(dtype)));
      }
    }
    // The async form (complete at once on the store) and a non-1-D input of the right size.
    torch::Tensor out = torch::zeros({2});
    comm.reduce_scatter_async(torch::ones({world, 2}), out, ReduceOp::kSum)->wait();
    EXPECT_TRUE(torch::equal(out, torch::full({2}, static_cast<float>(world))));
    comm.shutdown();
  }));
  for (const std::string& k : server->listKeys()) EXPECT_EQ(k.find("default_pg"), std::string::npos) << k;
}

INSTANTIATE_TEST_SUITE_P(World, StoreCommunicatorWorld, ::testing::Values(2, 3));

TEST(StoreCommunicator, ReduceScatterRejectsUnevenInputNamingIt) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  StoreCommunicator two(store, 0, 2, fast_options(1000));
  torch::Tensor out = torch::zeros({3});
  const std::string message = testing_error_of([&] { two.reduce_scatter(torch::ones({7}), out); });
  EXPECT_NE(message.find("reduce_scatter input"), std::string::npos) << message;
  EXPECT_NE(message.find("expected 2 x 3 Float values"), std::string::npos) << message;
  torch::Tensor ints = torch::zeros({3}, torch::kLong);
  EXPECT_THROW(two.reduce_scatter(torch::ones({6}, torch::kLong), ints, ReduceOp::kAvg), Error);
}

TEST(StoreCommunicator, LeavesNoKeysBehind) {
  const int world = 3;
  auto server = agent_store();
  const auto before = server->listKeys().size();
  expect_all_ok(run_ranks(world, server->getPort(), true, [&](int rank, auto store) {
    StoreCommunicator comm(store, rank, world, fast_options());
    for (int i = 0; i < 20; ++i) {
      torch::Tensor t = torch::ones({8});
      comm.all_reduce(t);
      comm.broadcast(t, i % world);
      comm.all_gather(t);
      comm.barrier();
    }
    comm.shutdown();
  }));
  std::string leftover;
  for (const std::string& k : server->listKeys()) {
    if (k.find("default_pg") != std::string::npos) leftover += k + " ";
  }
  EXPECT_EQ(leftover, "") << "keys before: " << before;
}

// The libuv TCPStore refuses messages over 8 MiB: a 12 MB tensor must travel in chunks.
TEST(StoreCommunicator, LargeTensorsTravelInChunks) {
  const int world = 2;
  const int64_t n = 3 * 1000 * 1000;  // 12 MB of float32
  auto server = agent_store();
  std::vector<torch::Tensor> sums(world), received(world);
  expect_all_ok(run_ranks(world, server->getPort(), true, [&](int rank, auto store) {
    StoreCommunicator comm(store, rank, world, fast_options(60000));
    torch::Tensor t = rank_values(rank, n);
    comm.all_reduce(t);
    sums[rank] = t;
    torch::Tensor b = rank == 1 ? rank_values(5, n) : torch::zeros({n});
    comm.broadcast(b, 1);
    received[rank] = b;
    comm.shutdown();
  }));
  const torch::Tensor expected = rank_values(0, n) + rank_values(1, n);
  for (int r = 0; r < world; ++r) {
    EXPECT_TRUE(same_bytes(sums[r], expected)) << "rank " << r;  // tolerance 0
    EXPECT_TRUE(same_bytes(received[r], rank_values(5, n))) << "rank " << r;
  }
  for (const std::string& k : server->listKeys()) EXPECT_EQ(k.find("default_pg"), std::string::npos) << k;
}

TEST(StoreCommunicator, MissingPeerTimesOutNamingIt) {
  auto server = agent_store();
  const int port = server->getPort();
  const auto start = Clock::now();
  std::string message;
  try {
    RendezvousOptions rdzv;
    rdzv.connect_timeout = std::chrono::seconds(10);
    StoreCommunicator comm(connect_store(worker_env(0, 2, port, true), rdzv), 0, 2, fast_options(400));
    torch::Tensor t = torch::ones({4});
    comm.all_reduce(t);
  } catch (const Error& e) {
    message = e.what();
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_NE(message.find("timed out after 400 ms"), std::string::npos) << message;
  EXPECT_NE(message.find("rank(s) 1"), std::string::npos) << message;
  EXPECT_GE(seconds, 0.35);
  EXPECT_LT(seconds, 10.0);
}

TEST(StoreCommunicator, MismatchedShapesFailOnEveryRank) {
  auto server = agent_store();
  const auto errors = run_ranks(2, server->getPort(), true, [&](int rank, auto store) {
    StoreCommunicator comm(store, rank, 2, fast_options(5000));
    torch::Tensor t = torch::ones({rank == 0 ? 3 : 4});
    comm.all_reduce(t);
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(message_of(errors[r]).find("same dtype and shape"), std::string::npos) << message_of(errors[r]);
  }
}

TEST(StoreCommunicator, DifferentCollectivesFailOnEveryRank) {
  auto server = agent_store();
  const auto errors = run_ranks(2, server->getPort(), true, [&](int rank, auto store) {
    StoreCommunicator comm(store, rank, 2, fast_options(5000));
    if (rank == 0) {
      comm.barrier();
    } else {
      torch::Tensor t = torch::ones({2});
      comm.all_reduce(t);
    }
  });
  EXPECT_NE(message_of(errors[0]).find("rank 1 called all_reduce while rank 0 called barrier"), std::string::npos)
      << message_of(errors[0]);
  EXPECT_NE(message_of(errors[1]).find("rank 0 called barrier while rank 1 called all_reduce"), std::string::npos)
      << message_of(errors[1]);
}

TEST(StoreCommunicator, RejectsBadArguments) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  EXPECT_THROW(StoreCommunicator(store, 2, 2), Error);
  EXPECT_THROW(StoreCommunicator(store, 0, 0), Error);
  StoreCommunicator one(store, 0, 1, fast_options());
  torch::Tensor ints = torch::ones({2}, torch::kLong);
  EXPECT_THROW(one.all_reduce(ints, ReduceOp::kAvg), Error);
  torch::Tensor f = torch::ones({2});
  EXPECT_THROW(one.broadcast(f, 1), Error);
  one.all_reduce(f);  // world size 1: a copy of itself
  EXPECT_TRUE(torch::equal(f, torch::ones({2})));
  one.shutdown();
  EXPECT_THROW(one.all_reduce(f), Error);
}

TEST(Rendezvous, RankZeroHostsWithoutAgentStore) {
  const int port = free_port();
  std::vector<std::string> seen(2);
  expect_all_ok(run_ranks(2, port, /*agent=*/false, [&](int rank, auto store) {
    StoreCommunicator comm(store, rank, 2, fast_options());
    torch::Tensor t = torch::full({1}, static_cast<float>(rank + 1));
    comm.all_reduce(t);
    seen[rank] = std::to_string(t.item<float>());
    comm.shutdown();  // rank 0 (the host) waits for rank 1's last request
  }));
  EXPECT_EQ(seen[0], std::to_string(3.0f));
  EXPECT_EQ(seen[1], std::to_string(3.0f));
}

TEST(Rendezvous, KeysArePrefixedPerAttempt) {
  auto server = agent_store();
  DistEnv env = worker_env(0, 1, server->getPort(), true);
  env.restart_count = 3;
  auto store = connect_store(env);
  store->set("probe", std::vector<uint8_t>{1});
  EXPECT_TRUE(server->check({"attempt_3/probe"}));
  EXPECT_FALSE(server->check({"probe"}));
  EXPECT_EQ(attempt_prefix(0), "attempt_0");
}

TEST(Rendezvous, UnreachableStoreNamesTheAddress) {
  const int port = free_port();
  RendezvousOptions rdzv;
  rdzv.connect_timeout = std::chrono::milliseconds(500);
  try {
    connect_store(worker_env(1, 2, port, true), rdzv);
    FAIL() << "connected to nothing";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("MASTER_ADDR:MASTER_PORT=127.0.0.1:" + std::to_string(port)),
              std::string::npos)
        << e.what();
  }
}

TEST(Rendezvous, SingleProcessNeedsNoNetwork) {
  auto store = connect_store(DistEnv::from_map({}));
  auto comm = make_communicator(DistEnv::from_map({}), store, {});
  // auto picks NCCL where CUDA is available: the tensor lives where the backend works.
  const torch::Device device = comm->backend_name() == "nccl" ? torch::Device(torch::kCUDA, 0) : torch::kCPU;
  torch::Tensor t = torch::ones({3}, device);
  comm->all_reduce(t);
  comm->barrier();
  comm->shutdown();
  EXPECT_TRUE(torch::equal(t.cpu(), torch::ones({3})));
}

TEST(MakeCommunicator, ChoosesTheBackend) {
  EXPECT_EQ(parse_comm_backend("nccl"), CommBackend::kNccl);
  EXPECT_EQ(parse_comm_backend("store"), CommBackend::kStore);
  EXPECT_EQ(parse_comm_backend("auto"), CommBackend::kAuto);
  try {
    parse_comm_backend("gloo", "train.dist_backend");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.dist_backend"), std::string::npos);
  }
  const DistEnv env = DistEnv::from_map({});
  CommunicatorOptions store_options;
  store_options.backend = CommBackend::kStore;
  EXPECT_EQ(make_communicator(env, c10::make_intrusive<c10d::HashStore>(), store_options)->backend_name(), "store");
  CommunicatorOptions auto_options;
  const auto chosen = make_communicator(env, c10::make_intrusive<c10d::HashStore>(), auto_options);
  EXPECT_EQ(chosen->backend_name(), torch::cuda::is_available() ? "nccl" : "store");
  chosen->shutdown();
}

// NCCL with world size 1 runs where a GPU is present (the GPU machines); without one, asking for
// NCCL must fail with an error that names LOCAL_RANK (or says the build has no NCCL).
TEST(MakeCommunicator, NcclWorldSizeOneOrClearError) {
  const DistEnv env = DistEnv::from_map({});
  CommunicatorOptions options;
  options.backend = CommBackend::kNccl;
  options.timeout = std::chrono::seconds(60);
  if (!torch::cuda::is_available()) {
    try {
      make_communicator(env, c10::make_intrusive<c10d::HashStore>(), options);
      FAIL() << "NCCL communicator without a GPU";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_TRUE(m.find("LOCAL_RANK") != std::string::npos || m.find("no NCCL") != std::string::npos) << m;
    }
    return;
  }
  auto comm = make_communicator(env, c10::make_intrusive<c10d::HashStore>(), options);
  EXPECT_EQ(comm->backend_name(), "nccl");
  torch::Tensor t = torch::arange(4, torch::TensorOptions().dtype(torch::kFloat).device(torch::kCUDA, 0));
  comm->all_reduce(t, ReduceOp::kAvg);
  comm->broadcast(t, 0);
  const auto all = comm->all_gather(t);
  torch::Tensor scattered = torch::zeros_like(t);
  comm->reduce_scatter(t, scattered, ReduceOp::kAvg);
  comm->barrier();
  comm->shutdown();
  EXPECT_TRUE(torch::equal(scattered.cpu(), torch::arange(4, torch::kFloat)));  // one rank: its whole input
  ASSERT_EQ(all.size(), 1u);
  EXPECT_TRUE(torch::equal(t.cpu(), torch::arange(4, torch::kFloat)));  // tolerance 0: identity for one rank
  EXPECT_TRUE(torch::equal(all[0].cpu(), torch::arange(4, torch::kFloat)));
}

}  // namespace
}  // namespace t4g
