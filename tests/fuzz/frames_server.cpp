// The frame and envelope decoder as a service meets it: any bytes, cut into
// frames as a connection's reader cuts them; each request's pattern
// canonicalized as the service does before looking up a handler.
#include "tern/pattern.hpp"
#include "tern/transport/msgpack_codec.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tern::transport;
  static const msgpack_codec wire(64 * 1024);
  const char* p = reinterpret_cast<const char*>(data);
  std::size_t left = size;
  msgpack::zone zone;
  std::string key;
  while (true) {
    auto fr = wire.next_frame(p, left);
    if (fr.status != frame_status::complete) break;
    packet pkt;
    try {
      wire.decode(p + fr.header, fr.length, zone, true, pkt);
      if (pkt.kind == packet_kind::reply) break;  // a service closes on it
      // The pattern's bytes lie within the frame's body.
      const char* body = p + fr.header;
      if (pkt.packed_pattern.data() < body ||
          pkt.packed_pattern.data() + pkt.packed_pattern.size() > body + fr.length) {
        std::abort();
      }
      tern::canonical_pattern(pkt.pattern, key);
    } catch (const packet_error&) {
      // Answered by id, dropped, or the connection closed: all a service does.
    }
    zone.clear();
    p += fr.total();
    left -= fr.total();
  }
  return 0;
}
