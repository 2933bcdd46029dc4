// What typed request data costs: one request's data decoded as a DTO by
// tern::decode (names the field, checks the rules) beside msgpack-c's own
// conversion of the same struct (obj.as<T>(): a std::map of the keys per
// call, no field named, absent fields silently default), in one run.
//   bench/dto_bench [ITERATIONS]      prints ns per decode, median of 7 runs
#include "requests.hpp"
#include "users_repository.hpp"

#include <tern/dto.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

// The demo's DTOs (with their rules), and the same structs without rules:
// decoding alone.
using tern::demo::new_user;
using tern::demo::page;
struct new_user_plain {
  std::string name;
  std::string email;
  MSGPACK_DEFINE_MAP(name, email);
};
struct page_plain {
  std::int64_t limit = 50;
  std::int64_t offset = 0;
  MSGPACK_DEFINE_MAP(limit, offset);
};

template <class F>
double ns_per_op(F&& f, long n) {
  std::vector<double> runs;
  for (int r = 0; r < 7; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < n; ++i) f();
    auto t1 = std::chrono::steady_clock::now();
    runs.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() /
                   static_cast<double>(n));
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

volatile std::size_t sink = 0;

}  // namespace

int main(int argc, char** argv) {
  long n = argc > 1 ? std::atol(argv[1]) : 1000000;
  msgpack::sbuffer user_buf;
  msgpack::pack(user_buf, new_user_plain{"Ada Lovelace", "ada@example.com"});
  auto user = msgpack::unpack(user_buf.data(), user_buf.size());
  msgpack::sbuffer page_buf;
  msgpack::pack(page_buf, page_plain{10, 20});
  auto pg = msgpack::unpack(page_buf.data(), page_buf.size());

  struct row {
    const char* what;
    double ns;
  };
  std::vector<row> rows = {
      {"create_user data, msgpack-c as<T>",
       ns_per_op([&] { sink = sink + user.get().as<new_user_plain>().email.size(); }, n)},
      {"create_user data, tern::decode, no rules",
       ns_per_op([&] { sink = sink + tern::decode<new_user_plain>(user.get()).email.size(); }, n)},
      {"create_user data, tern::decode + rules (length, RE2)",
       ns_per_op([&] { sink = sink + tern::decode<new_user>(user.get()).email.size(); }, n)},
      {"page, msgpack-c as<T>",
       ns_per_op([&] { sink = sink + static_cast<std::size_t>(pg.get().as<page_plain>().limit); },
                 n)},
      {"page, tern::decode, no rules",
       ns_per_op(
           [&] {
             sink = sink + static_cast<std::size_t>(tern::decode<page_plain>(pg.get()).limit);
           },
           n)},
      {"page, tern::decode + rules (range, at_least)",
       ns_per_op(
           [&] { sink = sink + static_cast<std::size_t>(tern::decode<page>(pg.get()).limit); }, n)},
  };
  std::printf("| decode | ns per request |\n|---|---|\n");
  for (const auto& r : rows) std::printf("| %s | %.0f |\n", r.what, r.ns);
  return 0;
}
