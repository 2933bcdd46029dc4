#include "tern/transport/wire_error.hpp"

#include <span>
#include <string>

namespace tern::transport {

namespace {
std::string str_of(const msgpack::object& o) {
  return o.type == msgpack::type::STR ? std::string(o.via.str.ptr, o.via.str.size) : std::string();
}
}  // namespace

void write_error(packer& pk, const rpc_error& e) {
  bool expired = e.kind() == errc::deadline_exceeded;
  pk.pack_map((e.has_details() ? 3 : 2) + (expired ? 1 : 0));
  pk.pack("status");
  if (expired) {
    pk.pack(deadline_exceeded_status);
    pk.pack("kind");
    pk.pack("deadline_exceeded");
  } else if (e.status() != 0) {
    pk.pack(e.status());
  } else {
    pk.pack("error");
  }
  pk.pack("message");
  pk.pack(std::string_view(e.message()));
  if (e.has_details()) {
    pk.pack("details");
    pk.pack_packed(e.packed_details());
  }
}

void write_internal_error(packer& pk) {
  pk.pack_map(2);
  pk.pack("status");
  pk.pack("error");
  pk.pack("message");
  pk.pack(internal_error_message);
}

rpc_error to_rpc_error(const packet& reply) {
  const msgpack::object& err = reply.err;
  if (err.type == msgpack::type::STR) {
    auto text = str_of(err);
    if (reply.status_error && text == no_handler_message) return {errc::no_handler, text};
    return {errc::remote, text};
  }
  if (err.type != msgpack::type::MAP) return {errc::remote, "remote error"};
  int status = 0;
  bool generic = false;
  bool expired = false;
  std::string message = "remote error";
  std::string details;
  for (const auto& kv : std::span(err.via.map.ptr, err.via.map.size)) {
    auto k = str_of(kv.key);
    if (k == "status") {
      if (kv.val.type == msgpack::type::POSITIVE_INTEGER && kv.val.via.u64 < 1000) {
        status = static_cast<int>(kv.val.via.u64);
      } else if (kv.val.type == msgpack::type::STR) {
        generic = str_of(kv.val) == "error";
      }
    } else if (k == "kind") {
      expired = str_of(kv.val) == "deadline_exceeded";
    } else if (k == "message") {
      message = str_of(kv.val);
    } else if (k == "details") {
      msgpack::sbuffer buf;
      msgpack::pack(buf, kv.val);
      details.assign(buf.data(), buf.size());
    }
  }
  if (generic && message == internal_error_message) return {errc::internal, message, 500};
  if (expired) return {errc::deadline_exceeded, message, deadline_exceeded_status};
  rpc_error e(errc::remote, message, status);
  if (!details.empty()) e.set_packed_details(std::move(details));
  return e;
}

}  // namespace tern::transport
