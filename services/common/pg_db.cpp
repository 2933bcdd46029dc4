#include "pg_db.hpp"

#include <tern/log_limit.hpp>

#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

#include <memory>

namespace tern::demo {

namespace {

struct result_deleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using result_ptr = std::unique_ptr<PGresult, result_deleter>;

// The message libpq gives, without its trailing newline.
std::string message(const char* m) {
  std::string s = m ? m : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

void log_unavailable(const pg_error& e) {
  // One line a second at most, while the database is down.
  static tern::log_limiter limit;
  if (std::size_t held = 0; limit.allow(held)) {
    spdlog::warn("{}{}", tern::clip(e.what()), tern::held_back(held));
  }
}

std::int64_t pg_int(const std::optional<std::string>& v) {
  return v ? std::strtoll(v->c_str(), nullptr, 10) : 0;
}

double pg_real(const std::optional<std::string>& v) {
  return v ? std::strtod(v->c_str(), nullptr) : 0;
}

std::string pg_text(std::optional<std::string>& v) {
  return v ? std::move(*v) : std::string();
}

bool is_postgres_url(std::string_view where) {
  return where.rfind("postgres://", 0) == 0 || where.rfind("postgresql://", 0) == 0;
}

pg_db::pg_db(std::string url, std::string setup)
    : url_(std::move(url)), setup_(std::move(setup)), set_up_(setup_.empty()) {}

pg_db::~pg_db() {
  if (conn_) PQfinish(conn_);
}

bool pg_db::try_connect() {
  std::lock_guard lock(mutex_);
  try {
    ensure_connected();
    return true;
  } catch (const pg_error& e) {
    if (!e.sqlstate().empty()) throw;
    log_unavailable(e);
    return false;
  }
}

void pg_db::ensure_connected() {
  if (!conn_ || PQstatus(conn_) != CONNECTION_OK) open();
  if (!set_up_) {
    exec_now(setup_);
    set_up_ = true;
  }
}

void pg_db::open() {
  prepared_.clear();  // a new session has no prepared statements
  if (conn_) {
    PQreset(conn_);
  } else {
    // A server that does not answer costs 5 s, not the TCP timeout (the URL
    // may set its own connect_timeout: it comes later and wins).
    const char* keys[] = {"connect_timeout", "dbname", nullptr};
    const char* values[] = {"5", url_.c_str(), nullptr};
    conn_ = PQconnectdbParams(keys, values, 1);
  }
  if (PQstatus(conn_) != CONNECTION_OK) {
    // The URL may hold a password: the error names the server, not the URL.
    throw pg_error("cannot connect to PostgreSQL: " + message(PQerrorMessage(conn_)), "");
  }
  // The server's notices ("relation already exists, skipping") go to the
  // debug log, not to stderr.
  PQsetNoticeProcessor(
      conn_, [](void*, const char* m) { spdlog::debug("PostgreSQL: {}", tern::clip(message(m))); },
      nullptr);
}

PGresult* pg_db::run(const std::string& sql, const std::vector<const char*>& values) {
  const int n = static_cast<int>(values.size());
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    // Parsed and planned once per session, not once per call.
    std::string name = "tern_" + std::to_string(prepared_.size() + 1);
    result_ptr made(PQprepare(conn_, name.c_str(), sql.c_str(), n, nullptr));
    if (PQresultStatus(made.get()) != PGRES_COMMAND_OK) return made.release();
    it = prepared_.emplace(sql, std::move(name)).first;
  }
  return PQexecPrepared(conn_, it->second.c_str(), n, values.data(), nullptr, nullptr, 0);
}

std::vector<pg_db::row> pg_db::query(std::string_view sql, const std::vector<std::string>& params) {
  std::string text(sql);
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.c_str());
  result_ptr r;
  for (int attempt = 0; attempt < 2; ++attempt) {
    ensure_connected();
    r.reset(run(text, values));
    // A connection the server dropped (a restart) is made again, and a
    // read sent again, once; a write is not (it may have been committed).
    bool read = text.compare(0, 6, "SELECT") == 0;
    if (PQstatus(conn_) == CONNECTION_OK || attempt == 1 || !read) break;
  }
  auto status = PQresultStatus(r.get());
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    const char* state = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
    // No result at all (out of memory, a lost connection): the connection says why.
    auto why = message(PQresultErrorMessage(r.get()));
    throw pg_error(why.empty() ? message(PQerrorMessage(conn_)) : why, state ? state : "");
  }
  std::vector<row> rows;
  const int n = PQntuples(r.get()), cols = PQnfields(r.get());
  rows.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    row& out = rows.emplace_back();
    out.reserve(static_cast<std::size_t>(cols));
    for (int c = 0; c < cols; ++c) {
      if (PQgetisnull(r.get(), i, c)) {
        out.emplace_back(std::nullopt);
      } else {
        out.emplace_back(std::string(PQgetvalue(r.get(), i, c),
                                     static_cast<std::size_t>(PQgetlength(r.get(), i, c))));
      }
    }
  }
  return rows;
}

void pg_db::exec(std::string_view sql) {
  ensure_connected();
  exec_now(std::string(sql));
}

void pg_db::exec_now(const std::string& text) {
  result_ptr r(PQexec(conn_, text.c_str()));
  auto status = PQresultStatus(r.get());
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    const char* state = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
    pg_error e(message(PQresultErrorMessage(r.get())), state ? state : "");
    // A BEGIN whose later statement failed leaves the transaction open.
    if (PQtransactionStatus(conn_) == PQTRANS_INERROR) result_ptr(PQexec(conn_, "ROLLBACK"));
    throw e;
  }
}

}  // namespace tern::demo
