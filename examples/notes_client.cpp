// examples/notes_client.cpp: calls the notes service.
#include "notes_api.hpp"

#include <tern/tern.hpp>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <iostream>

asio::awaitable<void> demo(tern::client_proxy& notes) {
  const add_note request{"buy milk"};  // named: see "A GCC 12 caveat" in docs/guide.md
  auto added = co_await notes.send<note>({{"cmd", "add_note"}}, request);
  std::cout << "added note " << added.id << "\n";

  auto all = co_await notes.send<std::vector<note>>({{"cmd", "list_notes"}});
  for (const auto& n : all) std::cout << n.id << ": " << n.text << "\n";

  co_await notes.emit("note_read", added.id);

  try {
    const note_ref missing{999};
    co_await notes.send<note>({{"cmd", "get_note"}}, missing);
  } catch (const tern::rpc_error& e) {
    // kind() tells remote errors from timeouts, refused connections, ...
    std::cout << "error " << e.status() << ": " << e.what() << "\n";
  }
  notes.close();  // the open connection would keep io.run() going
}

int main() {
  asio::io_context io;
  tern::client_proxy notes(io, {.host = "127.0.0.1", .port = 3101});
  asio::co_spawn(io, demo(notes), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
  io.run();
}
