// tern's client_proxy against a real NestJS microservice (tests/interop/
// nest_service.mjs on @nestjs/microservices 12, from npm) over NestJS's own
// TCP wire: the same calls a NestJS ClientProxy makes, from C++.
#include "harness.hpp"
#include "process.hpp"
#include "source_dir.hpp"
#include "tern/tern.hpp"

#include <filesystem>
#include <map>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using tern::errc;
using tern::test::child_process;
using tern::test::run;

namespace {

struct user {
  std::int64_t id = 0;
  std::string name;
  std::string email;
  MSGPACK_DEFINE_MAP(id, name, email);
  friend bool operator==(const user&, const user&) = default;
};

struct by_id {
  std::int64_t id = 0;
  MSGPACK_DEFINE_MAP(id);
};

// What the service saw as its ctx.getMetadata().
struct seen_meta {
  std::string request_id;
  std::int64_t deadline_ms = 0;
  MSGPACK_DEFINE_MAP(request_id, deadline_ms);
};

const user ada{1, "Ada Lovelace", "ada@example.com"};
const user grace{3, "Grace Hopper", "grace@example.com"};

// node tests/interop/nest_service.mjs on a free port. Its dependencies come
// from `npm ci` in tests/interop, which scripts/test runs first.
std::unique_ptr<child_process> nest_service() {
  std::filesystem::path dir = std::filesystem::path(TERN_SOURCE_DIR) / "tests" / "interop";
  REQUIRE_MESSAGE(std::filesystem::exists(dir / "node_modules" / "@nestjs" / "microservices"),
                  "tests/interop has no node_modules: run `npm ci` there (scripts/test does)");
  return std::make_unique<child_process>(
      "/usr/bin/env",
      std::vector<std::string>{"PORT=0", "node", (dir / "nest_service.mjs").string()}, 20s);
}

tern::client_options nestjs(unsigned short port) {
  return {.port = port, .timeout = 5s, .wire = tern::wire_format::nestjs};
}

// A msgpack map of string keys and values, as a call's meta.
std::string meta_map(const std::string& key, const std::string& value) {
  std::map<std::string, std::string> m;
  m[key] = value;
  msgpack::sbuffer b;
  msgpack::pack(b, m);
  return {b.data(), b.size()};
}

}  // namespace

TEST_CASE(
    "tern's client calls a NestJS microservice: send, stream, emit, errors, text, 1000 at once") {
  auto service = nest_service();
  run(
      [&](asio::io_context& io) -> asio::awaitable<void> {
        tern::client_proxy users(io, nestjs(service->port()));

        // send, and NestJS's RpcException({status, message}) as an rpc_error.
        CHECK(co_await users.send<user>({{"cmd", "get_user"}}, by_id{1}) == ada);
        try {
          co_await users.send<user>({{"cmd", "get_user"}}, by_id{999});
          FAIL("no error");
        } catch (const tern::rpc_error& e) {
          CHECK(e.kind() == errc::remote);
          CHECK(e.status() == 404);
          CHECK(e.message() == "user 999 not found");
        }

        // A stream: an Observable of three users, one frame each.
        auto s = co_await users.stream<user>({{"cmd", "stream_users"}}, by_id{});
        std::vector<user> got;
        while (auto u = co_await s.next()) got.push_back(*u);
        REQUIRE(got.size() == 3);
        CHECK(got.front() == ada);
        CHECK(got.back() == grace);
        // An error partway through a stream ends it after the values sent.
        auto broken = co_await users.stream<int>({{"cmd", "stream_fail"}});
        CHECK(co_await broken.next() == std::optional<int>(0));
        try {
          co_await broken.next();
          FAIL("no error");
        } catch (const tern::rpc_error& e) {
          CHECK(e.message() == "mid-stream");
        }

        // An unknown pattern, and the three forms of NestJS errors.
        try {
          co_await users.send<int>({{"cmd", "no_such_cmd"}});
          FAIL("no error");
        } catch (const tern::rpc_error& e) {
          CHECK(e.kind() == errc::no_handler);
        }
        try {
          co_await users.send<int>("fail");  // RpcException('Invalid input')
          FAIL("no error");
        } catch (const tern::rpc_error& e) {
          CHECK(e.kind() == errc::remote);
          CHECK(e.message() == "Invalid input");
        }
        try {
          co_await users.send<int>("fail_obj");  // RpcException({code, message, details})
          FAIL("no error");
        } catch (const tern::rpc_error& e) {
          CHECK(e.message() == "bad thing");
          CHECK(e.details<std::vector<int>>() == std::vector<int>{1, 2});
        }
        try {
          co_await users.send<int>("boom");  // throw new Error('secret'): not sent
          FAIL("no error");
        } catch (const tern::rpc_error& e) {
          CHECK(e.kind() == errc::internal);
          CHECK(std::string(e.what()).find("secret") == std::string::npos);
        }

        // An event, counted by the service's @EventPattern handler.
        // (Named values, not temporaries, inside co_await: GCC 12 may
        // destroy a temporary there twice.)
        using health = std::map<std::string, std::string>;
        auto status = co_await users.send<health>({{"cmd", "health"}});
        auto before = status.at("user_created_events");
        const user created{99, "Event", "event@example.com"};
        co_await users.emit("user_created", created);
        std::string after = before;
        for (int i = 0; i < 500 && after == before; ++i) {
          co_await tern::test::sleep_for(10ms);
          status = co_await users.send<health>({{"cmd", "health"}});
          after = status.at("user_created_events");
        }
        CHECK(std::stoi(after) == std::stoi(before) + 1);

        // Text outside ASCII and outside the BMP, both ways.
        std::vector<std::string> texts(2);
        texts[0] = "Zo\xc3\xab \xce\xa9mega \xe2\x80\x94 \xc3\xb1";
        texts[1] = "Astral \xf0\x9f\x98\x80\xf0\x9d\x84\x9e emoji";
        for (const auto& text : texts) {
          CHECK(co_await users.send<std::string>({{"cmd", "echo"}}, text) == text);
        }
        // Integers past 2^53 reach JavaScript as the nearest double.
        CHECK(co_await users.send<std::uint64_t>({{"cmd", "echo"}}, 9007199254740993ull) ==
              9007199254740992ull);

        // meta travels as NestJS 12's packet metadata, deadline included.
        auto meta = meta_map("request_id", "interop-1");
        auto seen = co_await users.send<seen_meta>({{"cmd", "metadata"}}, msgpack::type::nil_t(),
                                                   {.meta = meta});
        CHECK(seen.request_id == "interop-1");
        CHECK(seen.deadline_ms > 0);

        // 1,000 calls at once on the one connection, each answered right.
        constexpr int n = 1000;
        int right = 0, done = 0;
        for (int i = 0; i < n; ++i) {
          tern::test::spawn([&, i]() -> asio::awaitable<void> {
            auto id = i % 3 + 1;
            auto u = co_await users.send<user>({{"cmd", "get_user"}}, by_id{id});
            right += u.id == id ? 1 : 0;
            ++done;
          });
        }
        co_await tern::test::until([&] { return done == n; }, 15s);
        CHECK(right == n);
      },
      60s);
}
