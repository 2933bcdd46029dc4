#include "pg_db.hpp"

#include <tern/log_limit.hpp>

#include <dlfcn.h>
#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

#include <memory>

namespace tern::demo {

namespace {

// libpq, opened when a service first uses PostgreSQL rather than linked:
// linked, it maps its TLS, LDAP and Kerberos libraries into every service,
// SQLite ones too, about 4 MiB of each one's resident memory
// (docs/benchmarks.md, "Resident memory").
#define TERN_LIBPQ(X)     \
  X(PQclear)              \
  X(PQconnectdbParams)    \
  X(PQerrorMessage)       \
  X(PQexec)               \
  X(PQexecPrepared)       \
  X(PQfinish)             \
  X(PQgetisnull)          \
  X(PQgetlength)          \
  X(PQgetvalue)           \
  X(PQnfields)            \
  X(PQntuples)            \
  X(PQprepare)            \
  X(PQresultErrorField)   \
  X(PQresultErrorMessage) \
  X(PQresultStatus)       \
  X(PQsetNoticeProcessor) \
  X(PQstatus)             \
  X(PQtransactionStatus)

struct libpq_api {
#define TERN_LIBPQ_MEMBER(f) decltype(&::f) f = nullptr;
  TERN_LIBPQ(TERN_LIBPQ_MEMBER)
#undef TERN_LIBPQ_MEMBER
};

// Throws std::runtime_error, saying what to install, when libpq cannot be
// opened (a failed attempt is tried again on the next call).
const libpq_api& pq() {
  static const libpq_api api = [] {
    void* lib = ::dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      throw std::runtime_error(std::string("PostgreSQL needs libpq (Debian's libpq5): ") +
                               ::dlerror());
    }
    libpq_api a;
    auto find = [lib](auto& f, const char* name) {
      f = reinterpret_cast<std::remove_reference_t<decltype(f)>>(::dlsym(lib, name));
      if (!f) {
        ::dlclose(lib);  // opened again on the next attempt
        throw std::runtime_error(std::string("libpq.so.5 has no ") + name);
      }
    };
#define TERN_LIBPQ_FIND(f) find(a.f, #f);
    TERN_LIBPQ(TERN_LIBPQ_FIND)
#undef TERN_LIBPQ_FIND
    return a;  // the library stays open for the process's life
  }();
  return api;
}
#undef TERN_LIBPQ

struct result_deleter {
  void operator()(PGresult* r) const noexcept { pq().PQclear(r); }
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
  // Every pg_db's thread, and callers, may log: the limiter is shared.
  static std::mutex m;
  static tern::log_limiter limit;
  std::lock_guard lock(m);
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

namespace {

// A new session, or why there is none (a pg_error).
PGconn* open_session(const std::string& url) {
  // Bounds, so that no call holds the connection for long (the URL may set
  // its own of each: it comes later and wins):
  // - a server that does not answer costs 5 s, not the TCP timeout;
  // - a server gone silent mid-statement (packets dropped) is noticed in
  //   10 s (unacknowledged data, then keepalives), not the 15 minutes of
  //   TCP retransmission;
  // - a statement, the set-up's advisory lock included, runs 10 s at most.
  const char* keys[] = {"connect_timeout",
                        "tcp_user_timeout",
                        "keepalives",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        "options",
                        "dbname",
                        nullptr};
  const char* values[] = {"5",         "10000", "1", "5", "2", "3", "-c statement_timeout=10000",
                          url.c_str(), nullptr};
  PGconn* c = pq().PQconnectdbParams(keys, values, 1);
  if (pq().PQstatus(c) != CONNECTION_OK) {
    // The URL may hold a password: the error names the server, not the URL.
    pg_error e("cannot connect to PostgreSQL: " + message(pq().PQerrorMessage(c)), "");
    pq().PQfinish(c);
    throw e;
  }
  // The server's notices ("relation already exists, skipping") go to the
  // debug log, not to stderr.
  pq().PQsetNoticeProcessor(
      c, [](void*, const char* m) { spdlog::debug("PostgreSQL: {}", tern::clip(message(m))); },
      nullptr);
  return c;
}

// Runs statements without parameters; throws pg_error.
void exec_on(PGconn* c, const std::string& text) {
  result_ptr r(pq().PQexec(c, text.c_str()));
  auto status = pq().PQresultStatus(r.get());
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    const char* state = pq().PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
    auto why = message(pq().PQresultErrorMessage(r.get()));
    pg_error e(why.empty() ? message(pq().PQerrorMessage(c)) : why, state ? state : "");
    // A BEGIN whose later statement failed leaves the transaction open.
    if (pq().PQtransactionStatus(c) == PQTRANS_INERROR) result_ptr(pq().PQexec(c, "ROLLBACK"));
    throw e;
  }
}

}  // namespace

pg_db::pg_db(std::string url, std::string setup, std::chrono::milliseconds wait)
    : url_((pq(), std::move(url))),  // libpq opened, or why not, before the thread starts
      setup_(std::move(setup)),
      wait_(wait),
      set_up_(setup_.empty()),
      connector_([this](const std::stop_token& stop) { connect_loop(stop); }) {}

pg_db::~pg_db() {
  connector_.request_stop();
  connector_.join();
  if (conn_) pq().PQfinish(conn_);
}

void pg_db::connect_loop(const std::stop_token& stop) {
  auto backoff = std::chrono::milliseconds(100);
  std::unique_lock lock(mutex_);
  while (!stop.stop_requested()) {
    if (state_ == state::connected) {
      // Until a caller finds the session broken.
      changed_.wait(lock, stop, [&] { return state_ != state::connected; });
      backoff = std::chrono::milliseconds(100);
      continue;
    }
    lock.unlock();
    PGconn* made = nullptr;
    std::optional<pg_error> failed;
    try {
      made = open_session(url_);
      if (!set_up_) {
        try {
          exec_on(made, setup_);
        } catch (...) {
          pq().PQfinish(made);
          throw;
        }
        set_up_ = true;
      }
    } catch (const pg_error& e) {
      made = nullptr;
      failed = e;
    } catch (const std::exception& e) {  // out of memory: an attempt that failed too
      made = nullptr;
      failed = pg_error(e.what(), "");
    }
    lock.lock();
    if (made) {
      if (conn_) pq().PQfinish(conn_);
      conn_ = made;
      prepared_.clear();  // a new session has no prepared statements
      bool was_down = state_ == state::down;
      state_ = state::connected;
      up_ = true;
      changed_.notify_all();
      if (was_down) spdlog::info("connected to PostgreSQL");
      continue;
    }
    // Calls fail at once from now on, and say why.
    state_ = state::down;
    up_ = false;
    why_down_ = failed->what();
    changed_.notify_all();
    log_unavailable(*failed);
    changed_.wait_for(lock, stop, backoff, [] { return false; });
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
  }
}

void pg_db::await_session(std::unique_lock<std::mutex>& lock) {
  if (state_ == state::connecting) {
    // Up to wait_ from when the attempt began, not from each caller's
    // arrival: callers queue (one worker thread runs them in turn), and a
    // wait each would add up past their callers' deadlines.
    changed_.wait_until(lock, connecting_since_ + wait_,
                        [&] { return state_ != state::connecting; });
  }
  if (state_ == state::connected) return;
  throw pg_error(state_ == state::down ? why_down_ : "cannot connect to PostgreSQL: no answer yet",
                 "");
}

void pg_db::lost(std::unique_lock<std::mutex>&) {
  state_ = state::connecting;
  connecting_since_ = std::chrono::steady_clock::now();
  up_ = false;
  changed_.notify_all();
}

PGresult* pg_db::run(const std::string& sql, const std::vector<const char*>& values) {
  const int n = static_cast<int>(values.size());
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    // Parsed and planned once per session, not once per call.
    std::string name = "tern_" + std::to_string(prepared_.size() + 1);
    result_ptr made(pq().PQprepare(conn_, name.c_str(), sql.c_str(), n, nullptr));
    if (pq().PQresultStatus(made.get()) != PGRES_COMMAND_OK) return made.release();
    it = prepared_.emplace(sql, std::move(name)).first;
  }
  return pq().PQexecPrepared(conn_, it->second.c_str(), n, values.data(), nullptr, nullptr, 0);
}

std::vector<pg_db::row> pg_db::query(std::string_view sql, const std::vector<std::string>& params) {
  std::string text(sql);
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.c_str());
  std::unique_lock lock(mutex_);
  result_ptr r;
  for (int attempt = 0; attempt < 2; ++attempt) {
    await_session(lock);
    r.reset(run(text, values));
    if (pq().PQstatus(conn_) == CONNECTION_OK) break;
    // A session the server ended (a restart, an idle timeout) is made
    // again, and a read sent again on it, once; a write is not (it may
    // have been committed).
    lost(lock);
    if (attempt == 1 || text.compare(0, 6, "SELECT") != 0) break;
  }
  auto status = pq().PQresultStatus(r.get());
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    const char* state = pq().PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
    // No result at all (out of memory, a lost connection): the connection says why.
    auto why = message(pq().PQresultErrorMessage(r.get()));
    throw pg_error(why.empty() ? message(pq().PQerrorMessage(conn_)) : why, state ? state : "");
  }
  std::vector<row> rows;
  const int n = pq().PQntuples(r.get()), cols = pq().PQnfields(r.get());
  rows.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    row& out = rows.emplace_back();
    out.reserve(static_cast<std::size_t>(cols));
    for (int c = 0; c < cols; ++c) {
      if (pq().PQgetisnull(r.get(), i, c)) {
        out.emplace_back(std::nullopt);
      } else {
        out.emplace_back(std::string(pq().PQgetvalue(r.get(), i, c),
                                     static_cast<std::size_t>(pq().PQgetlength(r.get(), i, c))));
      }
    }
  }
  return rows;
}

void pg_db::exec(std::string_view sql) {
  std::unique_lock lock(mutex_);
  await_session(lock);
  try {
    exec_on(conn_, std::string(sql));
  } catch (const pg_error&) {
    if (pq().PQstatus(conn_) != CONNECTION_OK) lost(lock);  // made again, not sent again
    throw;
  }
}

}  // namespace tern::demo
