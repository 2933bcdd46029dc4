// Request/reply throughput and latency of a ping pattern, client and server
// in separate processes.
//
//   rpc_bench [--connections C] [--inflight M] [--seconds S] [--warmup S]
//             [--connect HOST:PORT]      (default: start our own server)
//             [--wire tern|nestjs]       (the wire format, both sides; default tern)
//             [--round-trips N]          (exactly N round trips, however long they take,
//                                         counted from the first: for callgrind)
//   rpc_bench --serve [--port P] [--wire tern|nestjs]   (the server side alone)
//
// Prints one line: round trips/s and p50/p99/p999 latency.
#include "tern/task_group.hpp"
#include "tern/tern.hpp"

#include <spdlog/spdlog.h>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct options {
  int connections = 1;
  int inflight = 64;
  double seconds = 5;
  double warmup = 1;
  std::string host = "127.0.0.1";
  int port = 0;
  bool serve = false;
  std::uint64_t round_trips = 0;  // 0: --seconds decide
  tern::wire_format wire = tern::wire_format::tern;
};

int serve(const options& o) {
  spdlog::set_level(spdlog::level::warn);
  tern::microservice app(
      {.host = o.host, .port = static_cast<std::uint16_t>(o.port), .wire = o.wire});
  app.message_pattern("ping", []() { return std::string("pong"); });
  return app.listen([](std::uint16_t port) {
    std::printf("READY %u\n", static_cast<unsigned>(port));
    std::fflush(stdout);
  });
}

// Starts `self --serve` and returns its pid and port.
std::pair<pid_t, int> start_server(const char* self, tern::wire_format wire) {
  int fds[2];
  if (pipe(fds) != 0) std::exit(1);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    std::string w(tern::to_string(wire));
    execl(self, self, "--serve", "--port", "0", "--wire", w.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  char buf[64] = {};
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  unsigned port = 0;
  if (n <= 0 || std::sscanf(buf, "READY %u", &port) != 1) {
    std::fprintf(stderr, "rpc_bench: server did not start\n");
    std::exit(1);
  }
  return {pid, static_cast<int>(port)};
}

double percentile(std::vector<std::uint32_t>& v, double p) {
  if (v.empty()) return 0;
  auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k] / 1000.0;
}

int run_client(const options& o) {
  spdlog::set_level(spdlog::level::warn);
  asio::io_context io(1);
  std::vector<std::unique_ptr<tern::client_proxy>> clients;
  for (int i = 0; i < o.connections; ++i) {
    clients.push_back(std::make_unique<tern::client_proxy>(
        io, tern::client_options{
                .host = o.host, .port = static_cast<std::uint16_t>(o.port), .wire = o.wire}));
  }
  const tern::pattern ping("ping");
  auto start = clock_type::now();
  auto measure_from = start + std::chrono::duration_cast<clock_type::duration>(
                                  std::chrono::duration<double>(o.warmup));
  auto stop_at = measure_from + std::chrono::duration_cast<clock_type::duration>(
                                    std::chrono::duration<double>(o.seconds));
  std::vector<std::uint32_t> latencies;  // nanoseconds, measured window only
  latencies.reserve(4'000'000);
  std::uint64_t errors = 0;
  int running = 0;
  std::uint64_t started = 0;
  // One loop of calls; kept here while the loops run (they refer to its captures).
  auto loop = [&](tern::client_proxy* client) -> asio::awaitable<void> {
    for (;;) {
      auto t0 = clock_type::now();
      if (o.round_trips > 0 ? started == o.round_trips : t0 >= stop_at) break;
      ++started;
      try {
        co_await client->send<void>(ping);
      } catch (const std::exception& e) {
        if (++errors == 1) std::fprintf(stderr, "rpc_bench: %s\n", e.what());
        continue;
      }
      auto t1 = clock_type::now();
      if (o.round_trips > 0 || (t0 >= measure_from && t1 <= stop_at)) {
        latencies.push_back(static_cast<std::uint32_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
      }
    }
    if (--running == 0) io.stop();
  };
  tern::task_group tasks(io.get_executor(), "rpc_bench");
  for (auto& c : clients) {
    for (int j = 0; j < o.inflight; ++j) {
      ++running;
      tasks.spawn(loop(c.get()));
    }
  }
  io.run();
  auto elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  auto counted = o.round_trips > 0 ? started : latencies.size();
  double rate = static_cast<double>(counted) / (o.round_trips > 0 ? elapsed : o.seconds);
  auto p50 = percentile(latencies, 0.50);
  auto p99 = percentile(latencies, 0.99);
  auto p999 = percentile(latencies, 0.999);
  std::printf(
      "rpc_bench connections=%d inflight=%d seconds=%.1f round_trips=%zu rate=%.0f/s "
      "p50=%.1fus p99=%.1fus p999=%.1fus errors=%llu\n",
      o.connections, o.inflight, o.round_trips > 0 ? elapsed : o.seconds, counted, rate, p50, p99,
      p999, static_cast<unsigned long long>(errors));
  return errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  std::string connect;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "rpc_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--serve") {
      o.serve = true;
    } else if (a == "--port") {
      o.port = std::stoi(next());
    } else if (a == "--connections") {
      o.connections = std::stoi(next());
    } else if (a == "--inflight") {
      o.inflight = std::stoi(next());
    } else if (a == "--seconds") {
      o.seconds = std::stod(next());
    } else if (a == "--warmup") {
      o.warmup = std::stod(next());
    } else if (a == "--round-trips") {
      o.round_trips = std::stoull(next());
    } else if (a == "--connect") {
      connect = next();
    } else if (a == "--wire") {
      o.wire = tern::parse_wire_format(next());
    } else {
      std::fprintf(stderr, "usage: see the comment at the top of bench/rpc_bench.cpp\n");
      return 2;
    }
  }
  if (o.serve) return serve(o);
  pid_t server = 0;
  if (connect.empty()) {
    auto [pid, port] = start_server("/proc/self/exe", o.wire);
    server = pid;
    o.port = port;
  } else {
    auto colon = connect.rfind(':');
    o.host = connect.substr(0, colon);
    o.port = std::stoi(connect.substr(colon + 1));
  }
  int rc = run_client(o);
  if (server > 0) {
    kill(server, SIGTERM);
    int status = 0;
    waitpid(server, &status, 0);
  }
  return rc;
}
