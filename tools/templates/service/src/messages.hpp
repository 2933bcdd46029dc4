// The @NAME@ service's messages: what its callers send and get back.
#pragma once

#include <tern/tern.hpp>

#include <string>

namespace @NAME@ {

// {cmd: "greet"} takes a greet_request, checked before the handler runs:
// {"name": ""} is answered 400 "name: must not be empty".
struct greet_request {
  std::string name;
  MSGPACK_DEFINE_MAP(name);

  static auto rules() { return tern::rules(tern::field(&greet_request::name, tern::length(1, 100))); }
};

struct greeting {
  std::string message;
  MSGPACK_DEFINE_MAP(message);
};

}  // namespace @NAME@
