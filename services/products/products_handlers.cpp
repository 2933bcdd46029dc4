#include "products_handlers.hpp"

#include <tern/offload.hpp>

namespace tern::demo {

void register_products_handlers(microservice& app, products_repository& repo) {
  // The data is decoded and checked on the loop (cheap, before the handler
  // runs); SQLite runs on the worker pool.
  app.message_pattern({{"cmd", "get_products"}},
                      [&repo](page p) -> asio::awaitable<std::vector<product>> {
                        co_return co_await offload([&repo, p] { return repo.list(p); });
                      });

  app.message_pattern({{"cmd", "get_product"}}, [&repo](by_id r) -> asio::awaitable<product> {
    auto found = co_await offload([&repo, id = r.id] { return repo.find(id); });
    if (!found) throw rpc_error(404, "product " + std::to_string(r.id) + " not found");
    co_return *found;
  });

  app.message_pattern(
      {{"cmd", "create_product"}},
      [&repo](new_product p, const message_context& ctx) -> asio::awaitable<product> {
        if (!ctx.has_role("admin")) {
          throw rpc_error(403, "create_product needs an admin identity");
        }
        co_return co_await offload([&repo, &p] { return repo.create(p); });
      });

  app.message_pattern({{"cmd", "health"}}, []() { return std::string("ok"); });
}

}  // namespace tern::demo
