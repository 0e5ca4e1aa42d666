// Parsing and validation of the worker environment; see train/dist_env.h.
#include "train/dist_env.h"

#include <cerrno>
#include <cstdlib>
#include <limits>

#include "common/error.h"

namespace t4g {
namespace {

constexpr const char* kVariableNames[] = {
    "RANK",        "LOCAL_RANK",  "WORLD_SIZE",                   "LOCAL_WORLD_SIZE",           "GROUP_RANK",
    "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_ERROR_FILE",
    nullptr};

const std::string* lookup(const std::map<std::string, std::string>& vars, const std::string& name) {
  const auto it = vars.find(name);
  return it == vars.end() ? nullptr : &it->second;
}

ErrorContext env_context(const std::string& name, const std::string& expected, const std::string& got) {
  ErrorContext ctx;
  ctx.key = "environment variable " + name;
  ctx.expected = expected;
  ctx.got = "'" + got + "'";
  return ctx;
}

// Whole-string integer in [lo, hi]; anything else (empty, "1x", overflow) is an error naming `name`.
int parse_int(const std::string& name, const std::string& text, long lo, long hi, const std::string& expected) {
  errno = 0;
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  const bool whole = !text.empty() && end != nullptr && *end == '\0';
  T4G_CHECK_CTX(whole && errno == 0 && value >= lo && value <= hi, env_context(name, expected, text),
                "invalid worker environment");
  return static_cast<int>(value);
}

int optional_int(const std::map<std::string, std::string>& vars, const std::string& name, int fallback, long lo,
                 long hi, const std::string& expected) {
  const std::string* text = lookup(vars, name);
  return text == nullptr ? fallback : parse_int(name, *text, lo, hi, expected);
}

bool parse_bool(const std::string& name, const std::string& text) {
  // torch compares with "True"; accept the other common spellings rather than silently reading false.
  if (text == "True" || text == "true" || text == "1") return true;
  if (text == "False" || text == "false" || text == "0" || text.empty()) return false;
  throw Error("invalid worker environment", env_context(name, "True or False", text));
}

}  // namespace

const char* const* dist_env_variable_names() { return kVariableNames; }

std::string error_file_from_env() noexcept {
  const char* path = std::getenv("TORCHELASTIC_ERROR_FILE");
  return path == nullptr ? std::string() : std::string(path);
}

DistEnv DistEnv::from_env() {
  std::map<std::string, std::string> vars;
  for (const char* const* name = kVariableNames; *name != nullptr; ++name) {
    if (const char* value = std::getenv(*name)) vars[*name] = value;
  }
  return from_map(vars);
}

DistEnv DistEnv::from_map(const std::map<std::string, std::string>& vars) {
  constexpr long kMaxInt = std::numeric_limits<int>::max();
  DistEnv env;
  const std::string* rank = lookup(vars, "RANK");
  const std::string* world = lookup(vars, "WORLD_SIZE");
  if (rank == nullptr && world == nullptr) {
    // Not launched: a single worker. Any other launcher variable on its own is a broken environment.
    for (const char* name : {"LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "TORCHELASTIC_USE_AGENT_STORE"}) {
      T4G_CHECK_CTX(lookup(vars, name) == nullptr, env_context(name, "unset unless RANK and WORLD_SIZE are set",
                                                               *lookup(vars, name)),
                    "invalid worker environment: ", name, " is set but RANK and WORLD_SIZE are not");
    }
  } else {
    T4G_CHECK_CTX(rank != nullptr, env_context("RANK", "set together with WORLD_SIZE", "unset"),
                  "invalid worker environment: WORLD_SIZE is set but RANK is not");
    T4G_CHECK_CTX(world != nullptr, env_context("WORLD_SIZE", "set together with RANK", "unset"),
                  "invalid worker environment: RANK is set but WORLD_SIZE is not");
    env.launched = true;
    env.world_size = parse_int("WORLD_SIZE", *world, 1, kMaxInt, "a positive integer");
    env.rank = parse_int("RANK", *rank, 0, kMaxInt, "an integer in [0, WORLD_SIZE)");
    T4G_CHECK_CTX(env.rank < env.world_size,
                  env_context("RANK", str("an integer in [0, ", env.world_size, ")"), *rank),
                  "invalid worker environment: RANK must be smaller than WORLD_SIZE");
    // Without LOCAL_* the job is taken to be one node (a hand-started process, for example).
    env.local_world_size = optional_int(vars, "LOCAL_WORLD_SIZE", env.world_size, 1, env.world_size,
                                        str("an integer in [1, WORLD_SIZE=", env.world_size, "]"));
    env.local_rank = optional_int(vars, "LOCAL_RANK", lookup(vars, "LOCAL_WORLD_SIZE") ? 0 : env.rank, 0,
                                  env.local_world_size - 1,
                                  str("an integer in [0, LOCAL_WORLD_SIZE=", env.local_world_size, ")"));
    T4G_CHECK_CTX(lookup(vars, "LOCAL_WORLD_SIZE") == nullptr || lookup(vars, "LOCAL_RANK") != nullptr,
                  env_context("LOCAL_RANK", "set when LOCAL_WORLD_SIZE is set", "unset"),
                  "invalid worker environment: LOCAL_WORLD_SIZE is set but LOCAL_RANK is not");
    env.group_rank = optional_int(vars, "GROUP_RANK", 0, 0, kMaxInt, "a non-negative integer");
    const std::string* addr = lookup(vars, "MASTER_ADDR");
    const std::string* port = lookup(vars, "MASTER_PORT");
    // torch's env:// rendezvous needs both even for one worker; so do we (the store is always used).
    T4G_CHECK_CTX(addr != nullptr && !addr->empty(), env_context("MASTER_ADDR", "a host name or address", addr ? *addr : "unset"),
                  "invalid worker environment: MASTER_ADDR is required when RANK is set");
    T4G_CHECK_CTX(port != nullptr, env_context("MASTER_PORT", "a port number", "unset"),
                  "invalid worker environment: MASTER_PORT is required when RANK is set");
    env.master_addr = *addr;
    env.master_port = parse_int("MASTER_PORT", *port, 1, 65535, "a port number in [1, 65535]");
    if (const std::string* agent = lookup(vars, "TORCHELASTIC_USE_AGENT_STORE")) {
      env.use_agent_store = parse_bool("TORCHELASTIC_USE_AGENT_STORE", *agent);
    }
  }
  env.restart_count = optional_int(vars, "TORCHELASTIC_RESTART_COUNT", 0, 0, kMaxInt, "a non-negative integer");
  if (const std::string* file = lookup(vars, "TORCHELASTIC_ERROR_FILE")) env.error_file = *file;
  return env;
}

std::string describe(const DistEnv& env) {
  if (!env.launched) return "single process (no RANK/WORLD_SIZE in the environment)";
  return str("rank ", env.rank, "/", env.world_size, " (local ", env.local_rank, "/", env.local_world_size, ", node ",
             env.group_rank, "), store ", env.master_addr, ":", env.master_port,
             env.use_agent_store ? " (hosted by the launcher)" : " (hosted by rank 0)", ", attempt ",
             env.restart_count);
}

}  // namespace t4g
