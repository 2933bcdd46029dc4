// The packet envelope as msgpack, read head by head: shared by tern's
// msgpack codec and the NestJS JSON codec (which transcodes a frame's JSON
// into msgpack first). Private to transport.
#pragma once

#include "tern/transport/codec.hpp"
#include "tern/transport/packet.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tern::transport {

/// Where wire formats differ inside the same envelope.
struct envelope_dialect {
  /// Ids are any value, echoed as sent (NestJS's JSON), rather than
  /// unsigned integers (tern's msgpack).
  bool any_id = false;
  /// The key of the packet's metadata map.
  std::string_view meta_key = "meta";
};

/// The longest packed id kept for echoing (a NestJS id is 22 bytes).
inline constexpr std::size_t max_packed_id = 1024;

/// Decodes one msgpack envelope into `out`; throws protocol_violation for
/// undecodable bytes or a wrongly shaped packet.
void decode_envelope(const char* body, std::size_t size, msgpack::zone& zone, bool reference,
                     packet& out, const envelope_dialect& d);

/// Throws the packet_error for an envelope that failed with `what`, with
/// what can still be read of it (its id, whether it is one whole map).
[[noreturn]] void refuse_envelope(const char* body, std::size_t size, const char* what,
                                  const envelope_dialect& d);

/// A request's meta as it goes out: `deadline_ms` (the time the caller
/// still waits, when above zero) first, where a receiver finds it at once,
/// then the caller's entries.
class outgoing_meta {
 public:
  /// `packed_meta`: a packed map, nil, or empty. Throws protocol_violation
  /// for anything else.
  outgoing_meta(std::string_view packed_meta, std::chrono::milliseconds deadline);
  /// Whether there is anything to send.
  [[nodiscard]] bool any() const noexcept { return timed_ || entries_ > 0; }
  /// Writes the map.
  void write(packer& pk) const;

 private:
  std::chrono::milliseconds deadline_;
  bool timed_;
  std::uint32_t entries_ = 0;
  std::string_view rest_;  // the entries' bytes, after the map's head
};

/// The number an id spells (an unsigned integer, or a string of up to 20
/// digits); otherwise, for a request, a hash of its bytes, for a reply 0.
std::uint64_t id_number(std::string_view packed, bool request) noexcept;

}  // namespace tern::transport
