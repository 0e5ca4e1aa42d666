// Root cause and failure summary; see launch/failure_report.h.
#include "launch/failure_report.h"

#include <cmath>
#include <ctime>
#include <sstream>
#include <tuple>

#include "common/error.h"
#include "launch/launcher_options.h"

namespace t4g::launch {
namespace {

std::string format_time(double unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string indent(const std::string& text, const std::string& pad, size_t max_lines) {
  std::istringstream in(text);
  std::string line, out;
  size_t n = 0;
  while (std::getline(in, line)) {
    if (n++ == max_lines) {
      out += pad + "...\n";
      break;
    }
    out += pad + line + "\n";
  }
  return out;
}

}  // namespace

ErrorRecords read_error_records(const std::vector<WorkerState>& workers) {
  ErrorRecords records;
  for (const WorkerState& w : workers) {
    if (!w.failed() || w.error_file.empty()) continue;
    if (auto record = read_error_file(w.error_file)) records[w.rank] = *record;
  }
  return records;
}

std::optional<size_t> root_cause(const std::vector<WorkerState>& workers, const ErrorRecords& records) {
  std::optional<size_t> best;
  std::tuple<bool, double, double> best_key;
  for (size_t i = 0; i < workers.size(); ++i) {
    const WorkerState& w = workers[i];
    if (!w.failed()) continue;
    const auto it = records.find(w.rank);
    const bool has_stamp = it != records.end() && it->second.timestamp > 0;
    const double when = has_stamp ? static_cast<double>(it->second.timestamp) : std::floor(w.exit_time);
    const auto key = std::make_tuple(w.stopped_by_launcher, when, w.exit_time);
    if (!best || key < best_key) {
      best = i;
      best_key = key;
    }
  }
  return best;
}

std::string describe_exit(const WorkerState& w) {
  if (w.running) return "still running";
  if (w.term_signal != 0) return str("signal ", signal_name(w.term_signal), " (", w.term_signal, ")");
  return str("exit code ", w.exit_code);
}

std::string describe_root_cause(const std::vector<WorkerState>& workers, const ErrorRecords& records) {
  const auto first = root_cause(workers, records);
  if (!first) return "no worker failed";
  const WorkerState& w = workers[*first];
  std::string text = str("rank ", w.rank, " ended with ", describe_exit(w));
  const auto it = records.find(w.rank);
  if (it != records.end() && !it->second.message.empty()) text += ": " + it->second.message;
  return text;
}

std::string format_failure_report(const std::vector<WorkerState>& workers, const ErrorRecords& records,
                                  const FailureContext& c) {
  std::ostringstream out;
  out << (c.signal != 0 ? "t4grun: the worker group was stopped by " + signal_name(c.signal)
                        : std::string("t4grun: the worker group failed"));
  if (c.nnodes > 1) out << " (node " << c.node_rank << " of " << c.nnodes << ")";
  out << " on attempt " << c.attempt << " (" << c.attempt << " of " << c.max_restarts << " restarts used)\n";
  if (c.signal != 0) out << "  t4grun received " << signal_name(c.signal) << " and forwarded it to the workers\n";
  if (!c.peer_failure.empty()) out << "  stopped because of a failure on another node: " << c.peer_failure << "\n";
  // A worker that t4grun had already signalled is a consequence, not a cause: when every failure
  // is one (a signal to t4grun, a failure on another node) there is no local root cause.
  const std::optional<size_t> cause = root_cause(workers, records);
  const long first = cause && !workers[*cause].stopped_by_launcher ? static_cast<long>(*cause) : -1;
  if (first >= 0) {
    const WorkerState& w = workers[first];
    const auto it = records.find(w.rank);
    const bool has_record = it != records.end();
    out << "  root cause (first failure): rank " << w.rank << " (local rank " << w.local_rank << ", node "
        << c.node_rank << ", pid " << w.pid << ")\n";
    out << "    " << describe_exit(w) << "\n";
    if (has_record && it->second.timestamp > 0) {
      out << "    time: " << format_time(static_cast<double>(it->second.timestamp)) << " (from the error file)\n";
    } else {
      out << "    time: " << format_time(w.exit_time) << " (seen by t4grun)\n";
    }
    if (!w.error_file.empty()) {
      out << "    error file: " << w.error_file << (has_record ? "" : " (not written)") << "\n";
    }
    if (has_record && !it->second.message.empty()) out << "    message: " << it->second.message << "\n";
    if (has_record && !it->second.details.empty()) {
      out << "    details:\n" << indent(it->second.details, "      ", 20);
    }
  }
  for (size_t i = 0; i < workers.size(); ++i) {
    if (static_cast<long>(i) == first) continue;
    const WorkerState& w = workers[i];
    out << "  rank " << w.rank << ": " << describe_exit(w);
    if (w.stopped_by_launcher) out << " (stopped by t4grun)";
    const auto it = records.find(w.rank);
    if (it != records.end() && !it->second.message.empty()) out << ": " << it->second.message;
    out << "\n";
  }
  return out.str();
}

}  // namespace t4g::launch
