// The two reads every demo repository answers: a page of records, and one
// record by id (404 when there is none).
#pragma once

#include "requests.hpp"

#include <tern/microservice.hpp>
#include <tern/offload.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tern::demo {

/// Registers {cmd: "get_<plural>"} {limit?, offset?} and {cmd: "get_<singular>"}
/// {id}. The data is decoded and checked on the loop (cheap, before the
/// handler runs); the repository, which blocks, runs on the loop while its
/// reads are quick and its lock is free (SQLite: microseconds), and a page
/// walks at most quick_rows rows, else on the worker pool (tern::quick_path).
/// How many rows a page may walk (offset + limit) to be read on the loop.
inline constexpr std::int64_t quick_rows = 1000;

template <class Repo>
void register_reads(microservice& app, Repo& repo, const std::string& singular,
                    const std::string& plural) {
  using record = typename decltype(repo.find(0))::value_type;
  // SQLite walks past `offset` rows: deep pages go to the pool whatever
  // their path has cost so far.
  auto list = std::make_shared<quick_path>("get_" + plural);
  app.message_pattern({{"cmd", "get_" + plural}},
                      [&repo, list](page p) -> asio::awaitable<std::vector<record>> {
                        co_return co_await list->run(
                            [&repo, &p]() -> std::optional<std::vector<record>> {
                              if (p.offset > quick_rows - p.limit) return std::nullopt;
                              return repo.try_list(p);
                            },
                            [&repo, &p] { return repo.list(p); });
                      });
  auto find = std::make_shared<quick_path>("get_" + singular);
  app.message_pattern(
      {{"cmd", "get_" + singular}}, [&repo, singular, find](by_id r) -> asio::awaitable<record> {
        auto found = co_await find->run([&repo, &r] { return repo.try_find(r.id); },
                                        [&repo, &r] { return repo.find(r.id); });
        if (!found) {
          throw rpc_error(404, singular + " " + std::to_string(r.id) + " not found");
        }
        co_return *found;
      });
}

}  // namespace tern::demo
