#include "products_repository.hpp"

#include <algorithm>

namespace tern::demo {

new_product validate_new_product(const fields& f) {
  new_product p{f.required_text("name", 100)};
  auto price = f.number("price");
  if (!price) throw rpc_error(400, "price is required");
  if (*price < 0) throw rpc_error(400, "price must not be negative");
  p.price = *price;
  return p;
}

products_repository::products_repository(const std::string& db_path) : db_(db_path) {
  db_.exec(
      "CREATE TABLE IF NOT EXISTS products ("
      " id INTEGER PRIMARY KEY AUTOINCREMENT,"
      " name TEXT NOT NULL UNIQUE,"
      " price REAL NOT NULL CHECK (price >= 0))");
  db_.exec(
      "INSERT INTO products (name, price) SELECT * FROM (VALUES"
      " ('Analytical Engine', 1843.0),"
      " ('Bombe', 1939.5),"
      " ('UNIVAC I', 1951.25))"
      " WHERE NOT EXISTS (SELECT 1 FROM products)");
  list_ = db_.prepare("SELECT id, name, price FROM products ORDER BY id LIMIT ? OFFSET ?");
  find_ = db_.prepare("SELECT id, name, price FROM products WHERE id = ?");
  insert_ = db_.prepare("INSERT INTO products (name, price) VALUES (?, ?)");
}

std::vector<product> products_repository::list(const page& p) {
  std::lock_guard lock(db_.mutex());
  auto& q = list_->reset().bind(1, p.limit).bind(2, p.offset);
  std::vector<product> out;
  out.reserve(static_cast<std::size_t>(
      std::min<std::int64_t>(p.limit, 16)));  // one allocation for most pages
  while (q.step()) out.push_back({q.int64(0), q.text(1), q.real(2)});
  return out;
}

std::optional<product> products_repository::find(std::int64_t id) {
  std::lock_guard lock(db_.mutex());
  auto& q = find_->reset().bind(1, id);
  if (!q.step()) return std::nullopt;
  return product{q.int64(0), q.text(1), q.real(2)};
}

product products_repository::create(const new_product& p) {
  std::lock_guard lock(db_.mutex());
  try {
    insert_->reset().bind(1, p.name).bind(2, p.price).step();
  } catch (const sqlite_error& e) {
    if (e.constraint()) throw rpc_error(409, "a product named " + p.name + " already exists");
    throw;
  }
  return product{db_.last_insert_rowid(), p.name, p.price};
}

}  // namespace tern::demo
