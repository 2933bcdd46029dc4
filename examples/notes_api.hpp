// examples/notes_api.hpp: the notes service's messages, shared by the service and its callers.
#pragma once

#include <tern/tern.hpp>

#include <cstdint>
#include <string>

struct note {
  std::uint64_t id = 0;
  std::string text;
  MSGPACK_DEFINE_MAP(id, text);
};

struct add_note {
  std::string text;
  MSGPACK_DEFINE_MAP(text);
};

struct note_ref {
  std::uint64_t id = 0;
  MSGPACK_DEFINE_MAP(id);
};
