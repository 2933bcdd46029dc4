// The products service's logic and storage, apart from any transport.
#pragma once

#include "requests.hpp"

#include <msgpack.hpp>

#include <cstdint>
#include <memory>
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

/// create_product's data: name required, price a number >= 0.
struct new_product {
  std::string name;
  double price = 0;
  MSGPACK_DEFINE_MAP(name, price);

  static auto rules() {
    return tern::rules(tern::field(&new_product::name, tern::length(1, 100)),
                       tern::field(&new_product::price, tern::at_least(0)));
  }
};

/// Products in an SQLite file (the default: one instance, no server), or
/// in PostgreSQL (postgres://... : what replicas share), created and seeded
/// on first use. Thread-safe (one lock around the connection); calls
/// block, so the service runs them through tern::offload, or, for SQLite
/// reads, on its loop while they are quick (tern::quick_path, try_*). With PostgreSQL,
/// a database that cannot be reached is an rpc_error 503.
class products_repository {
 public:
  /// `where`: an SQLite file's path, or a PostgreSQL URL.
  explicit products_repository(const std::string& where);
  ~products_repository();

  std::vector<product> list(const page& p);
  std::optional<product> find(std::int64_t id);
  /// list() and find() when they can answer without waiting, else
  /// std::nullopt: another thread holds the SQLite connection's mutex, or
  /// the database is PostgreSQL (the network: always through the pool).
  std::optional<std::vector<product>> try_list(const page& p);
  std::optional<std::optional<product>> try_find(std::int64_t id);
  /// Throws rpc_error 409 when the name is taken.
  product create(const new_product& p);

  /// Whether calls can be served now (false while PostgreSQL cannot be
  /// reached): what the service's readiness reports.
  bool ready();

  struct backend {
    virtual ~backend() = default;
    virtual bool ready() { return true; }
    virtual std::vector<product> list(const page& p) = 0;
    virtual std::optional<product> find(std::int64_t id) = 0;
    virtual std::optional<std::vector<product>> try_list(const page&) { return std::nullopt; }
    virtual std::optional<std::optional<product>> try_find(std::int64_t) { return std::nullopt; }
    virtual product create(const new_product& n) = 0;
  };

 private:
  std::unique_ptr<backend> backend_;
};

}  // namespace tern::demo
