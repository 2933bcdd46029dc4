// The users service's logic and storage, apart from any transport.
#pragma once

#include "requests.hpp"

#include <msgpack.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tern::demo {

struct user {
  std::int64_t id = 0;
  std::string name;
  std::string email;
  MSGPACK_DEFINE_MAP(id, name, email);
};

/// create_user's data: name and email required, email well-formed.
struct new_user {
  std::string name;
  std::string email;
  MSGPACK_DEFINE_MAP(name, email);

  static auto rules() {
    // A character of an address: no '@', no white space, no control
    // character (C0, DEL, C1 with NEL) and no line or paragraph separator
    // (U+2028, U+2029): text that could forge log lines or drive a terminal.
    const std::string c = R"([^@\s\x00-\x1f\x7f-\x9f\x{2028}\x{2029}])";
    const std::string last = R"([^.@\s\x00-\x1f\x7f-\x9f\x{2028}\x{2029}])";
    return tern::rules(tern::field(&new_user::name, tern::length(1, 100)),
                       tern::field(&new_user::email, tern::length(1, 254),
                                   tern::matches(c + "+@" + c + R"(+\.)" + c + "*" + last,
                                                 "must be a valid address")));
  }
};

/// Users in an SQLite file (the default: one instance, no server), or
/// in PostgreSQL (postgres://... : what replicas share), created and seeded
/// on first use. Thread-safe (one lock around the connection); calls
/// block, so the service runs them through tern::offload, or, for SQLite
/// reads, on its loop while they are quick (tern::quick_path, try_*). With PostgreSQL,
/// a database that cannot be reached is an rpc_error 503.
class users_repository {
 public:
  /// `where`: an SQLite file's path, or a PostgreSQL URL.
  explicit users_repository(const std::string& where);
  ~users_repository();

  std::vector<user> list(const page& p);
  std::optional<user> find(std::int64_t id);
  /// list() and find() when they can answer without waiting, else
  /// std::nullopt: another thread holds the SQLite connection's mutex, or
  /// the database is PostgreSQL (the network: always through the pool).
  std::optional<std::vector<user>> try_list(const page& p);
  std::optional<std::optional<user>> try_find(std::int64_t id);
  /// Throws rpc_error 409 when the email is taken.
  user create(const new_user& u);

  /// Whether calls can be served now (false while PostgreSQL cannot be
  /// reached): what the service's readiness reports.
  bool ready();

  struct backend {
    virtual ~backend() = default;
    virtual bool ready() { return true; }
    virtual std::vector<user> list(const page& p) = 0;
    virtual std::optional<user> find(std::int64_t id) = 0;
    virtual std::optional<std::vector<user>> try_list(const page&) { return std::nullopt; }
    virtual std::optional<std::optional<user>> try_find(std::int64_t) { return std::nullopt; }
    virtual user create(const new_user& n) = 0;
  };

 private:
  std::unique_ptr<backend> backend_;
};

}  // namespace tern::demo
