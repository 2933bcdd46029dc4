#include "tern/transport/msgpack_codec.hpp"

#include <string>

namespace tern::transport {

namespace {

// Appends one frame to a buffer: reserves the header, patches it at the end,
// and takes everything back if encoding fails or the body is over the limit.
class frame_scope {
 public:
  frame_scope(byte_buffer& out, std::uint32_t max) : out_(out), start_(out.size()), max_(max) {
    out_.extend(frame_header_size);
  }
  frame_scope(const frame_scope&) = delete;
  frame_scope& operator=(const frame_scope&) = delete;
  ~frame_scope() {
    if (!done_) out_.truncate(start_);
  }
  void finish() {
    std::size_t len = out_.size() - start_ - frame_header_size;
    if (len > max_) {
      throw protocol_violation("frame of " + std::to_string(len) + " bytes exceeds the limit of " +
                               std::to_string(max_));
    }
    write_frame_header(out_.data() + start_, static_cast<std::uint32_t>(len));
    done_ = true;
  }

 private:
  byte_buffer& out_;
  std::size_t start_;
  std::uint32_t max_;
  bool done_ = false;
};

template <std::size_t N>
void key(packer& pk, const char (&k)[N]) {
  pk.pack_str(N - 1);
  pk.pack_str_body(k, N - 1);
}

bool key_is(const msgpack::object& k, std::string_view name) {
  return k.type == msgpack::type::STR && std::string_view(k.via.str.ptr, k.via.str.size) == name;
}

bool reference_all(msgpack::type::object_type, std::size_t, void*) {
  return true;
}

}  // namespace

void msgpack_codec::decode(const char* body, std::size_t size, msgpack::zone& zone, bool reference,
                           packet& out) const {
  // Every element takes at least one byte, so no count may exceed the frame
  // size: a tiny frame announcing 2^32 elements is refused before the
  // unpacker allocates for them.
  msgpack::unpack_limit limit(size, size, size, size, size, 64);
  msgpack::object root;
  try {
    std::size_t off = 0;
    bool referenced = false;
    root = msgpack::unpack(zone, body, size, off, referenced, reference ? &reference_all : nullptr,
                           nullptr, limit);
    if (off != size) throw protocol_violation("trailing bytes after the packet");
  } catch (const protocol_violation&) {
    throw;
  } catch (const std::exception& e) {
    throw protocol_violation(std::string("undecodable msgpack: ") + e.what());
  }
  if (root.type != msgpack::type::MAP) throw protocol_violation("packet is not a map");

  out = packet{};
  bool has_id = false, has_pattern = false, has_data = false, has_disposed = false;
  for (const auto& kv : std::span(root.via.map.ptr, root.via.map.size)) {
    const auto& k = kv.key;
    const auto& v = kv.val;
    if (key_is(k, "id")) {
      if (v.type != msgpack::type::POSITIVE_INTEGER) {
        throw protocol_violation("packet id is not an unsigned integer");
      }
      out.id = v.via.u64;
      has_id = true;
    } else if (key_is(k, "pattern")) {
      out.pattern = v;
      has_pattern = true;
    } else if (key_is(k, "data")) {
      out.data = v;
      has_data = true;
    } else if (key_is(k, "response")) {
      out.response = v;
      out.has_response = true;
    } else if (key_is(k, "err")) {
      out.err = v;
      out.has_err = true;
    } else if (key_is(k, "isDisposed")) {
      if (v.type != msgpack::type::BOOLEAN) throw protocol_violation("isDisposed is not a boolean");
      out.disposed = v.via.boolean;
      has_disposed = true;
    } else if (key_is(k, "meta")) {
      if (v.type != msgpack::type::MAP && v.type != msgpack::type::NIL) {
        throw protocol_violation("meta is not a map");
      }
      out.meta = v;
      out.has_meta = v.type == msgpack::type::MAP;
    } else if (key_is(k, "status")) {
      out.status_error = v.type == msgpack::type::STR;
    }
    // Other keys are ignored, as NestJS does, so packets can grow.
  }
  if (has_pattern) {
    out.kind = has_id ? packet_kind::request : packet_kind::event;
    if (!has_data) out.data = msgpack::object();
    return;
  }
  if (!has_id) throw protocol_violation("packet has neither pattern nor id");
  if (!out.has_response && !out.has_err && !has_disposed) {
    throw protocol_violation("reply has none of response, err, isDisposed");
  }
  out.kind = packet_kind::reply;
}

void msgpack_codec::encode_request(byte_buffer& out, std::uint64_t id,
                                   std::string_view packed_pattern, std::string_view packed_meta,
                                   value_writer data) const {
  frame_scope frame(out, max_frame());
  packer pk(out);
  pk.pack_map(packed_meta.empty() ? 3 : 4);
  key(pk, "id");
  pk.pack_uint64(id);
  key(pk, "pattern");
  out.write(packed_pattern.data(), packed_pattern.size());
  key(pk, "data");
  data(pk);
  if (!packed_meta.empty()) {
    key(pk, "meta");
    out.write(packed_meta.data(), packed_meta.size());
  }
  frame.finish();
}

void msgpack_codec::encode_event(byte_buffer& out, std::string_view packed_pattern,
                                 std::string_view packed_meta, value_writer data) const {
  frame_scope frame(out, max_frame());
  packer pk(out);
  pk.pack_map(packed_meta.empty() ? 2 : 3);
  key(pk, "pattern");
  out.write(packed_pattern.data(), packed_pattern.size());
  key(pk, "data");
  data(pk);
  if (!packed_meta.empty()) {
    key(pk, "meta");
    out.write(packed_meta.data(), packed_meta.size());
  }
  frame.finish();
}

void msgpack_codec::encode_response(byte_buffer& out, std::uint64_t id,
                                    const value_writer* response, bool disposed) const {
  frame_scope frame(out, max_frame());
  packer pk(out);
  pk.pack_map(1 + (response ? 1 : 0) + (disposed ? 1 : 0));
  key(pk, "id");
  pk.pack_uint64(id);
  if (response) {
    key(pk, "response");
    (*response)(pk);
  }
  if (disposed) {
    key(pk, "isDisposed");
    pk.pack_true();
  }
  frame.finish();
}

void msgpack_codec::encode_error(byte_buffer& out, std::uint64_t id, value_writer err) const {
  frame_scope frame(out, max_frame());
  packer pk(out);
  pk.pack_map(3);
  key(pk, "id");
  pk.pack_uint64(id);
  key(pk, "err");
  err(pk);
  key(pk, "isDisposed");
  pk.pack_true();
  frame.finish();
}

void msgpack_codec::encode_no_handler(byte_buffer& out, std::uint64_t id) const {
  frame_scope frame(out, max_frame());
  packer pk(out);
  pk.pack_map(4);
  key(pk, "id");
  pk.pack_uint64(id);
  key(pk, "status");
  key(pk, "error");
  key(pk, "err");
  pk.pack_str(no_handler_message.size());
  pk.pack_str_body(no_handler_message.data(), no_handler_message.size());
  key(pk, "isDisposed");
  pk.pack_true();
  frame.finish();
}

}  // namespace tern::transport
