// The timing harness of mqsec-bench: runs one operation on N threads for a fixed time and
// counts how many finished, plus the records and reports (table, JSON, gnuplot chart).
//
// Each case is time-boxed (not count-boxed) so that a slow case (RSA signing on a slow token)
// and a fast one (an unsigned express send) take the same wall time and the whole run has a
// known duration.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace mqsec::bench {

// One operation of one thread. Returns false when the thread has no more work (e.g. the
// queue it receives from is empty); the thread then stops before the time is up.
using Op = std::function<bool()>;

// A thread's time (seconds): alive (measure(): from the start to the thread's end), on a CPU,
// and runnable but waiting for one (the first two fields of /proc/<tid>/schedstat); the rest
// of `alive` it was blocked (a lock, a condition, I/O).
struct ThreadTimes {
  double alive = 0;
  double on_cpu = 0;
  double runnable = 0;
};
// The calling thread's on-CPU and runnable times so far (`alive` 0), or a given thread's
// (/proc/self/task/<tid>/schedstat); zeros when the kernel does not keep them.
ThreadTimes thread_times(const std::string& schedstat = "/proc/thread-self/schedstat");

struct Timing {
  uint64_t ops = 0;
  double seconds = 0;
  // The process's CPU time (user + system, all its threads: the store's claimer and writer,
  // an in-process token's own) from the start until the clock stopped: what an operation costs
  // in CPU, whatever the number of cores it was spread over.
  double cpu_seconds = 0;
  // The measured threads' times summed (ThreadTimes): how much of their lives they ran, waited
  // for a CPU, or were blocked (docs/performance.md, M2).
  double thread_seconds = 0;
  double thread_on_cpu = 0;
  double thread_runnable = 0;
  // Batch cases: send-to-receivable latency of each message (ms), and the device signatures
  // the batch signers made during the slice.
  std::vector<double> latencies_ms;
  uint64_t signatures = 0;
  uint64_t offered = 0;     // batch_latency: messages the paced sender sent
  double send_seconds = 0;  // batch_latency: from its first send to its last
  // Further figures summed over the slices (batch_latency: run-queue waits of its threads).
  std::map<std::string, double> sums;
  double per_second() const { return seconds > 0 ? static_cast<double>(ops) / seconds : 0; }
  void add(const Timing& t) {
    ops += t.ops;
    seconds += t.seconds;
    cpu_seconds += t.cpu_seconds;
    thread_seconds += t.thread_seconds;
    thread_on_cpu += t.thread_on_cpu;
    thread_runnable += t.thread_runnable;
    latencies_ms.insert(latencies_ms.end(), t.latencies_ms.begin(), t.latencies_ms.end());
    signatures += t.signatures;
    offered += t.offered;
    send_seconds += t.send_seconds;
    for (const auto& [name, v] : t.sums) sums[name] += v;
  }
};

// The p-th percentile (0..100) of `v` (nearest rank; 0 when empty). Sorts v.
double percentile(std::vector<double>& v, double p);

// Builds one Op per thread with make_op(thread_index) (untimed: sessions, contexts and
// buffers are set up here), starts all threads together, lets them run for `seconds` (or until
// every thread's Op returned false), and returns the total count and the elapsed wall time
// from the start until the last thread stopped (the receive rounds end when their threads run
// out of messages: not when the caller's poll notices, nor after the threads' teardown).
// `finish`, if given, runs after the threads stopped and before the clock stops: work the
// operations left pending (express messages not yet committed by the background writer) is
// part of their cost. An exception thrown by an Op stops all threads and is rethrown here.
// Timing::cpu_seconds is the process's CPU time from the start until the threads were joined
// (and `finish` ran).
Timing measure(int threads, double seconds, const std::function<Op(int)>& make_op,
               const std::function<void()>& finish = {});

// One result line: the ops/s of a case for a key and thread count, and its ratio to the
// baseline of the same key and thread count (baseline_case: raw_sign for sign and send cases,
// openssl_verify for receive_verify, the local signed_send for the remote cases).
struct Record {
  std::string key;
  int threads = 0;
  std::string name;  // the case
  double ops_per_s = 0;
  double ratio = 0;
  std::string note;  // why a case did not run, if it did not
  // Further ratios of the same run (remote cases: to raw_sign, to the broker's own rate):
  // {"raw_sign", 0.9} is written as "ratio_to_raw_sign":0.900.
  std::vector<std::pair<std::string, double>> also;
  // Further figures of the case (batch cases: p50_ms, p99_ms, max_ms, messages_per_signature),
  // written as "p50_ms":12.300.
  std::vector<std::pair<std::string, double>> stats;
};

// The case a case's ratio is taken against (itself for the baselines raw_sign, openssl_verify,
// broker_send and broker_send_express).
std::string baseline_case(const std::string& name);

// Memory observations: bytes per security context, and VmHWM/VmRSS while sending.
struct ContextMemory {
  std::string key;
  int contexts = 0;
  double heap_bytes_per_context = 0;  // mallinfo2().uordblks delta / contexts
  double rss_bytes_per_context = 0;   // VmRSS delta / contexts
};
struct RssSample {
  std::string key;
  int threads = 0;
  uint64_t messages = 0;  // sent so far
  uint64_t vm_hwm_kib = 0, vm_rss_kib = 0;
};

struct Report {
  std::string mode;  // "quick" | "full"
  double case_seconds = 0;
  std::vector<Record> records;
  std::vector<ContextMemory> contexts;
  std::vector<RssSample> rss;
  uint64_t rss_target = 0;  // messages the peak RSS phase was asked to send
  double total_seconds = 0;
};

// The human table on stdout.
void print_table(const Report& r);
// A JSON array: one object per Record ({"key","threads","case","ops_per_s","ratio"}, plus
// "ratio_to_<case>" for each of Record::also and "note" for a case that did not run), then
// one per ContextMemory ({"case":"context_memory",...}) and RssSample ({"case":"peak_rss",
// ...}). Throws std::runtime_error when the file cannot be written.
void write_json(const Report& r, const std::string& path);
// A PNG bar chart of the ratios, drawn by gnuplot (which must be on PATH). Throws
// std::runtime_error when gnuplot is missing or fails.
void write_chart(const Report& r, const std::string& path);

// "VmHWM" / "VmRSS" of /proc/self/status in KiB (0 when unreadable).
uint64_t proc_status_kib(const char* field);

}  // namespace mqsec::bench
