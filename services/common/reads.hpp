// The two reads every demo repository answers: a page of records, and one
// record by id (404 when there is none).
#pragma once

#include "requests.hpp"

#include <tern/microservice.hpp>
#include <tern/offload.hpp>

#include <string>
#include <vector>

namespace tern::demo {

/// Registers {cmd: "get_<plural>"} {limit?, offset?} and {cmd: "get_<singular>"}
/// {id}. The data is decoded and checked on the loop (cheap, before the
/// handler runs); the repository, which blocks, runs on the worker pool.
template <class Repo>
void register_reads(microservice& app, Repo& repo, const std::string& singular,
                    const std::string& plural) {
  using record = typename decltype(repo.find(0))::value_type;
  app.message_pattern({{"cmd", "get_" + plural}},
                      [&repo](page p) -> asio::awaitable<std::vector<record>> {
                        co_return co_await offload([&repo, p] { return repo.list(p); });
                      });
  app.message_pattern(
      {{"cmd", "get_" + singular}}, [&repo, singular](by_id r) -> asio::awaitable<record> {
        auto found = co_await offload([&repo, id = r.id] { return repo.find(id); });
        if (!found) {
          throw rpc_error(404, singular + " " + std::to_string(r.id) + " not found");
        }
        co_return *found;
      });
}

}  // namespace tern::demo
