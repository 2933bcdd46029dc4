// examples/notes_service.cpp: a small service written against tern.
#include "notes_api.hpp"

#include <tern/tern.hpp>

#include <spdlog/spdlog.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

int main() {
  std::map<std::uint64_t, note> notes;
  std::mutex disk;  // stands for a blocking resource, such as a database

  tern::microservice app({.host = "127.0.0.1", .port = 3101});

  // A plain handler: runs on the event loop, returns a value.
  app.message_pattern({{"cmd", "list_notes"}}, [&]() {
    std::vector<note> all;
    for (auto& [id, n] : notes) all.push_back(n);
    return all;
  });

  // Errors: throw rpc_error with a status; the caller gets it as sent.
  app.message_pattern({{"cmd", "get_note"}}, [&](const note_ref& ref) {
    auto it = notes.find(ref.id);
    if (it == notes.end())
      throw tern::rpc_error(404, "note " + std::to_string(ref.id) + " not found");
    return it->second;
  });

  // A coroutine handler that hands blocking work to the worker pool.
  app.message_pattern({{"cmd", "add_note"}}, [&](add_note req) -> asio::awaitable<note> {
    co_await tern::offload([&] {
      std::lock_guard lock(disk);  // e.g. write to a file or a database
    });
    note n{notes.size() + 1, req.text};
    notes[n.id] = n;
    co_return n;
  });

  // An event: no reply.
  app.event_pattern("note_read", [&](std::uint64_t id) { spdlog::info("note {} was read", id); });

  return app.listen();  // until SIGINT/SIGTERM; drains in-flight work
}
