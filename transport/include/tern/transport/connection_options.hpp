// Per-connection limits, shared by both ends (light: no Asio).
#pragma once

#include <chrono>
#include <cstddef>

namespace tern::transport {

/// Limits of one connection. The defaults suit a service on a LAN.
struct connection_options {
  /// Queued outgoing bytes above which producers wait (and a server stops
  /// reading new requests) until the writer catches up.
  std::size_t write_high_water = 4u * 1024 * 1024;
  /// A frame must arrive whole within this time of its first byte, or the
  /// peer is disconnected (0 disables); a trickle of bytes does not extend
  /// it. Idle connections between frames stay open.
  std::chrono::milliseconds incomplete_frame_timeout{30000};
  /// A write the peer has not taken whole within this time closes the
  /// connection (0 disables): a peer that stops reading its replies cannot
  /// pin write_high_water bytes for ever.
  std::chrono::milliseconds write_timeout{30000};
  /// Requests from this peer being handled at once above which the
  /// connection stops reading until one finishes (backpressure; 0: no cap).
  std::size_t max_in_flight = 1024;
  /// Calling side: a connection that has received nothing for this long
  /// sends a keep-alive ping (tern.ping, docs/protocol.md), as does one
  /// whose call timed out with nothing received since it was sent (0: no
  /// pings).
  std::chrono::milliseconds keepalive_interval{10000};
  /// A ping not answered within this closes the connection as silent (a
  /// cut link, a frozen process): its calls fail with connection_closed.
  std::chrono::milliseconds keepalive_timeout{5000};
};

}  // namespace tern::transport
