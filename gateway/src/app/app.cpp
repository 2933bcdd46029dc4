#include "app/app.hpp"

#include <tern/listen.hpp>
#include <tern/log_limit.hpp>

#include <prometheus/metric_family.h>
#include <spdlog/spdlog.h>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <functional>
#include <optional>
#include <thread>

namespace tern::gateway {

namespace {
// How long the workers' stopped tasks may take to end, all together, once
// cancelled.
constexpr std::chrono::seconds join_bound{3};
}  // namespace

struct app::worker {
  // One thread runs it, and a worker's sockets and timers are only touched
  // on that thread (on_each, below): Asio need not lock each I/O object.
  // Posts from other threads (on_each, stop_all) still go through the
  // scheduler's lock.
  asio::io_context io{ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  std::unique_ptr<gateway> gw;
  std::unique_ptr<http::server> server;
  // What the app runs on this worker (on_each's tasks; the drain, on the
  // first): cancelled and joined by finish().
  task_group tasks{io.get_executor(), "gateway worker"};
  bool finishing = false;  // finish() has begun: nothing new starts
  std::thread thread;      // none for the first: it runs on run()'s thread
};

app::app(gateway_config cfg, app_options options)
    : cfg_(std::make_shared<const gateway_config>(std::move(cfg))),
      process_(std::make_shared<process_state>()),
      options_(std::move(options)) {
  options_.threads = std::max<std::size_t>(options_.threads, 1);
  for (std::size_t i = 0; i < options_.threads; ++i) {
    auto w = std::make_unique<worker>();
    w->gw = std::make_unique<gateway>(w->io, cfg_, process_);
    auto& gw = *w->gw;
    gw.report_on(this);
    auto render = [&gw](int status, std::string_view message, const http::request& r) {
      return gw.render_error(status, message, r);
    };
    w->server = std::make_unique<http::server>(
        w->io, cfg_->limits, [&gw](http::request& r) { return gw.handle(r); }, render);
    auto& server = *w->server;
    gw.metrics().add_gauge("http_server_open_connections", "Open connections on the public port.",
                           [&server] { return static_cast<double>(server.connections()); });
    gw.metrics().add_collector([&server, i](std::vector<prometheus::MetricFamily>& out) {
      prometheus::ClientMetric m;
      m.label = {{"worker", std::to_string(i)}};
      m.counter.value = static_cast<double>(server.accepted());
      auto reclaimed = m;
      reclaimed.counter.value = static_cast<double>(server.reclaimed());
      out.push_back({"gateway_worker_connections_total",
                     "Connections each worker (event-loop thread) accepted on the public port.",
                     prometheus::MetricType::Counter,
                     {std::move(m)}});
      out.push_back({"gateway_worker_connections_reclaimed_total",
                     "Idle connections each worker closed to admit new ones at max_connections.",
                     prometheus::MetricType::Counter,
                     {std::move(reclaimed)}});
      if (server.handshakes() + server.failed_handshakes() == 0) return;
      prometheus::ClientMetric ok, failed;
      ok.label = {{"result", "ok"}};
      ok.counter.value = static_cast<double>(server.handshakes());
      failed.label = {{"result", "failed"}};
      failed.counter.value = static_cast<double>(server.failed_handshakes());
      out.push_back({"tls_handshakes_total",
                     "TLS handshakes on the public port, by result (failed: refused or "
                     "abandoned; the reason is logged at debug level).",
                     prometheus::MetricType::Counter,
                     {std::move(ok), std::move(failed)}});
    });
    workers_.push_back(std::move(w));
  }
  if (cfg_->tls) {
    auto o = *cfg_->tls;
    o.alpn = {"http/1.1"};
    tls_ = tls_context::server(o);  // throws tls_error: a config error
    for (auto& w : workers_) w->server->use_tls(tls_);
    workers_.front()->gw->metrics().add_gauge(
        "tls_certificate_expiry_seconds",
        "When the public port's certificate expires (Unix time): alert well before it.", [this] {
          return static_cast<double>(
              std::chrono::duration_cast<std::chrono::seconds>(tls_->not_after().time_since_epoch())
                  .count());
        });
  }
  // One limit on the public port's connections, whichever worker holds them.
  auto open = std::make_shared<std::atomic<std::size_t>>(0);
  for (auto& w : workers_) w->server->share_connection_count(open);
  auto& first = *workers_.front()->gw;
  admin_ =
      std::make_unique<http::server>(workers_.front()->io, http::admin_limits(256),
                                     [&first](http::request& r) { return first.handle_admin(r); });
}

app::~app() {
  // finish() has joined every task that borrows a part; a worker whose
  // tasks did not end was left to the process's exit (see finish()).
  admin_.reset();
  workers_.clear();
}

std::uint16_t app::bind() {
  auto port = options_.port;
  if (workers_.size() > 1) {
    // SO_REUSEPORT lets any process of this user join the port: make sure
    // no other one holds it already (as a plain bind would), and learn the
    // port 0 picks, before the workers bind it together.
    asio::ip::tcp::acceptor probe(workers_.front()->io);
    port = tern::open_acceptor(probe, options_.host, port);
  }
  bool shared = workers_.size() > 1;
  for (auto& w : workers_) port = w->server->listen(options_.host, port, shared);
  return port;
}

int app::run() {
  auto port = bind();
  auto admin_port = admin_->listen(options_.admin_host, options_.admin_port);
  for (const auto& u : cfg_->upstreams) {
    std::string at;
    for (const auto& e : u.endpoints) at += (at.empty() ? "" : ", ") + e;
    spdlog::info("upstream {} at {}", u.name, at);
  }
  for (auto& w : workers_) w->gw->start();
  spdlog::info(
      "gateway listening on {}://{}:{} ({} routes, {} thread{}); metrics and health on {}:{}",
      tls_ ? "https" : "http", options_.host, port, cfg_->routes.size(), workers_.size(),
      workers_.size() == 1 ? "" : "s", options_.admin_host, admin_port);
  // SIGHUP re-reads the certificate and key (reload_tls()).
  // (Without TLS there is nothing to reload: said, and the process goes on.)
  std::optional<asio::signal_set> hangups;
  std::function<void(std::error_code, int)> on_hangup = [&](std::error_code ec, int) {
    if (ec) return;
    if (tls_) {
      spdlog::info("received SIGHUP: reloading the TLS certificate and key");
      reload_tls();
    } else {
      spdlog::info("received SIGHUP: nothing to reload (the public port has no TLS)");
    }
    hangups->async_wait(on_hangup);
  };
  hangups.emplace(workers_.front()->io, SIGHUP);
  hangups->async_wait(on_hangup);
  // The first signal drains, a second one stops at once.
  asio::signal_set signals(workers_.front()->io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("received signal {}, draining (at most {} ms)", sig,
                 options_.drain_timeout.count());
    workers_.front()->tasks.spawn([](app* self) -> asio::awaitable<void> {
      try {
        co_await self->drain();
      } catch (const std::system_error& e) {
        // Cancelled: a second signal, or a failed worker, stopped it all.
        if (e.code() == asio::error::operation_aborted) co_return;
        spdlog::error("gateway: the drain failed ({}); stopping", clip(e.what()));
        self->failed_ = true;
      } catch (const std::exception& e) {
        spdlog::error("gateway: the drain failed ({}); stopping", clip(e.what()));
        self->failed_ = true;
      }
      self->stop_all();
    }(this));
    signals.async_wait([this](std::error_code ec2, int) {
      if (!ec2) stop_all();
    });
  });
  auto serve = [this](worker& w) {
    try {
      w.io.run();
    } catch (const std::exception& e) {
      spdlog::critical("gateway: {}", e.what());
      failed_ = true;
      stop_all();
    }
  };
  std::size_t started = 1;
  try {
    for (; started < workers_.size(); ++started) {
      auto& w = *workers_[started];
      w.thread = std::thread([&serve, &w] { serve(w); });
    }
  } catch (...) {  // no thread to be had: stop those that run
    stop_all();
    for (std::size_t i = 1; i < started; ++i) workers_[i]->thread.join();
    signals.cancel();
    if (hangups) hangups->cancel();
    finish();
    throw;
  }
  serve(*workers_.front());
  for (std::size_t i = 1; i < workers_.size(); ++i) workers_[i]->thread.join();
  signals.cancel();
  if (hangups) hangups->cancel();
  if (!finish()) failed_ = true;
  return failed_ ? 1 : 0;
}

// Every loop has stopped. Each worker in turn (on this thread, its own
// having ended): stop what it still runs (connections, handlers, probes,
// flushes, the app's tasks on it) and run its loop until all of that has
// ended, so nothing is left that borrows a part of it when the parts go.
// A worker whose tasks do not end within join_bound is never destroyed
// under them: it is left to the process's exit (and the status is 1).
bool app::finish() {
  finishing_ = true;  // a stop_all() still queued must not stop the loops below
  auto deadline = std::chrono::steady_clock::now() + join_bound;
  bool all = true;
  for (auto& slot : workers_) {
    auto& w = *slot;
    bool first = &slot == &workers_.front();
    w.finishing = true;
    bool joined = false;
    try {
      w.io.restart();
      asio::co_spawn(w.io, stop_and_join(w, first, deadline), [&](std::exception_ptr e, bool ok) {
        joined = !e && ok;
        w.io.stop();
      });
      w.io.run();
    } catch (const std::exception& e) {
      spdlog::critical("gateway: {}", clip(e.what()));
    }
    if (!joined) {
      spdlog::critical("gateway: a worker's tasks did not end when stopped; left to the exit");
      (void)slot.release();
      if (first) (void)admin_.release();  // on that worker's loop
      all = false;
    }
  }
  std::erase(workers_, nullptr);
  return all;
}

asio::awaitable<bool> app::stop_and_join(worker& w, bool first,
                                         std::chrono::steady_clock::time_point deadline) {
  w.server->stop();
  if (first) admin_->stop();
  w.tasks.cancel();
  w.gw->close();
  bool ok = co_await w.server->join(deadline);
  if (first) ok = co_await admin_->join(deadline) && ok;
  ok = co_await w.tasks.join(deadline) && ok;
  co_return co_await w.gw->join(deadline) && ok;
}

// Runs f(worker) (an awaitable<T>) on every worker's own loop at once, and
// completes on the caller's loop with each one's result. A worker's parts
// are thus only ever touched on its own thread.
template <class T, class F>
asio::awaitable<std::vector<T>> app::on_each(F f) {
  auto ex = co_await asio::this_coro::executor;
  struct state {
    explicit state(const asio::any_io_executor& e, std::size_t n)
        : done(e, std::chrono::steady_clock::time_point::max()), results(n), left(n) {}
    asio::steady_timer done;  // the caller's; cancelled when the last result is in
    std::vector<std::optional<T>> results;
    std::size_t left;
  };
  auto st = std::make_shared<state>(ex, workers_.size());
  // Each part is a task of its worker's group, started on that worker's
  // thread: not bound to the caller's cancellation, which would be emitted
  // on the caller's thread into a coroutine running on another. f is
  // copied: a caller that gives up leaves the parts running.
  auto part = [](std::shared_ptr<state> st, F f, worker& w, std::size_t i,
                 asio::any_io_executor ex) -> asio::awaitable<void> {
    auto one_less = [&] {
      asio::post(ex, [st] {
        if (--st->left == 0) st->done.cancel();
      });
    };
    try {
      st->results[i] = co_await f(w);
    } catch (...) {
      one_less();
      throw;  // the group logs it
    }
    one_less();
  };
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    auto& w = *workers_[i];
    asio::post(w.io, [st, f, &w, i, ex, part] {
      if (!w.finishing) w.tasks.spawn(part(st, f, w, i, ex));
    });
  }
  if (st->left > 0) {
    co_await st->done.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    // Still missing some: the caller was cancelled (its client left).
    if (st->left > 0) throw std::system_error(asio::error::operation_aborted);
  }
  std::vector<T> out;
  out.reserve(st->results.size());
  for (auto& r : st->results) {
    if (!r) throw std::runtime_error("a worker gave no result");
    out.push_back(std::move(*r));
  }
  co_return out;
}

asio::awaitable<std::string> app::scrape() {
  auto parts = co_await on_each<std::vector<prometheus::MetricFamily>>(
      [](worker& w) -> asio::awaitable<std::vector<prometheus::MetricFamily>> {
        co_return w.gw->collect_metrics();
      });
  std::vector<prometheus::MetricFamily> all;
  for (auto& p : parts) merge_families(all, std::move(p));
  co_return process_->metrics.scrape(std::move(all));
}

std::optional<std::string> app::reload_tls() {
  if (!cfg_->tls) return admin_view::reload_tls();
  std::shared_ptr<const tls_context> next;
  try {
    auto o = *cfg_->tls;
    o.alpn = {"http/1.1"};
    next = tls_context::server(o);
  } catch (const tls_error& e) {
    spdlog::error("TLS reload refused, the certificate in use goes on: {}", e.what());
    return std::string(e.what());
  }
  tls_ = next;
  for (auto& w : workers_) {
    asio::post(w->io, [server = w->server.get(), next] { server->use_tls(next); });
  }
  auto days = std::chrono::duration_cast<std::chrono::hours>(next->not_after() -
                                                             std::chrono::system_clock::now())
                  .count() /
              24;
  spdlog::info("TLS reloaded: {} (expires in {} days); new connections use it",
               clip(next->subject()), days);
  return std::string();
}

asio::awaitable<readiness> app::ready() {
  auto parts = co_await on_each<readiness>(
      [](worker& w) -> asio::awaitable<readiness> { co_return w.gw->local_readiness(); });
  readiness all;
  for (auto& p : parts) all.merge(std::move(p));
  co_return all;
}

asio::awaitable<void> app::drain() {
  auto bound = options_.drain_timeout;
  co_await on_each<bool>([bound](worker& w) -> asio::awaitable<bool> {
    w.gw->set_draining();
    co_await w.server->drain(bound);
    co_return true;
  });
  spdlog::info("drained, stopping");
}

// Each loop stops; finish() then stops and joins what each still runs.
void app::stop_all() {
  if (finishing_) return;
  for (auto& w : workers_) w->io.stop();
}

}  // namespace tern::gateway
