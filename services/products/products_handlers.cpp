#include "products_handlers.hpp"

#include "reads.hpp"

#include <tern/offload.hpp>

namespace tern::demo {

void register_products_handlers(microservice& app, products_repository& repo) {
  register_reads(app, repo, "product", "products");

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
