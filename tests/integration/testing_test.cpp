// tern/testing.hpp, the harness `tern new` skeletons test their handlers with.
#include <tern/testing.hpp>

#include <doctest/doctest.h>

#include <string>

namespace {

struct order_ref {
  std::int64_t id = 0;
  MSGPACK_DEFINE_MAP(id);
  static auto rules() { return tern::rules(tern::field(&order_ref::id, tern::at_least(1))); }
};

struct order {
  std::int64_t id = 0;
  std::string item;
  MSGPACK_DEFINE_MAP(id, item);
};

void register_orders(tern::microservice& app, int& shipped) {
  app.message_pattern({{"cmd", "get_order"}}, [](const order_ref& r) {
    return order{r.id, "tea"};
  });
  app.event_pattern("order_shipped", [&shipped](std::int64_t) { ++shipped; });
}

}  // namespace

TEST_CASE("service_under_test: calls over a real connection, errors, events") {
  int shipped = 0;
  tern::testing::service_under_test svc(
      [&](tern::microservice& app) { register_orders(app, shipped); });
  CHECK(svc.port() != 0);
  const order_ref seven{7};
  auto o = svc.send<order>({{"cmd", "get_order"}}, seven);
  CHECK(o.id == 7);
  CHECK(o.item == "tea");
  auto e = svc.error_of({{"cmd", "get_order"}}, order_ref{0});
  CHECK(e.status() == 400);
  CHECK(std::string(e.what()) == "id: must be at least 1");
  CHECK(svc.error_of({{"cmd", "nothing"}}).kind() == tern::errc::no_handler);
  CHECK_THROWS_AS(svc.error_of({{"cmd", "get_order"}}, seven), std::logic_error);
  svc.emit("order_shipped", std::int64_t{7});
  CHECK(svc.wait_until([&] { return shipped == 1; }));
}
