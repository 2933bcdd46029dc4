#include "users_repository.hpp"

#include <algorithm>

namespace tern::demo {

new_user validate_new_user(const fields& f) {
  new_user u{f.required_text("name", 100), f.required_text("email", 254)};
  auto at = u.email.find('@');
  if (at == std::string::npos || at == 0 || u.email.find('.', at) == std::string::npos ||
      u.email.back() == '.' || u.email.find(' ') != std::string::npos) {
    throw rpc_error(400, "email must be a valid address");
  }
  return u;
}

users_repository::users_repository(const std::string& db_path) : db_(db_path) {
  db_.exec(
      "CREATE TABLE IF NOT EXISTS users ("
      " id INTEGER PRIMARY KEY AUTOINCREMENT,"
      " name TEXT NOT NULL,"
      " email TEXT NOT NULL UNIQUE)");
  db_.exec(
      "INSERT INTO users (name, email) SELECT * FROM (VALUES"
      " ('Ada Lovelace', 'ada@example.com'),"
      " ('Alan Turing', 'alan@example.com'),"
      " ('Grace Hopper', 'grace@example.com'))"
      " WHERE NOT EXISTS (SELECT 1 FROM users)");
  list_ = db_.prepare("SELECT id, name, email FROM users ORDER BY id LIMIT ? OFFSET ?");
  find_ = db_.prepare("SELECT id, name, email FROM users WHERE id = ?");
  insert_ = db_.prepare("INSERT INTO users (name, email) VALUES (?, ?)");
}

std::vector<user> users_repository::list(const page& p) {
  std::lock_guard lock(db_.mutex());
  auto& q = list_->reset().bind(1, p.limit).bind(2, p.offset);
  std::vector<user> out;
  out.reserve(static_cast<std::size_t>(
      std::min<std::int64_t>(p.limit, 16)));  // one allocation for most pages
  while (q.step()) out.push_back({q.int64(0), q.text(1), q.text(2)});
  return out;
}

std::optional<user> users_repository::find(std::int64_t id) {
  std::lock_guard lock(db_.mutex());
  auto& q = find_->reset().bind(1, id);
  if (!q.step()) return std::nullopt;
  return user{q.int64(0), q.text(1), q.text(2)};
}

user users_repository::create(const new_user& u) {
  std::lock_guard lock(db_.mutex());
  try {
    insert_->reset().bind(1, u.name).bind(2, u.email).step();
  } catch (const sqlite_error& e) {
    if (e.constraint()) throw rpc_error(409, "a user with email " + u.email + " already exists");
    throw;
  }
  return user{db_.last_insert_rowid(), u.name, u.email};
}

}  // namespace tern::demo
