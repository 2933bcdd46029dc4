// The frame and envelope decoder as a client meets it: replies, their
// errors turned into rpc_errors, their values decoded and copied.
#include "tern/transport/msgpack_codec.hpp"
#include "tern/transport/wire_error.hpp"

#include <cstdint>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tern::transport;
  static const msgpack_codec wire(64 * 1024);
  const char* p = reinterpret_cast<const char*>(data);
  std::size_t left = size;
  msgpack::zone zone;
  while (true) {
    auto fr = wire.next_frame(p, left);
    if (fr.status != frame_status::complete) break;
    packet pkt;
    try {
      wire.decode(p + fr.header, fr.length, zone, true, pkt);
      if (pkt.kind != packet_kind::reply) break;  // a client closes on it
      if (pkt.has_err) (void)to_rpc_error(pkt).message();
      if (pkt.has_response) {
        // The decoder checked it; decoding it again must then succeed.
        auto owned = decode_owned(pkt.response);
        value_view v(pkt.response, zone);
        if (v.object().type != owned.get().type) std::abort();
      }
    } catch (const packet_error&) {
      // Fails one call (by id) or closes the connection.
    }
    zone.clear();
    p += fr.total();
    left -= fr.total();
  }
  return 0;
}
