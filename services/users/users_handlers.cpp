#include "users_handlers.hpp"

#include "reads.hpp"

#include <tern/log_limit.hpp>
#include <tern/offload.hpp>

#include <spdlog/spdlog.h>

namespace tern::demo {

namespace {

struct caller {
  std::string sub;
  std::vector<std::string> roles;
  std::map<std::string, std::string> claims;  ///< the propagated ones it knows (email)
  MSGPACK_DEFINE_MAP(sub, roles, claims);
};

}  // namespace

void register_users_handlers(microservice& app, users_repository& repo, client_proxy* events) {
  auto created_events = std::make_shared<std::int64_t>(0);

  register_reads(app, repo, "user", "users");

  app.message_pattern(
      {{"cmd", "create_user"}},
      [&repo, events](new_user u, const message_context& ctx) -> asio::awaitable<user> {
        // Also when called straight on this port, past the gateway.
        if (!ctx.has_role("admin")) {
          throw rpc_error(403, "create_user needs an admin identity");
        }
        auto created = co_await offload([&repo, &u] { return repo.create(u); });
        if (events) {
          try {
            co_await events->emit("user_created", created);
          } catch (const rpc_error& e) {
            spdlog::warn("user_created not sent: {} (request_id={})", tern::clip(e.what()),
                         ctx.request_id());
          }
        }
        co_return created;
      });

  // A page of users as a stream, one reply frame per user (an Observable
  // for a NestJS caller).
  app.message_pattern({{"cmd", "stream_users"}},
                      [&repo](page p, stream_writer<user>& out) -> asio::awaitable<void> {
                        auto users = co_await offload([&repo, p] { return repo.list(p); });
                        for (const auto& u : users) co_await out.write(u);
                      });

  // Who the caller is, as the gateway's auth policy verified it.
  app.message_pattern({{"cmd", "whoami"}}, [](const message_context& ctx) {
    if (!ctx.authenticated()) throw rpc_error(401, "whoami needs an identity");
    caller c{std::string(ctx.subject()), {}, {}};
    for (auto r : ctx.roles()) c.roles.emplace_back(r);
    if (const auto* email = ctx.claim("email"); email && email->type == msgpack::type::STR) {
      c.claims.emplace("email", email->as<std::string>());
    }
    return c;
  });

  app.event_pattern("user_created", [created_events](const user& u) {
    ++*created_events;
    spdlog::info("user {} created ({})", u.id, tern::clip(u.email));
  });

  app.message_pattern({{"cmd", "health"}}, [created_events]() {
    return std::map<std::string, std::string>{
        {"status", "ok"}, {"user_created_events", std::to_string(*created_events)}};
  });
}

}  // namespace tern::demo
