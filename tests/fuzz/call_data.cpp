// The gateway's call-data builder: path params, query string and JSON body
// (the input split at the first two 0x00 bytes) into one msgpack value.
// What it builds must be a value the wire accepts; for a body alone, the
// same value nlohmann reads from the text.
#include "render/call_data.hpp"

#include <tern/http/url.hpp>
#include <tern/rpc_error.hpp>
#include <tern/transport/codec.hpp>
#include <tern/transport/packet.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>

using namespace tern::gateway;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto cut1 = in.find('\0');
  std::string_view param = in.substr(0, cut1), rest;
  if (cut1 != std::string_view::npos) rest = in.substr(cut1 + 1);
  auto cut2 = rest.find('\0');
  std::string_view query = rest.substr(0, cut2), body;
  if (cut2 != std::string_view::npos) body = rest.substr(cut2 + 1);

  std::vector<std::pair<std::string_view, std::string>> params{
      {"id", tern::http::percent_decode(param, false)}};
  for (auto sources :
       {std::vector<data_source>{data_source::params, data_source::query, data_source::body},
        std::vector<data_source>{data_source::body}}) {
    std::string packed;
    try {
      packed = build_call_data(sources, params, query, body);
    } catch (const tern::rpc_error& e) {
      if (e.status() != 400) std::abort();
      continue;
    }
    msgpack::zone zone;
    try {
      (void)tern::transport::decode_value(packed, zone, true);  // the wire takes it
    } catch (const tern::transport::protocol_violation&) {
      std::abort();
    }
    if (sources.size() == 1 && body.find_first_not_of(" \t\r\n") != std::string_view::npos) {
      auto theirs = nlohmann::json::parse(body, nullptr, false);
      if (theirs.is_discarded()) std::abort();  // we accepted what is not JSON
      if (nlohmann::json::from_msgpack(packed) != theirs) std::abort();
    }
  }
  return 0;
}
