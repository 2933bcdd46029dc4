// Reading a request's data map with errors that name the field.
#pragma once

#include <tern/rpc_error.hpp>

#include <msgpack.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tern::demo {

/// The fields of a request's data. Nil data counts as an empty map; any
/// other non-map, a field of the wrong type, or text that is not valid
/// UTF-8, is answered with rpc_error 400 naming the field.
class fields {
 public:
  explicit fields(const msgpack::object& data);

  [[nodiscard]] std::optional<std::string> text(std::string_view name) const;
  [[nodiscard]] std::optional<std::int64_t> integer(std::string_view name) const;
  [[nodiscard]] std::optional<double> number(std::string_view name) const;

  /// A present, non-empty string of at most `max` bytes.
  [[nodiscard]] std::string required_text(std::string_view name, std::size_t max = 200) const;

 private:
  [[nodiscard]] const msgpack::object* find(std::string_view name) const;
  const msgpack::object& data_;
};

/// limit/offset of a listing: limit 1..1000 (default 50), offset >= 0.
struct page {
  std::int64_t limit = 50;
  std::int64_t offset = 0;
};
page read_page(const fields& f);

/// An id field that must be a positive integer.
std::int64_t read_id(const fields& f);

}  // namespace tern::demo
