#include "sqlite_db.hpp"

#include <sqlite3.h>

namespace tern::demo {

namespace {
[[noreturn]] void fail(sqlite3* db, int rc, std::string_view what) {
  throw sqlite_error(std::string(what) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)),
                     db ? sqlite3_extended_errcode(db) : rc);
}
}  // namespace

bool sqlite_error::constraint() const noexcept {
  return (code_ & 0xff) == SQLITE_CONSTRAINT;
}

statement::statement(sqlite3* db, std::string_view sql) : db_(db) {
  int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
  if (rc != SQLITE_OK) fail(db, rc, "prepare");
}

statement::~statement() {
  sqlite3_finalize(stmt_);
}

statement& statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  return *this;
}

statement& statement::bind(int index, std::int64_t v) {
  sqlite3_bind_int64(stmt_, index, v);
  return *this;
}

statement& statement::bind(int index, double v) {
  sqlite3_bind_double(stmt_, index, v);
  return *this;
}

statement& statement::bind(int index, std::string_view v) {
  sqlite3_bind_text(stmt_, index, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}

bool statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(db_, rc, "step");
}

std::int64_t statement::int64(int column) const {
  return sqlite3_column_int64(stmt_, column);
}
double statement::real(int column) const {
  return sqlite3_column_double(stmt_, column);
}

std::string statement::text(int column) const {
  auto p = sqlite3_column_text(stmt_, column);
  return p ? std::string(reinterpret_cast<const char*>(p),
                         static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)))
           : std::string();
}

sqlite_db::sqlite_db(const std::string& path) {
  // No memory statistics: with them on (SQLite's default) every allocation
  // SQLite makes takes a global mutex. Only possible before SQLite starts,
  // so once per process; if SQLite is already running, this is refused and
  // harmless.
  static const int memstatus_off = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  (void)memstatus_off;
  int rc =
      sqlite3_open_v2(path.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string why = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    throw sqlite_error("cannot open " + path + ": " + why, rc);
  }
  sqlite3_busy_timeout(db_, 2000);
  exec("PRAGMA journal_mode=WAL");
  exec("PRAGMA synchronous=NORMAL");
  // One process owns the file: hold its lock instead of taking POSIX locks
  // (two fcntl calls) around every read transaction.
  exec("PRAGMA locking_mode=EXCLUSIVE");
}

sqlite_db::~sqlite_db() {
  sqlite3_close(db_);
}

void sqlite_db::exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  if (sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = err ? err : "unknown error";
    sqlite3_free(err);
    throw sqlite_error(why, sqlite3_extended_errcode(db_));
  }
}

std::unique_ptr<statement> sqlite_db::prepare(std::string_view sql) {
  return std::make_unique<statement>(db_, sql);
}

std::int64_t sqlite_db::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(db_);
}

}  // namespace tern::demo
