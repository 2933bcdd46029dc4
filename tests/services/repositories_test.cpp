#include "products_repository.hpp"
#include "users_repository.hpp"

#include "pg_db.hpp"
#include "sqlite_db.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

using namespace tern::demo;

namespace {

struct temp_dir {
  temp_dir()
      : path(std::filesystem::temp_directory_path() / ("tern-repo-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  std::string file(const char* name) const { return (path / name).string(); }
  std::filesystem::path path;
};

msgpack::object_handle data(const std::map<std::string, std::string>& m) {
  msgpack::sbuffer b;
  msgpack::pack(b, m);
  return msgpack::unpack(b.data(), b.size());
}

int status_of(auto&& f) {
  try {
    f();
  } catch (const tern::rpc_error& e) {
    return e.status();
  }
  return 0;
}

// The scratch PostgreSQL server ctest starts (scripts/pg-scratch; the file
// TERN_TEST_PG names holds its URL), with the demo's tables dropped.
std::string fresh_postgres() {
  const char* file = std::getenv("TERN_TEST_PG");
  REQUIRE_MESSAGE(file,
                  "TERN_TEST_PG is not set: run these tests with ctest, which starts PostgreSQL");
  std::ifstream in(file);
  std::string url;
  std::getline(in, url);
  REQUIRE_MESSAGE(!url.empty(), "no PostgreSQL URL in ", file);
  pg_db db(url);
  db.exec("DROP TABLE IF EXISTS users; DROP TABLE IF EXISTS products");
  return url;
}

// Where each backend keeps a repository: an SQLite file, or the server.
struct backend {
  const char* name;
  std::string (*where)(const temp_dir&, const char* file);
};
const backend backends[] = {
    {"sqlite", [](const temp_dir& d, const char* file) { return d.file(file); }},
    {"postgres", [](const temp_dir&, const char*) { return fresh_postgres(); }},
};

}  // namespace

TEST_CASE("users: seeded on first start, created, found, kept across reopen (both backends)") {
  for (const auto& b : backends) {
    CAPTURE(b.name);
    temp_dir dir;
    auto where = b.where(dir, "users.db");
    std::int64_t id = 0;
    {
      users_repository repo(where);
      CHECK(repo.list({}).size() == 3);
      auto u = repo.create({"Edsger", "ed@example.org"});
      id = u.id;
      CHECK(repo.find(id)->email == "ed@example.org");
      CHECK_FALSE(repo.find(9999).has_value());
      CHECK(status_of([&] { repo.create({"Other", "ed@example.org"}); }) == 409);
      auto page = repo.list({.limit = 2, .offset = 1});
      REQUIRE(page.size() == 2);
      CHECK(page[0].id == 2);
    }
    users_repository reopened(where);
    CHECK(reopened.list({}).size() == 4);  // not seeded twice
    CHECK(reopened.find(id)->name == "Edsger");
  }
}

TEST_CASE("reads that need not wait: SQLite's answer on the loop, PostgreSQL's never") {
  temp_dir dir;
  users_repository users(dir.file("users.db"));
  products_repository products(dir.file("products.db"));
  auto created = users.create({"Edsger", "ed@example.org"});
  auto found = users.try_find(created.id);  // a write just before: seen
  REQUIRE(found.has_value());
  CHECK((*found)->email == "ed@example.org");
  auto missing = users.try_find(9999);
  REQUIRE(missing.has_value());  // answered: there is none
  CHECK_FALSE(missing->has_value());
  auto page = users.try_list({.limit = 2, .offset = 1});
  REQUIRE(page.has_value());
  CHECK(page->size() == 2);
  auto all = products.try_list({});
  REQUIRE(all.has_value());
  CHECK(all->size() == 3);
  auto second = products.try_find(2);
  REQUIRE(second.has_value());
  REQUIRE(second->has_value());
  CHECK((*second)->name == products.find(2)->name);

  users_repository pg(fresh_postgres());
  CHECK_FALSE(pg.try_find(1).has_value());
  CHECK_FALSE(pg.try_list({}).has_value());
  CHECK(pg.find(1).has_value());
}

TEST_CASE("sqlite_db::try_locked does not wait for a lock another thread holds") {
  temp_dir dir;
  sqlite_db db(dir.file("t.db"));
  std::promise<void> held, release;
  std::thread holder([&] {
    std::lock_guard lock(db.mutex());
    held.set_value();
    release.get_future().wait();
  });
  held.get_future().wait();
  CHECK_FALSE(db.try_locked([] { return 1; }).has_value());
  release.set_value();
  holder.join();
  CHECK(db.try_locked([] { return 1; }) == 1);
  CHECK(db.locked([] { return 2; }) == 2);
}

TEST_CASE("postgres: two repositories on one database see each other's writes at once") {
  auto url = fresh_postgres();
  users_repository a(url), b(url);  // two replicas' worth
  CHECK(a.list({}).size() == 3);    // seeded once, not twice
  for (int i = 0; i < 20; ++i) {
    auto u =
        (i % 2 ? a : b).create({"U" + std::to_string(i), "u" + std::to_string(i) + "@example.org"});
    CHECK(a.find(u.id)->email == u.email);
    CHECK(b.find(u.id)->email == u.email);
  }
  CHECK(status_of([&] { b.create({"Again", "u3@example.org"}); }) == 409);
  products_repository pa(url), pb(url);
  auto p = pa.create({"Colossus", 1943.75});
  CHECK(pb.find(p.id)->price == 1943.75);
}

TEST_CASE("postgres: a session the server ended is made again, its statements prepared anew") {
  auto url = fresh_postgres();
  users_repository repo(url);
  REQUIRE(repo.find(1).has_value());  // prepared in the first session
  // What a server restart or an idle-session timeout does: end every other
  // session of this database (the repository's).
  pg_db admin(url);
  auto ended = admin.query(
      "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
      " WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t");
  REQUIRE(pg_int(ended.at(0).at(0)) >= 1);
  // A read is sent again on a new session, which has no prepared statements
  // until it prepares them.
  CHECK(repo.find(1)->id == 1);
  CHECK(repo.list({}).size() == 3);
  auto u = repo.create({"After", "after@example.org"});
  CHECK(repo.find(u.id)->name == "After");
}

TEST_CASE("postgres: exec on a session the server ended fails once, then runs on a new one") {
  auto url = fresh_postgres();
  pg_db db(url);
  db.exec("CREATE TABLE IF NOT EXISTS users (id BIGINT)");
  pg_db admin(url);
  auto ended = admin.query(
      "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
      " WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t");
  REQUIRE(pg_int(ended.at(0).at(0)) >= 1);
  // Not sent again (it may have written): it fails, as the server cannot
  // serve it (a 503 for a caller)...
  try {
    db.exec("DROP TABLE IF EXISTS users");
    FAIL("a statement ran on a session the server had ended");
  } catch (const pg_error& e) {
    CHECK(e.unavailable());
  }
  // ...and the session is made again for the next one.
  db.exec("DROP TABLE IF EXISTS users");
  CHECK(db.connected());
}

TEST_CASE("postgres: a server that cannot be reached is a 503 for each call, not a crash") {
  // The repository is made (a service starts while its database is down)...
  users_repository users("postgres://tern@127.0.0.1:1/tern?connect_timeout=2");
  products_repository products("postgres://tern@127.0.0.1:1/tern?connect_timeout=2");
  // ...and every call says what is wrong, again and again.
  for (int i = 0; i < 2; ++i) {
    CHECK(status_of([&] { users.list({}); }) == 503);
    CHECK(status_of([&] { users.create({"Late", "late@example.org"}); }) == 503);
    CHECK(status_of([&] { products.find(1); }) == 503);
  }
}

TEST_CASE(
    "postgres: a server that takes connections but never answers costs its callers one wait") {
  // A listening socket nobody accepts on: the kernel completes the TCP
  // handshake, and libpq waits for a greeting that never comes (as with a
  // name that is slow to resolve, or a server still starting).
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(fd, 8) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  auto url =
      "postgres://tern@127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/tern?connect_timeout=2";
  {
    using std::chrono::milliseconds;
    const auto wait = milliseconds(600);
    pg_db db(url, {}, wait);
    CHECK_FALSE(db.connected());
    auto first = std::chrono::steady_clock::now();
    for (int i = 0; i < 4; ++i) {
      auto started = std::chrono::steady_clock::now();
      try {
        db.query("SELECT 1");
        FAIL("a query ran without a server");
      } catch (const pg_error& e) {
        CHECK(e.sqlstate().empty());  // unreachable: a 503 for the caller
      }
      // The calls, one after another as a worker thread runs them, share the
      // attempt's one wait: the first waits for it, the others not at all.
      if (i > 0) CHECK(std::chrono::steady_clock::now() - started < wait / 2);
    }
    // Four waits would be 2.4 s, past the attempt's 2 s connect_timeout.
    CHECK(std::chrono::steady_clock::now() - first < wait * 2);
    CHECK_FALSE(db.connected());
  }  // joins the connecting thread (its attempt ends by connect_timeout)
  ::close(fd);
}

TEST_CASE("postgres: connected() reports the session, for readiness") {
  auto url = fresh_postgres();
  pg_db db(url);
  CHECK(pg_int(db.query("SELECT 41 + 1").at(0).at(0)) == 42);
  CHECK(db.connected());
  pg_db down("postgres://tern@127.0.0.1:1/tern?connect_timeout=2");
  CHECK(status_of([&] { pg_guard([&] { return down.query("SELECT 1"); }); }) == 503);
  CHECK_FALSE(down.connected());
}

TEST_CASE("users: create_user's data is checked, naming the field") {
  auto error = [](std::map<std::string, std::string> m) -> std::string {
    auto d = data(m);
    try {
      (void)tern::decode<new_user>(d.get());
      return "";
    } catch (const tern::rpc_error& e) {
      CHECK(e.status() == 400);
      return e.what();
    }
  };
  CHECK(error({{"email", "a@b.co"}}) == "name: missing");
  CHECK(error({{"name", "A"}}) == "email: missing");
  CHECK(error({{"name", ""}, {"email", "a@b.co"}}) == "name: must not be empty");
  CHECK(error({{"name", std::string(101, 'n')}, {"email", "a@b.co"}}) ==
        "name: must be at most 100 characters long");
  CHECK(error({{"name", "A"}, {"email", "nope"}}) == "email: must be a valid address");
  CHECK(error({{"name", "A"}, {"email", "a@b"}}) == "email: must be a valid address");
  CHECK(error({{"name", "A"}, {"email", "a@b."}}) == "email: must be a valid address");
  CHECK(error({{"name", "A"}, {"email", "a b@c.d"}}) == "email: must be a valid address");
  CHECK(error({{"name",
                "Ad\xff"
                "a"},
               {"email", "a@b.co"}}) == "name: must be valid UTF-8 text");
  CHECK(error({{"name", "\xed\xa0\x80"}, {"email", "a@b.co"}}) == "name: must be valid UTF-8 text");
  CHECK(error({{"name", "Ada"}, {"email", "a\xc0@b.co"}}) == "email: must be valid UTF-8 text");
  auto ok = data({{"name", "A"}, {"email", "a@b.co"}});
  CHECK(tern::decode<new_user>(ok.get()).email == "a@b.co");
}

TEST_CASE("products: price must be a number >= 0, names are unique (both backends)") {
  for (const auto& b : backends) {
    CAPTURE(b.name);
    temp_dir dir;
    products_repository repo(b.where(dir, "products.db"));
    CHECK(repo.list({}).size() == 3);
    auto p = repo.create({"Z3", 1941});
    CHECK(repo.find(p.id)->price == 1941);
    CHECK(repo.find(p.id)->name == "Z3");
    CHECK(status_of([&] { repo.create({"Z3", 1}); }) == 409);
    CHECK(repo.list({.limit = 10, .offset = 0}).back().id == p.id);
  }
}

TEST_CASE("products: create_product's data is checked, naming the field") {
  auto bad_price = data({{"name", "X"}, {"price", "cheap"}});
  auto error = [](const msgpack::object& o) -> std::string {
    try {
      (void)tern::decode<new_product>(o);
      return "";
    } catch (const tern::rpc_error& e) {
      return e.what();
    }
  };
  CHECK(error(bad_price.get()) == "price: expected a number, got a string");
  CHECK(error(data({{"name", "X"}}).get()) == "price: missing");
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> pk(b);
  pk.pack_map(2);
  pk.pack("name");
  pk.pack("Z3");
  pk.pack("price");
  pk.pack(-0.5);
  auto negative = msgpack::unpack(b.data(), b.size());
  CHECK(error(negative.get()) == "price: must be at least 0");
}

TEST_CASE("paging and ids are checked") {
  auto error = [](const char* bytes, std::size_t n, auto as) -> std::string {
    auto o = msgpack::unpack(bytes, n);
    try {
      (void)tern::decode<decltype(as)>(o.get());
      return "";
    } catch (const tern::rpc_error& e) {
      return e.what();
    }
  };
  CHECK(error("\x81\xa5limit\x00", 8, page{}) == "limit: must be between 1 and 1000");
  auto nil = msgpack::unpack("\xc0", 1);
  CHECK(tern::decode<page>(nil.get()).limit == 50);
  CHECK(error("\xc0", 1, by_id{}) == "id: missing");
  CHECK(error("\x81\xa2id\x00", 5, by_id{}) == "id: must be at least 1");
  CHECK(error("\x93\x01\x02\x03", 4, page{}) == "data: expected an object, got an array");
}
