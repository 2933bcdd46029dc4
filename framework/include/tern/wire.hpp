// Which wire a service's port speaks, and a caller's connection with it.
#pragma once

#include "tern/transport/codec.hpp"

#include <cstdint>
#include <memory>
#include <string_view>

namespace tern {

/// The wire format of a connection. Handlers, patterns and calls are the
/// same on both; only the bytes differ.
enum class wire_format : std::uint8_t {
  tern,    ///< tern's msgpack frames (docs/protocol.md): the default, and the faster
  nestjs,  ///< NestJS's own TCP transport, JSON frames (docs/nestjs-migration.md)
};

/// "tern" (or "msgpack") and "nestjs"; throws std::invalid_argument for
/// any other name.
wire_format parse_wire_format(std::string_view name);
/// "tern" or "nestjs".
std::string_view to_string(wire_format w) noexcept;

/// The codec for a wire format, with the given frame limit (bytes).
std::shared_ptr<const transport::codec> make_codec(wire_format w, std::uint32_t max_frame);

}  // namespace tern
