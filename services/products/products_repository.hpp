// The products service's logic and storage, apart from any transport.
#pragma once

#include "fields.hpp"
#include "sqlite_db.hpp"

#include <msgpack.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tern::demo {

struct product {
  std::int64_t id = 0;
  std::string name;
  double price = 0;
  MSGPACK_DEFINE_MAP(id, name, price);
};

struct new_product {
  std::string name;
  double price = 0;
};

/// Checks create_product's data: name required, price a number >= 0.
/// Throws rpc_error 400 naming the field.
new_product validate_new_product(const fields& f);

/// Products in an SQLite file, created and seeded on first use.
/// Thread-safe (one lock around the connection); calls block, so the
/// service runs them through tern::offload.
class products_repository {
 public:
  explicit products_repository(const std::string& db_path);

  std::vector<product> list(const page& p);
  std::optional<product> find(std::int64_t id);
  /// Throws rpc_error 409 when the name is taken.
  product create(const new_product& p);

 private:
  sqlite_db db_;
  std::unique_ptr<statement> list_, find_, insert_;
};

}  // namespace tern::demo
