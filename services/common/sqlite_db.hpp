// A small RAII wrapper over SQLite for the demo services.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace tern::demo {

/// An SQLite error; `constraint()` is true for UNIQUE/NOT NULL/CHECK violations.
class sqlite_error : public std::runtime_error {
 public:
  sqlite_error(const std::string& what, int code) : std::runtime_error(what), code_(code) {}
  [[nodiscard]] bool constraint() const noexcept;
  [[nodiscard]] int code() const noexcept { return code_; }

 private:
  int code_;
};

/// One prepared statement; reset before each use by the owner.
class statement {
 public:
  statement(sqlite3* db, std::string_view sql);
  ~statement();
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  statement& reset();
  statement& bind(int index, std::int64_t v);
  statement& bind(int index, double v);
  statement& bind(int index, std::string_view v);
  /// Steps once: true when a row is ready, false when done. Throws sqlite_error.
  bool step();
  [[nodiscard]] std::int64_t int64(int column) const;
  [[nodiscard]] double real(int column) const;
  [[nodiscard]] std::string text(int column) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

/// A database file, opened (and created) at construction in WAL mode.
/// Thread safety: callers serialize access with mutex(), locked() or
/// try_locked() (the services reach it from their event loop and from the
/// offload pool's threads).
class sqlite_db {
 public:
  explicit sqlite_db(const std::string& path);
  ~sqlite_db();
  sqlite_db(const sqlite_db&) = delete;
  sqlite_db& operator=(const sqlite_db&) = delete;

  void exec(std::string_view sql);
  [[nodiscard]] std::unique_ptr<statement> prepare(std::string_view sql);
  [[nodiscard]] std::int64_t last_insert_rowid() const;
  [[nodiscard]] std::mutex& mutex() noexcept { return mutex_; }

  /// `read()` under the lock, waiting for it (on a worker thread).
  template <class F>
  auto locked(F read) {
    std::lock_guard lock(mutex_);
    return read();
  }
  /// `read()` under the lock if it is free now, else std::nullopt without
  /// waiting (on the event loop, which must not wait for a write). Nor does
  /// `read()` wait inside SQLite: the connection holds the file's lock for
  /// good (`locking_mode=EXCLUSIVE`, set at construction), so no other
  /// process's lock can put it in the busy handler. Without that pragma a
  /// read here could sleep up to the busy timeout (2 s).
  template <class F>
  auto try_locked(F read) -> std::optional<decltype(read())> {
    std::unique_lock lock(mutex_, std::try_to_lock);
    if (!lock) return std::nullopt;
    return read();
  }

 private:
  sqlite3* db_ = nullptr;
  std::mutex mutex_;
};

}  // namespace tern::demo
