// One line per HTTP request, text or JSON, through spdlog, without a lock or
// a syscall per request: lines are formatted into a buffer on each worker's
// event loop, and the destination's one writer thread is handed the buffer
// every 100 ms (or 64 KiB), whole lines at a time.
#include <tern/json.hpp>
#include "config/config.hpp"
#include "pipeline/registry.hpp"

#include <tern/endpoint.hpp>
#include <tern/log_limit.hpp>
#include <tern/task_group.hpp>

#include <spdlog/details/null_mutex.h>
#include <spdlog/logger.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

namespace tern::gateway {

namespace {

constexpr std::size_t hand_over_bytes = 64 * 1024;
constexpr std::size_t max_backlog_bytes = 16 * 1024 * 1024;
constexpr std::chrono::milliseconds flush_interval{100};
constexpr std::chrono::milliseconds final_flush{2000};

// spdlog's formatting (time, pattern) into a buffer of the event loop's.
class buffer_sink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 public:
  explicit buffer_sink(std::string& out) : out_(out) {}

 private:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    out_.append(line.data(), line.size());
  }
  void flush_() override {}
  std::string& out_;
};

// What the writer thread owns: shared, so a thread stuck writing to a
// destination that never drains can be left behind at exit.
struct outlet {
  int fd = -1;
  bool owned = false;
  std::mutex mutex;
  std::condition_variable wake, finished;
  std::string queued;  // guarded by mutex, as are the flags
  bool stop = false;
  bool done = false;
  ~outlet() {
    if (owned) ::close(fd);
  }
};

// Writes whole lines, at most PIPE_BUF bytes per write where lines allow:
// such writes to a pipe are atomic, so lines other loggers write to the
// same stdout never land inside these.
void write_lines(int fd, std::string_view out) {
  while (!out.empty()) {
    std::size_t n = out.size();
    if (n > PIPE_BUF) {
      auto cut = out.rfind('\n', PIPE_BUF - 1);
      if (cut == std::string_view::npos) cut = out.find('\n');  // one line longer than that
      n = cut == std::string_view::npos ? out.size() : cut + 1;
    }
    auto chunk = out.substr(0, n);
    while (!chunk.empty()) {
      auto w = ::write(fd, chunk.data(), chunk.size());
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return;  // nowhere to write: these lines are lost
      chunk.remove_prefix(static_cast<std::size_t>(w));
    }
    out.remove_prefix(n);
  }
}

void run_outlet(const std::shared_ptr<outlet>& o) {
  std::string out;
  for (;;) {
    {
      std::unique_lock lock(o->mutex);
      o->wake.wait(lock, [&] { return o->stop || !o->queued.empty(); });
      if (o->queued.empty() && o->stop) break;
      out.swap(o->queued);
    }
    write_lines(o->fd, out);
    out.clear();
  }
  std::lock_guard lock(o->mutex);
  o->done = true;
  o->finished.notify_all();
}

// A destination's outlet and its thread, shared by every worker's writer
// to it: one thread and one descriptor per destination.
class destination {
 public:
  explicit destination(const std::string& path) : out_(std::make_shared<outlet>()) {
    if (path == "stdout") {
      out_->fd = STDOUT_FILENO;
    } else if (path == "stderr") {
      out_->fd = STDERR_FILENO;
    } else {
      out_->fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (out_->fd < 0) throw config_error("access log " + path + ": " + std::strerror(errno));
      out_->owned = true;
    }
    thread_ = std::thread([o = out_] { run_outlet(o); });
  }

  destination(const destination&) = delete;
  destination& operator=(const destination&) = delete;

  // Writes out what was handed over, waiting at most final_flush for a slow
  // destination; a thread still stuck in write() then is left to the exit.
  ~destination() {
    std::unique_lock lock(out_->mutex);
    out_->stop = true;
    out_->wake.notify_one();
    if (out_->finished.wait_for(lock, final_flush, [&] { return out_->done; })) {
      lock.unlock();
      thread_.join();
    } else {
      lock.unlock();
      thread_.detach();
    }
  }

  [[nodiscard]] const std::shared_ptr<outlet>& out() const { return out_; }

 private:
  std::shared_ptr<outlet> out_;
  std::thread thread_;
};

// Every destination of the process, by path.
struct destinations {
  std::mutex mutex;
  std::map<std::string, std::unique_ptr<destination>> by_path;
  destination& of(const std::string& path) {
    std::lock_guard lock(mutex);
    auto& d = by_path[path];
    if (!d) d = std::make_unique<destination>(path);
    return *d;
  }
};

// Formats lines on a worker's event loop and hands them to its
// destination's thread. Its flush loop is a task of the worker's gateway,
// which joins it before the writer goes.
class writer {
 public:
  writer(asio::io_context& io, const std::string& path, destination& to, tern::task_group& tasks)
      : path_(path), out_(to.out()), timer_(io) {
    text_ = make_logger("%Y-%m-%dT%H:%M:%S.%fZ %v");
    json_ = make_logger(R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ",%v)");
    tasks.spawn(flush_loop());
  }

  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;

  // Hands over what is buffered; the destination writes it before it ends.
  ~writer() { hand_over(); }

  void log(bool json, std::string_view line) {
    (json ? json_ : text_)->info(line);
    if (pending_.size() >= hand_over_bytes) hand_over();
  }

 private:
  std::shared_ptr<spdlog::logger> make_logger(const std::string& pattern) {
    auto sink = std::make_shared<buffer_sink>(pending_);
    sink->set_formatter(
        std::make_unique<spdlog::pattern_formatter>(pattern, spdlog::pattern_time_type::utc));
    auto l = std::make_shared<spdlog::logger>("access", std::move(sink));
    l->set_level(spdlog::level::info);
    return l;
  }

  asio::awaitable<void> flush_loop() {
    // Cancelled before it first ran (a gateway whose construction failed
    // cancels its tasks, and this writer may be gone): it touches nothing.
    auto cs = co_await asio::this_coro::cancellation_state;
    for (;;) {
      if (cs.cancelled() != asio::cancellation_type::none) co_return;
      timer_.expires_after(flush_interval);
      auto [ec] = co_await timer_.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      hand_over();
    }
  }

  // One lock per hand-over, not per line; lines beyond the backlog bound
  // (a stalled log reader) are dropped and counted rather than kept.
  void hand_over() {
    if (pending_.empty()) return;
    bool dropped = false;
    {
      std::lock_guard lock(out_->mutex);
      if (out_->queued.size() + pending_.size() > max_backlog_bytes) {
        dropped = true;
      } else {
        out_->queued.append(pending_);
      }
    }
    if (dropped) {
      if (std::size_t held = 0; drops_.allow(held)) {
        spdlog::warn("access log {}: writer behind, lines dropped{}", path_, tern::held_back(held));
      }
    }
    pending_.clear();
    if (!dropped) out_->wake.notify_one();
  }

  std::string path_;
  std::shared_ptr<outlet> out_;
  std::string pending_;  // the event loop's
  std::shared_ptr<spdlog::logger> text_, json_;
  tern::log_limiter drops_;
  asio::steady_timer timer_;
};

// One writer per destination in each worker, shared by the routes that
// log there.
struct writers {
  std::map<std::string, std::unique_ptr<writer>> by_path;
};

// Text values are written as they are: what reaches a line is visible ASCII
// already (the parser's target and method, a validated request id, an
// address, the config's route), so nothing needs escaping or copying.
void field(std::string& out, std::string_view key, std::string_view value, bool json) {
  out += json ? ",\"" : " ";
  out += key;
  out += json ? "\":" : "=";
  if (json) {
    append_json_string(value, out);
  } else {
    out += value;
  }
}

void append_number(std::string& out, long long value) {
  char buf[24];
  out.append(buf, std::to_chars(buf, buf + sizeof buf, value).ptr);
}

void number(std::string& out, std::string_view key, long long value, bool json) {
  out += json ? ",\"" : " ";
  out += key;
  out += json ? "\":" : "=";
  append_number(out, value);
}

long long micros(std::chrono::nanoseconds d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

class access_log final : public policy {
 public:
  access_log(writer& w, bool json, std::string_view label, const route* r,
             const std::vector<upstream>& services)
      : writer_(w), json_(json), route_(label) {
    if (!r) return;
    for (const auto& [key, spec] : r->calls) {
      call_names_.emplace_back(services[spec.upstream].name, spec.pattern.canonical());
    }
  }

  asio::awaitable<void> handle(request_context& ctx, next n) override {
    co_await n(ctx);
    line_.clear();
    const auto& req = ctx.request;
    auto took = std::chrono::steady_clock::now() - ctx.start;
    if (json_) {
      line_ += "\"client\":";
      append_json_string(tern::to_string(req.peer), line_);
    } else {
      line_ += tern::to_string(req.peer);
    }
    field(line_, "method", req.method, json_);
    field(line_, "target", req.target, json_);
    field(line_, "route", route_, json_);
    number(line_, "status", ctx.response.status, json_);
    number(line_, "bytes", static_cast<long long>(ctx.response.body.size()), json_);
    number(line_, "duration_us", micros(took), json_);
    field(line_, "request_id", ctx.request_id, json_);
    if (!ctx.calls.empty()) calls(ctx);
    if (json_) line_ += '}';
    writer_.log(json_, line_);
  }

 private:
  void calls(const request_context& ctx) {
    line_ += json_ ? ",\"calls\":[" : " calls=[";
    bool first = true;
    for (const auto& c : ctx.calls) {
      if (c.call >= call_names_.size()) continue;
      const auto& [service, pattern] = call_names_[c.call];
      if (!first) line_ += json_ ? "," : " ";
      first = false;
      if (json_) {
        line_ += "{\"service\":";
        append_json_string(service, line_);
        field(line_, "pattern", pattern, true);
        field(line_, "outcome", c.outcome(), true);
        number(line_, "duration_us", micros(c.took), true);
        if (c.retries > 0) number(line_, "retries", c.retries, true);
        line_ += '}';
      } else {
        line_ += service;
        line_ += ' ';
        line_ += pattern;
        line_ += ' ';
        line_ += c.outcome();
        line_ += ' ';
        append_number(line_, micros(c.took));
        line_ += "us";
        if (c.retries > 0) {
          line_ += " retries=";
          append_number(line_, c.retries);
        }
      }
    }
    line_ += ']';
  }

  writer& writer_;
  bool json_;
  std::string route_;
  std::vector<std::pair<std::string, std::string>> call_names_;
  std::string line_;  // reused: one request at a time reaches the line
};

}  // namespace

std::unique_ptr<policy> make_access_log_policy(const build_context& b) {
  // Off unless configured: `true`, or {"format": "text"|"json", "path": ...}.
  if (b.piece.is_null() || b.piece == false) return nullptr;
  std::string format = "text", path = "stdout";
  if (b.piece.is_object()) {
    for (const auto& [key, v] : b.piece.items()) {
      if ((key != "format" && key != "path") || !v.is_string()) {
        throw config_error(b.where + "." + key +
                           ": not a setting (format: \"text\" or \"json\"; path: \"stdout\", "
                           "\"stderr\" or a file)");
      }
      (key == "format" ? format : path) = v.get<std::string>();
    }
    if (format != "text" && format != "json") {
      throw config_error(b.where + ".format: must be \"text\" or \"json\"");
    }
    if (path.empty()) throw config_error(b.where + ".path: must not be empty");
  } else if (b.piece != true) {
    throw config_error(b.where + ": must be true, false or an object");
  }
  auto& all = b.shared.get<writers>([] { return new writers; });
  auto& w = all.by_path[path];
  if (!w) {
    auto& all_workers = b.process.shared.get<destinations>([] { return new destinations; });
    w = std::make_unique<writer>(b.io, path, all_workers.of(path), b.tasks);
  }
  return std::make_unique<access_log>(*w, format == "json", b.route_label, b.matched,
                                      b.config.upstreams);
}

}  // namespace tern::gateway
