#include "handlers.hpp"

namespace @NAME@ {

void register_handlers(tern::microservice& app) {
  app.message_pattern({{"cmd", "greet"}}, [](const greet_request& req) {
    return greeting{"Hello, " + req.name + "!"};
  });
}

}  // namespace @NAME@
