// The demo's users list answered from memory on {"cmd":"get_users"}: the
// upstream scripts/bench puts behind tern's gateway to price the gateway as
// a reverse proxy, beside nginx and HAProxy in front of an HTTP server that
// answers the same bytes from memory (bench/compare.py).
//
//   memory_users [--port P]    (0, the default, picks one; prints "READY <port>")
#include "tern/tern.hpp"
#include "users_repository.hpp"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string_view(argv[i]) == "--port") port = std::atoi(argv[i + 1]);
  }
  spdlog::set_level(spdlog::level::warn);
  // What the users service answers on a fresh database.
  const std::vector<tern::demo::user> users{{1, "Ada Lovelace", "ada@example.com"},
                                            {2, "Alan Turing", "alan@example.com"},
                                            {3, "Grace Hopper", "grace@example.com"}};
  tern::microservice app({.host = "127.0.0.1", .port = static_cast<std::uint16_t>(port)});
  app.message_pattern({{"cmd", "get_users"}}, [&users] { return users; });
  return app.listen([](std::uint16_t bound) {
    std::printf("READY %u\n", static_cast<unsigned>(bound));
    std::fflush(stdout);
  });
}
