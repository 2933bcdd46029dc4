// A small wrapper over libpq for the demo services' PostgreSQL backend.
#pragma once

#include <tern/rpc_error.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
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
  /// The server cannot serve now: not reached (no SQLSTATE), a connection
  /// exception (class 08), shutting down or starting (57P01-57P03), or a
  /// statement over its statement_timeout (57014).
  [[nodiscard]] bool unavailable() const noexcept {
    return sqlstate_.empty() || sqlstate_.rfind("08", 0) == 0 || sqlstate_ == "57P01" ||
           sqlstate_ == "57P02" || sqlstate_ == "57P03" || sqlstate_ == "57014";
  }

 private:
  std::string sqlstate_;
};

/// Whether `where` names a PostgreSQL database (postgres:// or postgresql://).
bool is_postgres_url(std::string_view where);

/// One connection to a PostgreSQL server (a libpq connection string or URL:
/// postgres://user:password@host:5432/db). Statements take text parameters
/// ($1, $2, ...) and give rows of text (nullopt for NULL); each distinct
/// statement text is prepared once per session.
///
/// Connections are made by a thread of its own, never by a caller: a
/// server that is slow to resolve or to answer (a container restarting)
/// costs callers nothing but a prompt 503. Until a session is up, a call
/// waits at most `wait` for the attempt under way and then fails as the
/// server is unreachable; once an attempt has failed, calls fail at once
/// while the thread tries again (backing off from 100 ms to 2 s). A session
/// the server ends is made again the same way, and a read on it is sent
/// again once. The set-up SQL (the schema) runs on the first session that
/// reaches the server. connected() says whether a session is up, for
/// readiness.
/// Thread safety: every member may be called from any thread.
class pg_db {
 public:
  /// Starts connecting; `setup` (statements separated by ';') runs before
  /// the first statement. `wait`: how long a call waits for an attempt
  /// under way.
  explicit pg_db(std::string url, std::string setup = {},
                 std::chrono::milliseconds wait = std::chrono::milliseconds(2000));
  /// Stops the connecting thread and joins it (an attempt under way ends
  /// by its connect_timeout, 5 s unless the URL says otherwise).
  ~pg_db();
  pg_db(const pg_db&) = delete;
  pg_db& operator=(const pg_db&) = delete;

  using row = std::vector<std::optional<std::string>>;
  /// One statement with parameters. Throws pg_error (no SQLSTATE: the
  /// server cannot be reached).
  std::vector<row> query(std::string_view sql, const std::vector<std::string>& params = {});
  /// Statements without parameters, separated by ';' (one transaction if
  /// they say BEGIN ... COMMIT). Throws pg_error.
  void exec(std::string_view sql);
  /// Whether a session is up (set up, and not found broken since). Never
  /// waits for a statement under way.
  [[nodiscard]] bool connected() const noexcept { return up_.load(std::memory_order_relaxed); }

 private:
  enum class state { connecting, connected, down };
  // Waits (the lock held) for a session while an attempt is under way, up
  // to wait_ after the attempt began; throws pg_error when there is none.
  void await_session(std::unique_lock<std::mutex>& lock);
  // The session broke under a statement: hand it to the connecting thread.
  void lost(std::unique_lock<std::mutex>& lock);
  void connect_loop(const std::stop_token& stop);
  // Prepares `sql` in this session if it is new, then runs it.
  pg_result* run(const std::string& sql, const std::vector<const char*>& values);
  std::string url_;
  std::string setup_;
  std::chrono::milliseconds wait_;
  // When the state last became connecting (start, or a session found broken).
  std::chrono::steady_clock::time_point connecting_since_ = std::chrono::steady_clock::now();
  bool set_up_ = false;  // the connecting thread's alone
  mutable std::mutex mutex_;
  std::condition_variable_any changed_;
  state state_ = state::connecting;
  std::atomic<bool> up_{false};  // state_ == connected, read without the lock
  std::string why_down_;
  pg_conn* conn_ = nullptr;
  // Statement text -> its prepared statement's name, for this session.
  std::unordered_map<std::string, std::string> prepared_;
  std::jthread connector_;  // last: started once the rest is made
};

/// Logs why the database cannot be reached (at most a line a second).
void log_unavailable(const pg_error& e);

/// Runs `f`; a server that cannot serve (pg_error::unavailable()) becomes
/// rpc_error 503 "database unavailable" for the caller, its detail logged
/// here.
template <class F>
auto pg_guard(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const pg_error& e) {
    if (!e.unavailable()) throw;
    log_unavailable(e);
    throw rpc_error(503, "database unavailable");
  }
}

/// A column's text as an integer, a number, or text (NULL: 0, 0, "").
std::int64_t pg_int(const std::optional<std::string>& v);
double pg_real(const std::optional<std::string>& v);
std::string pg_text(std::optional<std::string>& v);

}  // namespace tern::demo
