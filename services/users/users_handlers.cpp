#include "users_handlers.hpp"

#include <tern/offload.hpp>

#include <spdlog/spdlog.h>

namespace tern::demo {

void register_users_handlers(microservice& app, users_repository& repo, client_proxy* events) {
  auto created_events = std::make_shared<std::int64_t>(0);

  // Validation runs on the loop (cheap); SQLite runs on the worker pool.
  app.message_pattern({{"cmd", "get_users"}},
                      [&repo](msgpack::object_handle data) -> asio::awaitable<std::vector<user>> {
                        auto p = read_page(fields(data.get()));
                        co_return co_await offload([&repo, p] { return repo.list(p); });
                      });

  app.message_pattern({{"cmd", "get_user"}},
                      [&repo](msgpack::object_handle data) -> asio::awaitable<user> {
                        auto id = read_id(fields(data.get()));
                        auto found = co_await offload([&repo, id] { return repo.find(id); });
                        if (!found)
                          throw rpc_error(404, "user " + std::to_string(id) + " not found");
                        co_return *found;
                      });

  app.message_pattern({{"cmd", "create_user"}},
                      [&repo, events](msgpack::object_handle data,
                                      const message_context& ctx) -> asio::awaitable<user> {
                        auto u = validate_new_user(fields(data.get()));
                        auto created = co_await offload([&repo, &u] { return repo.create(u); });
                        if (events) {
                          try {
                            co_await events->emit("user_created", created);
                          } catch (const rpc_error& e) {
                            spdlog::warn("user_created not sent: {} (request_id={})", e.what(),
                                         ctx.request_id());
                          }
                        }
                        co_return created;
                      });

  app.event_pattern("user_created", [created_events](const user& u) {
    ++*created_events;
    spdlog::info("user {} created ({})", u.id, u.email);
  });

  app.message_pattern({{"cmd", "health"}}, [created_events]() {
    return std::map<std::string, std::string>{
        {"status", "ok"}, {"user_created_events", std::to_string(*created_events)}};
  });
}

}  // namespace tern::demo
