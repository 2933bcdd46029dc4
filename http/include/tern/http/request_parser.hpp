// tern's HTTP/1.1 request parser: strict (RFC 9112), incremental, I/O-free.
#pragma once

#include "tern/http/request.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tern::http {

/// Parses one HTTP/1.1 request at a time from bytes fed in any pieces.
///
/// Strict: anything RFC 9112 lets a server refuse is refused (see
/// docs/gateway.md, "HTTP behaviour"), lines end in CRLF only, and the
/// limits of `limits` are enforced as bytes arrive. Memory grows only
/// with bytes received (never reserved from a Content-Length or chunk
/// size); the work is a loop over the bytes, without recursion.
///
/// parse() consumes bytes up to the end of one request and stops there:
/// bytes after it (a pipelined request) are left to the caller, who feeds
/// them again once the request is answered. The request filled in stays
/// valid until the next call to parse(), which begins the next request.
/// After an error, parse() consumes nothing and reports the error again.
///
/// Thread safety: none; one parser per connection.
class request_parser {
 public:
  enum class result {
    need_more,  ///< every byte was consumed; the request is not complete
    complete,   ///< a request is complete; `consumed` bytes were used
    error,      ///< refuse with error_status(), then close the connection
  };
  struct step {
    result state;
    std::size_t consumed;
  };

  explicit request_parser(const limits& l = {}) : limits_(l) {}

  /// Feeds `bytes` (which may be empty) to the request being parsed into `req`;
  /// pass the same `req` until the request completes. Reads only `bytes`.
  [[nodiscard]] step parse(request& req, std::string_view bytes);
  /// Forgets any request in progress and any error.
  void reset() noexcept { state_ = state::idle; }

  /// A request has begun (a byte of its request line arrived; leading empty
  /// lines do not count) and is not complete.
  [[nodiscard]] bool in_progress() const noexcept;
  /// The header section of the request in progress has been parsed.
  [[nodiscard]] bool headers_complete() const noexcept { return m_.headers_complete; }
  /// The request asked for `100 Continue` and has a body (HTTP/1.1 only);
  /// meaningful once headers_complete().
  [[nodiscard]] bool expects_continue() const noexcept { return m_.expects_continue; }
  /// After result::error: 400, 413, 417, 431, 501 or 505.
  [[nodiscard]] int error_status() const noexcept { return error_status_; }
  /// After result::error: a short lower-case reason for the response body.
  [[nodiscard]] std::string_view error_message() const noexcept { return error_message_; }

 private:
  enum class state : std::uint8_t {
    idle,  // before a request: parse() resets and starts one
    start,
    start_lf,
    method,
    target,
    version,
    line_lf,
    field_start,
    field_name,
    value_ows,
    value,
    section_end_lf,  // last header-phase state: the ones above count against max_header_bytes
    body,
    chunk_size,
    chunk_size_lf,
    ext_name_start,
    ext_name,
    ext_value_start,
    ext_token,
    ext_quoted,
    ext_quoted_pair,
    ext_after_quoted,
    chunk_data,
    chunk_data_cr,
    chunk_data_lf,
    done,
    error,
  };

  void begin(request& req);
  const char* parse_head(request& req, const char* p, const char* end);
  const char* parse_body(request& req, const char* p, const char* end);
  const char* parse_chunk_ext(const char* p, const char* end);
  bool split_target(request& req);
  bool end_request_line(request& req);
  bool end_field(std::string_view name, std::string_view value);
  void end_headers(request& req);
  const char* fail(const char* p, int status, const char* message);

  // What one request has shown so far; reset as a whole by begin().
  struct progress {
    bool begun = false;
    bool trailers = false;  // the header-phase states are parsing the trailer section
    bool headers_complete = false;
    bool expects_continue = false;
    bool has_length = false;
    bool chunked = false;
    bool te_present = false;
    bool te_last_chunked = false;
    bool conn_close = false;
    bool conn_keep_alive = false;
    bool expect_continue = false;
    bool expect_other = false;
    std::uint8_t version_len = 0;
    char version[8] = {};
    unsigned host_count = 0;
    unsigned te_codings = 0;
    unsigned chunk_digits = 0;
    std::size_t header_bytes = 0;  // request line, headers, trailers
    std::size_t field_count = 0;
    std::size_t ext_bytes = 0;
    std::uint64_t content_length = 0;
    std::uint64_t remaining = 0;  // of the body or the current chunk
  };

  limits limits_;
  state state_ = state::idle;
  progress m_;
  int error_status_ = 0;
  const char* error_message_ = "";
};

/// One request parsed from `bytes` at once: the fuzzing and test entry point.
struct parse_outcome {
  request_parser::result state = request_parser::result::need_more;
  std::size_t consumed = 0;
  int status = 0;            ///< the error status, or 0
  std::string_view message;  ///< the error message (static storage), or empty
  bool expects_continue = false;
  request parsed;
};
parse_outcome parse_one(std::string_view bytes, const limits& l = {});

}  // namespace tern::http
