// The HTTP request path: bytes in, parsed requests or an error status out.
// Fed whole, a byte at a time, and in pieces of 7, the same bytes must give
// the same requests and the same verdict.
#include "tern/http/request_parser.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

using namespace tern::http;

namespace {

std::string outcome(std::string_view in, std::size_t piece) {
  limits lim;
  lim.max_header_bytes = 4096;
  lim.max_body_bytes = 8192;
  lim.max_headers = 20;
  request_parser parser(lim);
  request req;
  std::string out, buf;
  std::size_t pos = 0;
  int requests = 0;
  for (;;) {
    bool more = pos < in.size();
    if (more) {
      buf.append(in.substr(pos, piece));
      pos += piece;
    }
    for (;;) {
      auto s = parser.parse(req, buf);
      if (s.consumed > buf.size()) std::abort();
      buf.erase(0, s.consumed);
      if (s.state == request_parser::result::error) {
        int st = parser.error_status();
        if (st < 400 || st > 505 || parser.error_message().empty()) std::abort();
        return out + "error " + std::to_string(st);
      }
      if (s.state == request_parser::result::need_more) break;
      if (req.body.size() > lim.max_body_bytes) std::abort();
      if (req.method.empty() || req.path.empty()) std::abort();
      out += req.method + " " + req.path + " ? " + req.query + " " +
             std::to_string(req.headers.size()) + " " + req.body +
             (req.keep_alive ? " keep|" : " close|");
      // A cap on the work per input, the same however it is fed.
      if (++requests == 64) return out + "64 requests";
    }
    if (!more) break;
  }
  return out + (parser.in_progress() ? "partial" : "idle");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto whole = outcome(in, in.size() + 1);
  if (outcome(in, 1) != whole) std::abort();
  if (outcome(in, 7) != whole) std::abort();
  return 0;
}
