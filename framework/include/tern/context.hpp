// What a handler may know about the message it is handling.
#pragma once

#include <msgpack.hpp>

#include <string>

namespace tern {

/// Facts about the current message, passed to handlers that take a
/// `const tern::message_context&` parameter. Valid for the whole handler,
/// coroutine handlers included.
class message_context {
 public:
  message_context(const std::string& peer, const std::string& pattern, msgpack::object_handle meta)
      : peer_(&peer), pattern_(&pattern), meta_(std::move(meta)) {}

  /// The caller's address, "host:port".
  [[nodiscard]] const std::string& peer() const noexcept { return *peer_; }
  /// The canonical pattern the handler was registered for.
  [[nodiscard]] const std::string& pattern() const noexcept { return *pattern_; }
  /// The packet's `meta` map (request id, deadline, trace context), or nil.
  [[nodiscard]] const msgpack::object& meta() const noexcept { return meta_.get(); }

 private:
  const std::string* peer_;
  const std::string* pattern_;
  msgpack::object_handle meta_;
};

}  // namespace tern
