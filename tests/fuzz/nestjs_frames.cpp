// NestJS's JSON wire as a service meets it: any bytes, cut into frames as a
// connection's reader cuts them (lengths in UTF-16 units); each request is
// answered by echoing its data under its id, and that answer must come back
// whole through the same codec (what tern writes, tern and NestJS can read).
#include "tern/pattern.hpp"
#include "tern/transport/nestjs_codec.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tern::transport;
  static const nestjs_codec wire(64 * 1024);
  const char* p = reinterpret_cast<const char*>(data);
  std::size_t left = size;
  msgpack::zone zone, back_zone;
  std::string key;
  try {
    while (true) {
      auto fr = wire.next_frame(p, left);
      if (fr.status != frame_status::complete) break;
      if (fr.total() > left) std::abort();
      packet pkt;
      try {
        wire.decode(p + fr.header, fr.length, zone, true, pkt);
        if (pkt.kind == packet_kind::reply) break;  // a service closes on it
        tern::canonical_pattern(pkt.pattern, key);
        if (pkt.kind == packet_kind::request) {
          byte_buffer out;
          auto echo = [&](packer& pk) { pk.pack(pkt.data); };
          value_writer w = echo;
          try {
            wire.encode_response(out, {pkt.id, pkt.packed_id}, &w, true);
          } catch (const protocol_violation&) {
            out.clear();  // over the frame limit: refused whole
          }
          if (!out.empty()) {
            auto r = wire.next_frame(out.data(), out.size());
            if (r.status != frame_status::complete || r.total() != out.size()) std::abort();
            packet reply;
            wire.decode(out.data() + r.header, r.length, back_zone, true, reply);
            if (reply.kind != packet_kind::reply || !reply.disposed) std::abort();
            back_zone.clear();
          }
        }
      } catch (const packet_error&) {
        // Answered by id, dropped, or the connection closed: all a service does.
      }
      zone.clear();
      p += fr.total();
      left -= fr.total();
    }
  } catch (const protocol_violation&) {
    // A bad prefix or an oversized frame: the connection closes.
  }
  return 0;
}
