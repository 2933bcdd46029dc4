// Packed msgpack values, for code that relays replies without decoding them
// into C++ types (the gateway): a reply value as its bytes, the sink that
// receives it, and a reader that walks packed bytes head by head.
#pragma once

#include "tern/transport/codec.hpp"
#include "tern/transport/msgpack_reader.hpp"

namespace tern {

/// One value of a reply as its frame is read (see client_proxy::send_raw).
using transport::value_view;
/// Receives each value of a reply; it may throw (that call alone fails).
using transport::value_sink;

/// The head of one packed msgpack value (kind, scalar, count or payload).
using transport::msgpack_head;
/// Reads the head of the value at p (p < end); nullptr if cut short.
using transport::read_head;
/// The end of the one whole value at p, nested at most max_value_depth.
using transport::skip_value;
/// The deepest nesting of arrays and maps in one value the wire accepts.
inline constexpr int max_value_depth = transport::max_msgpack_depth;

}  // namespace tern
