// Pattern canonicalization, both forms: a msgpack pattern as received (a
// map, or a string holding JSON text) and JSON text given to from_json.
#include "tern/pattern.hpp"
#include "tern/transport/codec.hpp"
#include "tern/transport/packet.hpp"

#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string out;
  // As msgpack (what the wire brings).
  try {
    msgpack::zone zone;
    auto o = tern::transport::decode_value(in, zone, true);
    tern::canonical_pattern(o, out);
    if (out.size() > 256 * 1024) std::abort();  // the budget holds, whatever the input
  } catch (const tern::transport::protocol_violation&) {
  }
  // As a string pattern holding JSON text.
  msgpack::object s;
  s.type = msgpack::type::STR;
  s.via.str.ptr = in.data();
  s.via.str.size = static_cast<std::uint32_t>(in.size());
  tern::canonical_pattern(s, out);
  // As JSON text from a config.
  try {
    auto p = tern::pattern::from_json(in);
    if (p.packed().empty()) std::abort();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
