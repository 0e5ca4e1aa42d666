// SLURM variables to t4grun settings; see launch/slurm.h.
#include "launch/slurm.h"

#include "common/error.h"

namespace t4g::launch {
namespace {

const std::string* find(const std::map<std::string, std::string>& env, const char* name) {
  const auto it = env.find(name);
  return it == env.end() || it->second.empty() ? nullptr : &it->second;
}

int to_int(const std::string& name, const std::string& text) {
  try {
    size_t used = 0;
    const int v = std::stoi(text, &used);
    if (used == text.size() && v >= 0) return v;
  } catch (const std::exception&) {
  }
  ErrorContext ctx;
  ctx.key = "environment variable " + name;
  ctx.expected = "a non-negative integer";
  ctx.got = "'" + text + "'";
  throw Error("--slurm: bad SLURM variable", ctx);
}

Error missing(const std::string& names) {
  ErrorContext ctx;
  ctx.key = names;
  ctx.expected = "set by srun";
  ctx.got = "unset";
  return Error("--slurm: not running under srun (or give the value with its flag)", ctx);
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // The first entry ends at a comma outside brackets.
  size_t end = 0;
  int depth = 0;
  for (; end < nodelist.size(); ++end) {
    if (nodelist[end] == '[') ++depth;
    if (nodelist[end] == ']') --depth;
    if (nodelist[end] == ',' && depth == 0) break;
  }
  const std::string entry = nodelist.substr(0, end);
  const size_t open = entry.find('[');
  if (open == std::string::npos) return entry;
  const size_t close = entry.find(']', open);
  T4G_CHECK(close != std::string::npos, "--slurm: malformed SLURM host list '", nodelist, "'");
  const std::string ranges = entry.substr(open + 1, close - open - 1);
  const std::string first = ranges.substr(0, ranges.find_first_of(",-"));
  return entry.substr(0, open) + first + entry.substr(close + 1);
}

void apply_slurm(LauncherOptions& o, const std::map<std::string, std::string>& env, const ExplicitSettings& given) {
  if (!given.nnodes) {
    const std::string* n = find(env, "SLURM_STEP_NUM_NODES");
    const char* name = "SLURM_STEP_NUM_NODES";
    if (n == nullptr) {
      n = find(env, "SLURM_NNODES");
      name = "SLURM_NNODES";
    }
    if (n == nullptr) throw missing("SLURM_STEP_NUM_NODES/SLURM_NNODES");
    o.nnodes = to_int(name, *n);
  }
  if (!given.node_rank) {
    const std::string* r = find(env, "SLURM_NODEID");
    if (r == nullptr) throw missing("SLURM_NODEID");
    o.node_rank = to_int("SLURM_NODEID", *r);
  }
  if (!given.master_addr) {
    const std::string* list = find(env, "SLURM_STEP_NODELIST");
    if (list == nullptr) list = find(env, "SLURM_JOB_NODELIST");
    if (list == nullptr) throw missing("SLURM_STEP_NODELIST/SLURM_JOB_NODELIST");
    o.master_addr = first_slurm_host(*list);
  }
  if (!given.run_id) {
    if (const std::string* job = find(env, "SLURM_JOB_ID")) o.run_id = *job;
  }
}

}  // namespace t4g::launch
