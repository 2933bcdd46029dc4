// A small wrapper over libpq for the demo services' PostgreSQL backend.
#pragma once

#include <tern/rpc_error.hpp>

#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

struct pg_conn;
struct pg_result;

namespace tern::demo {

/// A PostgreSQL error, with its SQLSTATE ("23505" for a unique violation;
/// empty when the server could not be reached).
class pg_error : public std::runtime_error {
 public:
  pg_error(const std::string& what, std::string sqlstate)
      : std::runtime_error(what), sqlstate_(std::move(sqlstate)) {}
  [[nodiscard]] const std::string& sqlstate() const noexcept { return sqlstate_; }
  [[nodiscard]] bool unique_violation() const noexcept { return sqlstate_ == "23505"; }

 private:
  std::string sqlstate_;
};

/// Whether `where` names a PostgreSQL database (postgres:// or postgresql://).
bool is_postgres_url(std::string_view where);

/// One connection to a PostgreSQL server (a libpq connection string or URL:
/// postgres://user:password@host:5432/db). Statements take text parameters
/// ($1, $2, ...) and give rows of text (nullopt for NULL); each distinct
/// statement text is prepared once per session. A connection found broken
/// is made again once before a statement fails. The set-up SQL (the schema)
/// runs once, on the first session that reaches the server: until then
/// every statement fails as the server does, so a service can start, and
/// answer 503, while its database is still down.
/// Thread safety: callers serialize access with mutex() (the services
/// reach it from the offload pool's threads).
class pg_db {
 public:
  /// Connects on first use; `setup` (statements separated by ';') runs
  /// before the first statement.
  explicit pg_db(std::string url, std::string setup = {});
  ~pg_db();
  pg_db(const pg_db&) = delete;
  pg_db& operator=(const pg_db&) = delete;

  using row = std::vector<std::optional<std::string>>;
  /// One statement with parameters. Throws pg_error.
  std::vector<row> query(std::string_view sql, const std::vector<std::string>& params = {});
  /// Statements without parameters, separated by ';' (one transaction if
  /// they say BEGIN ... COMMIT). Throws pg_error.
  void exec(std::string_view sql);
  /// Connects (and sets up) now if not yet done; false (and a log line) if
  /// the server cannot be reached. Throws pg_error on other errors.
  bool try_connect();
  [[nodiscard]] std::mutex& mutex() noexcept { return mutex_; }

 private:
  void ensure_connected();
  void open();
  void exec_now(const std::string& sql);
  // Prepares `sql` in this session if it is new, then runs it.
  pg_result* run(const std::string& sql, const std::vector<const char*>& values);
  std::string url_;
  std::string setup_;
  bool set_up_ = false;
  pg_conn* conn_ = nullptr;
  // Statement text -> its prepared statement's name, for this session.
  std::unordered_map<std::string, std::string> prepared_;
  std::mutex mutex_;
};

/// Logs why the database cannot be reached (at most a line a second).
void log_unavailable(const pg_error& e);

/// Runs `f`; a server that cannot be reached (a pg_error without SQLSTATE)
/// becomes rpc_error 503 "database unavailable" for the caller, its detail
/// logged here.
template <class F>
auto pg_guard(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const pg_error& e) {
    if (!e.sqlstate().empty()) throw;
    log_unavailable(e);
    throw rpc_error(503, "database unavailable");
  }
}

/// A column's text as an integer, a number, or text (NULL: 0, 0, "").
std::int64_t pg_int(const std::optional<std::string>& v);
double pg_real(const std::optional<std::string>& v);
std::string pg_text(std::optional<std::string>& v);

}  // namespace tern::demo
