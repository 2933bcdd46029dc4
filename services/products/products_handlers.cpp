#include "products_handlers.hpp"

#include <tern/offload.hpp>

namespace tern::demo {

void register_products_handlers(microservice& app, products_repository& repo) {
  // Validation runs on the loop (cheap); SQLite runs on the worker pool.
  app.message_pattern(
      {{"cmd", "get_products"}},
      [&repo](msgpack::object_handle data) -> asio::awaitable<std::vector<product>> {
        auto p = read_page(fields(data.get()));
        co_return co_await offload([&repo, p] { return repo.list(p); });
      });

  app.message_pattern({{"cmd", "get_product"}},
                      [&repo](msgpack::object_handle data) -> asio::awaitable<product> {
                        auto id = read_id(fields(data.get()));
                        auto found = co_await offload([&repo, id] { return repo.find(id); });
                        if (!found) {
                          throw rpc_error(404, "product " + std::to_string(id) + " not found");
                        }
                        co_return *found;
                      });

  app.message_pattern(
      {{"cmd", "create_product"}},
      [&repo](msgpack::object_handle data, const message_context& ctx) -> asio::awaitable<product> {
        if (!ctx.has_role("admin")) {
          throw rpc_error(403, "create_product needs an admin identity");
        }
        auto p = validate_new_product(fields(data.get()));
        co_return co_await offload([&repo, &p] { return repo.create(p); });
      });

  app.message_pattern({{"cmd", "health"}}, []() { return std::string("ok"); });
}

}  // namespace tern::demo
