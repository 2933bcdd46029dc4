// A microservice's admin listener and its built-in health pattern, over real
// sockets.
#include "harness.hpp"
#include "tern/tern.hpp"
#include "tern/trace.hpp"
#include "test_handlers.hpp"

#include <asio/connect.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <map>
#include <string>

using namespace std::chrono_literals;
using tern::test::run;
using tern::test::until;

namespace {

struct http_reply {
  int status = 0;
  std::string head, body;
};

// One GET with Connection: close, read to the end.
asio::awaitable<http_reply> get(asio::io_context& io, std::uint16_t port, std::string path) {
  asio::ip::tcp::socket s(io);
  co_await s.async_connect({asio::ip::make_address("127.0.0.1"), port}, asio::use_awaitable);
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  co_await asio::async_write(s, asio::buffer(req), asio::use_awaitable);
  std::string all;
  // The server closes after the response: the read ends with eof.
  co_await asio::async_read(s, asio::dynamic_buffer(all),
                            asio::experimental::as_tuple(asio::use_awaitable));
  http_reply r;
  auto end = all.find("\r\n\r\n");
  if (all.size() < 12 || end == std::string::npos) co_return r;
  r.status = std::stoi(all.substr(9, 3));
  r.head = all.substr(0, end);
  r.body = all.substr(end + 4);
  co_return r;
}

// The test service, and "ctx_echo": the request and trace ids it was sent.
struct fixture : tern::test::served_test_service {
  explicit fixture(asio::io_context& io)
      : served_test_service(io, [](tern::microservice& app) {
          app.message_pattern("ctx_echo", [](const tern::message_context& c) {
            return std::vector<std::string>{std::string(c.request_id()), std::string(c.trace_id())};
          });
        }) {}
};

}  // namespace

TEST_CASE("admin_port serves health and metrics that count each request by pattern and outcome") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    REQUIRE(f.app.admin_port() != 0);
    auto live = co_await get(io, f.app.admin_port(), "/health/live");
    CHECK(live.status == 200);
    auto ready = co_await get(io, f.app.admin_port(), "/health/ready");
    CHECK((ready.status == 200 && ready.body == R"({"status":"ok"})"));
    CHECK((co_await get(io, f.app.admin_port(), "/nope")).status == 404);

    for (int i = 0; i < 3; ++i) CHECK(co_await f.client->send<int>({{"cmd", "sleep"}}, 1) == 1);
    for (int i = 0; i < 2; ++i)
      co_await f.client->send<std::map<std::string, std::string>>(
          tern::health_pattern);  // readiness probes: not counted
    try {
      co_await f.client->send<int>({{"cmd", "sleep"}}, std::string("not a number"));
    } catch (const tern::rpc_error&) {
    }
    try {
      co_await f.client->send<int>({{"cmd", "fail"}}, 0);
    } catch (const tern::rpc_error&) {
    }
    try {
      co_await f.client->send<int>("no such pattern", 0);
    } catch (const tern::rpc_error&) {
    }
    auto m = co_await get(io, f.app.admin_port(), "/metrics");
    CHECK(m.status == 200);
    CHECK(m.head.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
    auto has = [&](const std::string& line) {
      INFO(line);
      CHECK(m.body.find("\n" + line + "\n") != std::string::npos);
    };
    has(R"(rpc_server_requests_total{outcome="ok",pattern="{\"cmd\":\"sleep\"}"} 3)");
    has(R"(rpc_server_request_duration_seconds_count{pattern="{\"cmd\":\"sleep\"}"} 4)");  // errors
                                                                                           // too
    has(R"x(rpc_server_requests_total{outcome="no_handler",pattern="(unknown)"} 1)x");
    has(R"(rpc_server_requests_total{outcome="decode_error",pattern="{\"cmd\":\"sleep\"}"} 1)");
    CHECK(m.body.find("tern.health") == std::string::npos);
    CHECK(m.body.find(R"x(rpc_server_request_duration_seconds_count{pattern="(unknown)"})x") ==
          std::string::npos);
    has("rpc_server_connections 1");
    has("rpc_server_active_requests 0");
    CHECK(m.body.find("process_resident_memory_bytes ") != std::string::npos);
  });
}

TEST_CASE("every service answers the health pattern, and handlers see the caller's request id") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    auto health = co_await f.client->send<std::map<std::string, std::string>>(tern::health_pattern);
    CHECK(health == std::map<std::string, std::string>{{"status", "ok"}});
    std::string meta;
    auto trace = tern::new_trace();
    tern::append_trace_meta(meta, "rid-admin-1", &trace, {});
    auto seen = co_await f.client->send<std::vector<std::string>>(
        "ctx_echo", msgpack::type::nil_t{}, {.meta = meta});
    CHECK(seen == std::vector<std::string>{"rid-admin-1", std::string(trace.trace())});
    CHECK_THROWS_AS(f.app.message_pattern(tern::health_pattern, [] { return 1; }),
                    std::invalid_argument);
  });
}

TEST_CASE("a draining service is not ready while its requests finish") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    int replied = 0;
    tern::test::spawn([&]() -> asio::awaitable<void> {
      replied = co_await f.client->send<int>({{"cmd", "sleep"}}, 300);
    });
    co_await until([&] { return f.app.in_flight() == 1; });
    bool stopped = false;
    tern::test::spawn([&]() -> asio::awaitable<void> {
      co_await f.app.shutdown();
      stopped = true;
    });
    auto during = co_await get(io, f.app.admin_port(), "/health/ready");
    CHECK((during.status == 503 && during.body == R"({"status":"draining"})"));
    CHECK((co_await get(io, f.app.admin_port(), "/health/live")).status == 200);
    co_await until([&] { return stopped; });
    CHECK(replied == 300);
  });
}

TEST_CASE("ready_when holds readiness back while its check fails, health pattern included") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    bool up = false;  // what a database's session would say
    tern::test::served_test_service s(
        io, [&](tern::microservice& app) { app.ready_when([&] { return up; }); });
    auto before = co_await get(io, s.app.admin_port(), "/health/ready");
    CHECK((before.status == 503 && before.body == R"({"status":"not ready"})"));
    CHECK((co_await get(io, s.app.admin_port(), "/health/live")).status == 200);
    try {
      co_await s.client->send<std::map<std::string, std::string>>(tern::health_pattern);
      FAIL("the health pattern answered ok while not ready");
    } catch (const tern::rpc_error& e) {
      CHECK(e.status() == 503);
      CHECK(std::string(e.what()) == "not ready");
    }
    CHECK(co_await s.client->send<int>({{"cmd", "sleep"}}, 1) == 1);  // calls still served
    up = true;
    auto after = co_await get(io, s.app.admin_port(), "/health/ready");
    CHECK((after.status == 200 && after.body == R"({"status":"ok"})"));
    auto health = co_await s.client->send<std::map<std::string, std::string>>(tern::health_pattern);
    CHECK(health.at("status") == "ok");
  });
}

TEST_CASE("a service destroyed while its admin port holds a keep-alive connection") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    asio::ip::tcp::socket s(io);
    {
      fixture f(io);
      co_await s.async_connect({asio::ip::make_address("127.0.0.1"), f.app.admin_port()},
                               asio::use_awaitable);
      std::string req = "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n";  // keep-alive
      co_await asio::async_write(s, asio::buffer(req), asio::use_awaitable);
      std::string got;
      co_await asio::async_read_until(s, asio::dynamic_buffer(got), "\r\n\r\n",
                                      asio::use_awaitable);
      CHECK(got.rfind("HTTP/1.1 200", 0) == 0);
      CHECK(got.find("Connection: keep-alive") != std::string::npos);
    }  // the service (and its admin server) go while the loop runs on
    // The session wakes to a closed socket and must touch nothing of the
    // server (ASan checks); the client sees the connection end.
    std::string rest;
    auto [ec, n] = co_await asio::async_read(s, asio::dynamic_buffer(rest),
                                             asio::experimental::as_tuple(asio::use_awaitable));
    CHECK(ec == asio::error::eof);  // closed by the server's end, not left hanging
  });
}
