// The timing harness and the reports of mqsec-bench (see harness.hpp).
#include "bench/harness.hpp"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace mqsec::bench {

namespace {

// The calling process's CPU time so far (user + system, all threads), in seconds.
double process_cpu_seconds() {
  rusage u{};
  if (::getrusage(RUSAGE_SELF, &u) != 0) return 0;
  const auto sec = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

}  // namespace

ThreadTimes thread_times(const std::string& schedstat) {
  std::ifstream in(schedstat);
  uint64_t on_cpu = 0, waited = 0;
  if (!(in >> on_cpu >> waited)) return {};
  return {0, static_cast<double>(on_cpu) / 1e9, static_cast<double>(waited) / 1e9};
}

Timing measure(int threads, double seconds, const std::function<Op(int)>& make_op,
               const std::function<void()>& finish) {
  std::vector<Op> ops;
  for (int t = 0; t < threads; ++t) ops.push_back(make_op(t));

  std::atomic<int> ready{0}, running{threads};
  std::atomic<bool> go{false}, stop{false};
  std::atomic<uint64_t> total{0};
  std::mutex err_mu;
  std::mutex end_mu;  // with `ended`: the last thread to end wakes this one
  std::condition_variable ended;
  std::exception_ptr first_error;
  std::vector<std::thread> pool;
  // When each thread stopped: the clock stops at the last one (below), not when this thread
  // notices or after the joins.
  std::vector<std::chrono::steady_clock::time_point> done(static_cast<size_t>(threads));
  // Each thread's time from the start to its end, on a CPU and runnable (ThreadTimes).
  std::vector<ThreadTimes> lived(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      const ThreadTimes t0 = thread_times();
      const auto began = std::chrono::steady_clock::now();
      uint64_t n = 0;
      try {
        while (!stop.load(std::memory_order_relaxed) && ops[static_cast<size_t>(t)]()) ++n;
      } catch (...) {
        std::lock_guard lock(err_mu);
        if (!first_error) first_error = std::current_exception();
        stop = true;
      }
      done[static_cast<size_t>(t)] = std::chrono::steady_clock::now();
      const ThreadTimes t1 = thread_times();
      lived[static_cast<size_t>(t)] = {
          std::chrono::duration<double>(done[static_cast<size_t>(t)] - began).count(),
          t1.on_cpu - t0.on_cpu, t1.runnable - t0.runnable};
      total.fetch_add(n);
      std::lock_guard lock(end_mu);
      if (running.fetch_sub(1) == 1) ended.notify_one();
    });
  }
  while (ready.load() < threads) std::this_thread::yield();
  const double cpu_start = process_cpu_seconds();
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + std::chrono::duration<double>(seconds);
  go.store(true, std::memory_order_release);
  // Woken by the last thread to end (the receive rounds run out of work) or at the deadline,
  // not polling: a poll every millisecond woke this thread about 1,000 times a second, each
  // time preempting a measured thread on its CPU (docs/performance.md, M2).
  {
    std::unique_lock lock(end_mu);
    ended.wait_until(lock, deadline, [&] { return running.load() == 0; });
  }
  stop = true;
  for (auto& th : pool) th.join();
  auto end = *std::max_element(done.begin(), done.end());
  if (finish && !first_error) {
    finish();
    end = std::chrono::steady_clock::now();
  }
  const double cpu_end = process_cpu_seconds();
  ops.clear();  // per-thread state (sessions, contexts) goes away before we report
  if (first_error) std::rethrow_exception(first_error);
  Timing t;
  t.ops = total.load();
  t.seconds = std::chrono::duration<double>(end - start).count();
  t.cpu_seconds = cpu_end - cpu_start;
  for (const ThreadTimes& l : lived) {
    t.thread_seconds += l.alive;
    t.thread_on_cpu += l.on_cpu;
    t.thread_runnable += l.runnable;
  }
  return t;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

uint64_t proc_status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  size_t n = std::strlen(field);
  while (std::getline(in, line)) {
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':')
      return std::strtoull(line.c_str() + n + 1, nullptr, 10);
  }
  return 0;
}

namespace {

std::string fixed(int decimals, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// The target the issues set for a case, for the table's last column.
std::string target_of(const Record& x) {
  if (x.name == "signed_send" || x.name == "signed_send_shared") return ">= 0.95";
  if (x.name == "receive_verify") return ">= 0.80";
  if (x.name == "remote_signed_send" && x.key == "rsa2048") return ">= 0.90";
  if (x.name == "batch_send") return ">= 3 x signed_send";
  if (x.name == "batch_latency") return ">= 1000/s, p99 < 500 ms";
  return "";
}

std::string baseline_of(const std::string& name) {
  std::string base = baseline_case(name);
  return base == name ? "baseline" : "/" + base;
}

}  // namespace

std::string baseline_case(const std::string& name) {
  if (name == "raw_sign" || name == "openssl_verify" || name == "broker_send" ||
      name == "broker_send_express")
    return name;
  if (name == "receive_verify" || name == "receive_beside_sender") return "openssl_verify";
  if (name == "remote_signed_send" || name == "remote_end_to_end") return "signed_send";
  return "raw_sign";
}

void print_table(const Report& r) {
  std::printf("\nmqsec-bench (%s: %.1f s per case, 1 KiB bodies)\n\n", r.mode.c_str(),
              r.case_seconds);
  std::printf("%-8s %7s  %-19s %12s %8s  %-16s %s\n", "key", "threads", "case", "ops/s", "ratio",
              "ratio of", "target");
  std::printf("%s\n", std::string(86, '-').c_str());
  std::string last;
  for (const Record& x : r.records) {
    std::string group = x.key + std::to_string(x.threads);
    if (!last.empty() && group != last) std::printf("\n");
    last = group;
    if (!x.note.empty()) {
      std::printf("%-8s %7d  %-19s %12s %8s  %s\n", x.key.c_str(), x.threads, x.name.c_str(), "-",
                  "-", x.note.c_str());
      continue;
    }
    std::string also;
    for (const auto& [name, v] : x.also) also += "  " + fixed(3, v) + " /" + name;
    for (const auto& [name, v] : x.stats) also += "  " + name + "=" + fixed(1, v);
    std::printf("%-8s %7d  %-19s %12.1f %8.3f  %-16s %-7s%s\n", x.key.c_str(), x.threads,
                x.name.c_str(), x.ops_per_s, x.ratio, baseline_of(x.name).c_str(),
                target_of(x).c_str(), also.c_str());
  }
  if (!r.contexts.empty()) {
    std::printf("\nmemory per security context\n");
    for (const ContextMemory& c : r.contexts) {
      std::printf("  %-8s %d contexts: %.0f heap bytes/context, %.0f RSS bytes/context\n",
                  c.key.c_str(), c.contexts, c.heap_bytes_per_context, c.rss_bytes_per_context);
    }
  }
  if (!r.rss.empty()) {
    std::printf("\npeak RSS while sending signed express messages (%s, %d threads)\n",
                r.rss.front().key.c_str(), r.rss.front().threads);
    if (r.rss.back().messages < r.rss_target) {
      std::printf("  (stopped by the time budget at %llu of %llu messages)\n",
                  static_cast<unsigned long long>(r.rss.back().messages),
                  static_cast<unsigned long long>(r.rss_target));
    }
    std::printf("  %12s %12s %12s\n", "messages", "VmHWM KiB", "VmRSS KiB");
    for (const RssSample& s : r.rss) {
      std::printf("  %12llu %12llu %12llu\n", static_cast<unsigned long long>(s.messages),
                  static_cast<unsigned long long>(s.vm_hwm_kib),
                  static_cast<unsigned long long>(s.vm_rss_kib));
    }
  }
  std::printf("\ntotal run time: %.1f s\n", r.total_seconds);
}

void write_json(const Report& r, const std::string& path) {
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write " + path);
  auto num = [](double v) { return std::isfinite(v) ? fixed(3, v) : std::string("null"); };
  std::vector<std::string> items;
  for (const Record& x : r.records) {
    std::ostringstream o;
    o << "{\"key\":\"" << x.key << "\",\"threads\":" << x.threads << ",\"case\":\"" << x.name
      << "\",\"ops_per_s\":" << (x.note.empty() ? num(x.ops_per_s) : "null")
      << ",\"ratio\":" << (x.note.empty() ? num(x.ratio) : "null");
    for (const auto& [name, v] : x.also) o << ",\"ratio_to_" << name << "\":" << num(v);
    for (const auto& [name, v] : x.stats) o << ",\"" << name << "\":" << num(v);
    if (!x.note.empty()) o << ",\"note\":\"" << json_escape(x.note) << "\"";
    o << "}";
    items.push_back(o.str());
  }
  for (const ContextMemory& c : r.contexts) {
    std::ostringstream o;
    o << "{\"key\":\"" << c.key << "\",\"case\":\"context_memory\",\"contexts\":" << c.contexts
      << ",\"heap_bytes_per_context\":" << num(c.heap_bytes_per_context)
      << ",\"rss_bytes_per_context\":" << num(c.rss_bytes_per_context) << "}";
    items.push_back(o.str());
  }
  for (const RssSample& s : r.rss) {
    std::ostringstream o;
    o << "{\"key\":\"" << s.key << "\",\"threads\":" << s.threads
      << ",\"case\":\"peak_rss\",\"messages\":" << s.messages
      << ",\"target_messages\":" << r.rss_target << ",\"vm_hwm_kib\":" << s.vm_hwm_kib
      << ",\"vm_rss_kib\":" << s.vm_rss_kib << "}";
    items.push_back(o.str());
  }
  out << "[\n";
  for (size_t i = 0; i < items.size(); ++i)
    out << "  " << items[i] << (i + 1 < items.size() ? ",\n" : "\n");
  out << "]\n";
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

void write_chart(const Report& r, const std::string& path) {
  // Columns: the (key, threads) series; rows: the cases with a ratio. plain_send is left out:
  // it is the queue's own cost without signing, many times raw_sign, and would flatten the rest.
  const std::vector<std::string> cases = {
      "libp11_sign",      "signed_send",    "signed_send_shared",   "uncached_send",
      "recoverable_send", "receive_verify", "receive_beside_sender"};
  std::vector<std::pair<std::string, int>> series;
  std::map<std::string, double> ratio;  // "case|key|threads"
  for (const Record& x : r.records) {
    std::pair<std::string, int> s{x.key, x.threads};
    if (std::find(series.begin(), series.end(), s) == series.end()) series.push_back(s);
    if (x.note.empty()) ratio[x.name + "|" + x.key + "|" + std::to_string(x.threads)] = x.ratio;
  }
  double top = 0;
  for (const std::string& c : cases) {
    for (auto& s : series) {
      auto it = ratio.find(c + "|" + s.first + "|" + std::to_string(s.second));
      if (it != ratio.end()) top = std::max(top, it->second);
    }
  }
  if (series.empty()) throw std::runtime_error("no results to chart");

  char dir_template[] = "/tmp/mqsec-chart-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) throw std::runtime_error("cannot create a temp dir");
  std::string dir = dir_template;
  std::string data = dir + "/ratios.dat", script = dir + "/chart.gp";
  {
    std::ofstream d(data);
    d << "case";
    for (auto& s : series) d << " \"" << s.first << " " << s.second << "t\"";
    d << "\n";
    for (const std::string& c : cases) {
      d << c;
      for (auto& s : series) {
        auto it = ratio.find(c + "|" + s.first + "|" + std::to_string(s.second));
        d << " " << (it == ratio.end() ? std::string("NaN") : fixed(4, it->second));
      }
      d << "\n";
    }
  }
  {
    std::ofstream g(script);
    g << "set terminal pngcairo size 1100,560 font 'sans,10'\n"
      << "set output '" << path << "'\n"
      << "set title \"mqsec-bench (" << r.mode
      << "): ratio to raw C_Sign (sign and send cases) or to OpenSSL verify (receive cases)\\n"
      << "dashed: 1.0; dotted red: the signed_send target 0.95\" noenhanced\n"
      << "set style data histograms\nset style histogram clustered gap 1\n"
      << "set style fill solid 0.85 border -1\nset boxwidth 0.9\n"
      << "set key top right\nset grid ytics\nset ylabel 'ratio'\n"
      << "set yrange [0:" << fixed(2, std::max(1.15, top * 1.1)) << "]\n"
      << "set xtics noenhanced nomirror\n"
      << "set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 1 dt 2 lc rgb '#555555'\n"
      << "set arrow from graph 0, first 0.95 to graph 1, first 0.95 nohead lw 1 dt 3 lc rgb "
         "'#aa0000'\n"
      << "plot '" << data << "' using 2:xtic(1) title columnheader(2)";
    for (size_t i = 1; i < series.size(); ++i)
      g << ", '' using " << (i + 2) << " title columnheader(" << (i + 2) << ")";
    g << "\n";
  }
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    execlp("gnuplot", "gnuplot", script.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  std::remove(data.c_str());
  std::remove(script.c_str());
  rmdir(dir.c_str());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(WIFEXITED(status) && WEXITSTATUS(status) == 127
                                 ? "gnuplot is not installed (apt-get install gnuplot-nox)"
                                 : "gnuplot failed to draw the chart");
  }
}

}  // namespace mqsec::bench
