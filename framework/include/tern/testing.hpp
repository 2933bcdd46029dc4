// Testing a service's handlers: the service on 127.0.0.1 at a free port and a
// client_proxy to it, in this process on a private event loop, with calls
// that wait for their answer (each bounded in time). Works with any test
// framework; the skeleton `tern new service NAME` writes uses doctest:
//
//   tern::testing::service_under_test svc(register_handlers);
//   CHECK(svc.send<order>({{"cmd", "get_order"}}, order_ref{7}).id == 7);
//   auto e = svc.error_of({{"cmd", "get_order"}}, order_ref{0});  // the rpc_error
//   CHECK(e.status() == 400);
#pragma once

#include "tern/client_proxy.hpp"
#include "tern/microservice.hpp"

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace tern::testing {

/// How long one call (or wait) may take before the test fails.
inline constexpr std::chrono::milliseconds default_limit{10000};

class service_under_test {
 public:
  /// `setup(app)` registers the handlers, as the service's main does. The
  /// options' host and port are replaced (127.0.0.1, a free port).
  explicit service_under_test(const std::function<void(microservice&)>& setup,
                              microservice_options options = {})
      : app_(io_, bind_here(std::move(options))) {
    setup(app_);
    port_ = app_.start();
    client_.emplace(io_, client_options{.host = "127.0.0.1", .port = port_});
  }
  ~service_under_test() { client_->close(); }
  service_under_test(const service_under_test&) = delete;
  service_under_test& operator=(const service_under_test&) = delete;

  /// Sends a request and returns the reply as T; throws the rpc_error.
  template <class T = msgpack::object_handle, class D = msgpack::type::nil_t>
  T send(const pattern& p, const D& data = {}, call_options o = {}) {
    // The call keeps copies: one that timed out may still run on the loop.
    return run(call<T, D>(*client_, p, data, std::move(o)));
  }

  /// The rpc_error a request is answered with (the test fails if it succeeds).
  template <class D = msgpack::type::nil_t>
  rpc_error error_of(const pattern& p, const D& data = {}, call_options o = {}) {
    try {
      (void)send(p, data, std::move(o));
    } catch (const rpc_error& e) {
      return e;
    }
    throw std::logic_error("tern::testing: " + p.canonical() + " succeeded, an error was expected");
  }

  /// Sends an event (its handlers run while the loop runs: see wait_until).
  template <class D = msgpack::type::nil_t>
  void emit(const pattern& p, const D& data = {}) {
    run(emit_copy<D>(*client_, p, data));
  }

  /// Runs the loop until `done()` holds; false if `limit` passed first.
  bool wait_until(const std::function<bool()>& done,
                  std::chrono::milliseconds limit = default_limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    io_.restart();
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io_.run_one_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  /// Runs a coroutine on the service's loop to its end and returns its value
  /// (or throws its exception); throws std::runtime_error after `limit`.
  template <class T>
  T run(asio::awaitable<T> task, std::chrono::milliseconds limit = default_limit) {
    auto state = std::make_shared<outcome<T>>();
    if constexpr (std::is_void_v<T>) {
      asio::co_spawn(io_, std::move(task), [state](std::exception_ptr e) {
        state->error = e;
        state->done = true;
      });
    } else {
      asio::co_spawn(io_, std::move(task), [state](std::exception_ptr e, T v) {
        state->error = e;
        if (!e) state->value.emplace(std::move(v));
        state->done = true;
      });
    }
    if (!wait_until([&] { return state->done; }, limit)) {
      client_->close();  // the late call fails at once instead of lingering
      throw std::runtime_error("tern::testing: no answer within " + std::to_string(limit.count()) +
                               " ms");
    }
    if (state->error) std::rethrow_exception(state->error);
    if constexpr (!std::is_void_v<T>) return std::move(*state->value);
  }

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  microservice& app() noexcept { return app_; }
  client_proxy& client() noexcept { return *client_; }
  asio::io_context& io() noexcept { return io_; }

 private:
  template <class T>
  struct outcome {
    bool done = false;
    std::exception_ptr error;
    std::conditional_t<std::is_void_v<T>, bool, std::optional<T>> value{};
  };

  template <class T, class D>
  static asio::awaitable<T> call(client_proxy& c, pattern p, D data, call_options o) {
    co_return co_await c.send<T>(p, data, std::move(o));
  }
  template <class D>
  static asio::awaitable<void> emit_copy(client_proxy& c, pattern p, D data) {
    co_await c.emit(p, data);
  }

  static microservice_options bind_here(microservice_options o) {
    o.host = "127.0.0.1";
    o.port = 0;
    if (o.admin_port) o.admin_port = 0;  // tests may run side by side
    return o;
  }

  asio::io_context io_{1};
  microservice app_;
  std::uint16_t port_ = 0;
  std::optional<client_proxy> client_;
};

}  // namespace tern::testing
