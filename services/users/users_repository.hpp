// The users service's logic and storage, apart from any transport.
#pragma once

#include "fields.hpp"
#include "sqlite_db.hpp"

#include <msgpack.hpp>

#include <cstdint>
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

struct new_user {
  std::string name;
  std::string email;
};

/// Checks create_user's data: name and email required, email well-formed.
/// Throws rpc_error 400 naming the field.
new_user validate_new_user(const fields& f);

/// Users in an SQLite file, created and seeded on first use.
/// Thread-safe (one lock around the connection); calls block, so the
/// service runs them through tern::offload.
class users_repository {
 public:
  explicit users_repository(const std::string& db_path);

  std::vector<user> list(const page& p);
  std::optional<user> find(std::int64_t id);
  /// Throws rpc_error 409 when the email is taken.
  user create(const new_user& u);

 private:
  sqlite_db db_;
  std::unique_ptr<statement> list_, find_, insert_;
};

}  // namespace tern::demo
