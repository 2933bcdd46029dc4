#include "cli.hpp"

#include "pg_db.hpp"

#include <tern/offload.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

namespace tern::cli {

std::map<std::string, std::string> parse_service(int argc, char** argv, const std::string& name,
                                                 const std::string& default_port,
                                                 const std::string& default_admin_port) {
  auto flags = service_flags(default_port, default_admin_port);
  flags.push_back(
      {"data-dir", "DATA_DIR", "data",
       "directory of the " + name + ".db file (created if missing; unused with --database)"});
  flags.push_back({"database", "DATABASE_URL", "",
                   "a PostgreSQL URL (postgres://user:password@host:5432/db) to keep " + name +
                       " in instead of SQLite: what replicas share"});
  flags.push_back({"workers", "TERN_WORKERS", "1",
                   "worker threads for SQLite (one connection behind a lock: more only contend)"});
  auto args = parse(argc, argv, name + "_service",
                    "Serves " + name + " over tern's TCP protocol (data in SQLite).", flags);
  set_log_level(args["log-level"]);
  tern::set_worker_threads(static_cast<unsigned>(std::max(1, std::atoi(args["workers"].c_str()))));
  if (!args["database"].empty() && !demo::is_postgres_url(args["database"])) {
    throw exit_request(2,
                       name + "_service: --database must be a postgres:// or postgresql:// URL\n");
  }
  // Where the repository keeps its data: the server, or a file in data-dir.
  args["store"] =
      args["database"].empty() ? args["data-dir"] + "/" + name + ".db" : args["database"];
  std::error_code ec;
  // Only SQLite writes there (a read-only root file system is fine otherwise).
  if (args["database"].empty()) std::filesystem::create_directories(args["data-dir"], ec);
  if (ec) {
    throw exit_request(
        1, name + "_service: cannot create " + args["data-dir"] + ": " + ec.message() + "\n");
  }
  return args;
}

}  // namespace tern::cli
