#include "products_repository.hpp"
#include "users_repository.hpp"

#include <doctest/doctest.h>

#include <filesystem>

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

}  // namespace

TEST_CASE("users: seeded on first start, created, found, kept across reopen") {
  temp_dir dir;
  std::int64_t id = 0;
  {
    users_repository repo(dir.file("users.db"));
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
  users_repository reopened(dir.file("users.db"));
  CHECK(reopened.list({}).size() == 4);  // not seeded twice
  CHECK(reopened.find(id)->name == "Edsger");
}

TEST_CASE("users: validation names the field") {
  auto check = [](std::map<std::string, std::string> m, const char* field) {
    auto d = data(m);
    try {
      validate_new_user(fields(d.get()));
      FAIL("accepted ", field);
    } catch (const tern::rpc_error& e) {
      CHECK(e.status() == 400);
      CHECK(std::string(e.what()).find(field) != std::string::npos);
    }
  };
  check({{"email", "a@b.co"}}, "name");
  check({{"name", "A"}}, "email");
  check({{"name", "A"}, {"email", "nope"}}, "email");
  check({{"name", "A"}, {"email", "a@b"}}, "email");
  check({{"name",
          "Ad\xff"
          "a"},
         {"email", "a@b.co"}},
        "name must be valid UTF-8");
  check({{"name", "\xed\xa0\x80"}, {"email", "a@b.co"}}, "name must be valid UTF-8");
  check({{"name", "Ada"}, {"email", "a\xc0@b.co"}}, "email must be valid UTF-8");
  auto ok = data({{"name", "A"}, {"email", "a@b.co"}});
  CHECK(validate_new_user(fields(ok.get())).email == "a@b.co");
}

TEST_CASE("products: price must be a number >= 0, names are unique") {
  temp_dir dir;
  products_repository repo(dir.file("products.db"));
  CHECK(repo.list({}).size() == 3);
  auto bad_price = data({{"name", "X"}, {"price", "cheap"}});
  CHECK(status_of([&] { validate_new_product(fields(bad_price.get())); }) == 400);
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> pk(b);
  pk.pack_map(2);
  pk.pack("name");
  pk.pack("Z3");
  pk.pack("price");
  pk.pack(-0.5);
  auto negative = msgpack::unpack(b.data(), b.size());
  CHECK(status_of([&] { validate_new_product(fields(negative.get())); }) == 400);
  auto p = repo.create({"Z3", 1941});
  CHECK(repo.find(p.id)->price == 1941);
  CHECK(status_of([&] { repo.create({"Z3", 1}); }) == 409);
}

TEST_CASE("paging and ids are checked") {
  auto bad_limit = msgpack::unpack("\x81\xa5limit\x00", 8);
  CHECK(status_of([&] { read_page(fields(bad_limit.get())); }) == 400);
  auto nil = msgpack::unpack("\xc0", 1);
  CHECK(read_page(fields(nil.get())).limit == 50);
  CHECK(status_of([&] { read_id(fields(nil.get())); }) == 400);
  auto not_map = msgpack::unpack("\x93\x01\x02\x03", 4);
  CHECK(status_of([&] { fields f(not_map.get()); }) == 400);
}
