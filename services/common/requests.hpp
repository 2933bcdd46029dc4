// The request DTOs both demo services take: a listing's page and an id.
#pragma once

#include <tern/dto.hpp>

#include <cstdint>

namespace tern::demo {

/// limit/offset of a listing: limit 1..1000 (default 50), offset >= 0.
struct page {
  std::int64_t limit = 50;
  std::int64_t offset = 0;
  MSGPACK_DEFINE_MAP(limit, offset);

  static auto rules() {
    return tern::rules(tern::field(&page::limit, tern::optional, tern::range(1, 1000)),
                       tern::field(&page::offset, tern::optional, tern::at_least(0)));
  }
};

/// One record by its id, a positive integer.
struct by_id {
  std::int64_t id = 0;
  MSGPACK_DEFINE_MAP(id);

  static auto rules() { return tern::rules(tern::field(&by_id::id, tern::at_least(1))); }
};

}  // namespace tern::demo
