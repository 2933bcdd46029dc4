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

// Request data: a handler taking add_note gets it checked against these rules
// first; {"text": ""} is answered 400 "text: must not be empty".
struct add_note {
  std::string text;
  MSGPACK_DEFINE_MAP(text);

  static auto rules() { return tern::rules(tern::field(&add_note::text, tern::length(1, 1000))); }
};

struct note_ref {
  std::uint64_t id = 0;
  MSGPACK_DEFINE_MAP(id);

  static auto rules() { return tern::rules(tern::field(&note_ref::id, tern::at_least(1))); }
};
