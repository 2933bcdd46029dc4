#include "tern/wire.hpp"

#include "tern/transport/msgpack_codec.hpp"
#include "tern/transport/nestjs_codec.hpp"

#include <stdexcept>
#include <string>

namespace tern {

wire_format parse_wire_format(std::string_view name) {
  if (name == "tern" || name == "msgpack") return wire_format::tern;
  if (name == "nestjs") return wire_format::nestjs;
  throw std::invalid_argument("unknown wire format \"" + std::string(name.substr(0, 40)) +
                              "\" (expected tern or nestjs)");
}

std::string_view to_string(wire_format w) noexcept {
  return w == wire_format::nestjs ? "nestjs" : "tern";
}

std::shared_ptr<const transport::codec> make_codec(wire_format w, std::uint32_t max_frame) {
  if (w == wire_format::nestjs) return std::make_shared<transport::nestjs_codec>(max_frame);
  return std::make_shared<transport::msgpack_codec>(max_frame);
}

}  // namespace tern
