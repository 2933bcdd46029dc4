#include "tern/http/request_parser.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

namespace tern::http {

namespace {

// Byte classes, one table lookup per byte in the scanning loops.
enum : std::uint8_t {
  k_tchar = 1,   // token characters (RFC 9110 §5.6.2)
  k_target = 2,  // request-target: visible ASCII
  k_value = 4,   // field-vchar / SP / HTAB / obs-text: no CTL but HTAB
  k_hex = 8,
  k_host = 16,  // Host and authority: unreserved / pct-encoded / sub-delims / ":" / "[" / "]"
};

constexpr std::array<std::uint8_t, 256> make_classes() {
  std::array<std::uint8_t, 256> t{};
  constexpr std::string_view tchar_punct = "!#$%&'*+-.^_`|~";
  constexpr std::string_view host_punct = "-._~!$&'()*+,;=:[]%";
  for (int c = 1; c < 256; ++c) {
    auto ch = static_cast<char>(c);
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    std::uint8_t v = 0;
    if (alnum || tchar_punct.find(ch) != std::string_view::npos) v |= k_tchar;
    if (c > 0x20 && c < 0x7f) v |= k_target;
    if (c == '\t' || (c >= 0x20 && c != 0x7f)) v |= k_value;
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) v |= k_hex;
    if (alnum || host_punct.find(ch) != std::string_view::npos) v |= k_host;
    t[static_cast<std::size_t>(c)] = v;
  }
  return t;
}
constexpr auto classes = make_classes();

inline bool is(char c, std::uint8_t k) {
  return (classes[static_cast<unsigned char>(c)] & k) != 0;
}

inline char to_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c;
}

inline unsigned hex_value(char c) {
  return c <= '9' ? static_cast<unsigned>(c - '0') : static_cast<unsigned>(to_lower(c) - 'a' + 10);
}

bool iequals(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (to_lower(a[i]) != lower[i]) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls f(element) for each element of a comma-separated list (RFC 9110
// §5.6.1), trimmed; empty elements are skipped, as the RFC asks.
template <class F>
void each_element(std::string_view v, F f) {
  for (;;) {
    auto comma = v.find(',');
    auto e = trim_ows(v.substr(0, comma));
    if (!e.empty()) f(e);
    if (comma == std::string_view::npos) return;
    v.remove_prefix(comma + 1);
  }
}

// The first byte in [p, end) not of class k, or end. One branch-free pass
// first, since a line is almost always valid; then, only if it is not, the
// exact place.
inline const char* scan(const char* p, const char* end, std::uint8_t k) {
  unsigned bad = 0;
  for (const char* q = p; q < end; ++q) bad |= ~classes[static_cast<unsigned char>(*q)] & k;
  if (bad == 0) return end;
  while (p < end && is(*p, k)) ++p;
  return p;
}

// Where a line element ending at `stop` (SP or CR) can end: at the first
// `stop` in [p, end), or end.
inline const char* find_byte(const char* p, const char* end, char stop) {
  const void* at = std::memchr(p, stop, static_cast<std::size_t>(end - p));
  return at ? static_cast<const char*>(at) : end;
}

bool all_of(std::string_view s, std::uint8_t k) {
  return std::all_of(s.begin(), s.end(), [k](char c) { return is(c, k); });
}

}  // namespace

std::string_view request::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return {};
}

void request::reset() {
  method.clear();
  target.clear();
  path.clear();
  query.clear();
  headers.clear();
  if (body.capacity() > 64 * 1024) {
    std::string().swap(body);
  } else {
    body.clear();
  }
  version_minor = 1;
  keep_alive = true;
  client_gone = false;
}

bool request_parser::in_progress() const noexcept {
  return m_.begun && state_ != state::done && state_ != state::error && state_ != state::idle;
}

const char* request_parser::fail(const char* p, int status, const char* message) {
  state_ = state::error;
  error_status_ = status;
  error_message_ = message;
  return p;
}

void request_parser::begin(request& req) {
  req.reset();
  m_ = {};
  state_ = state::start;
}

request_parser::step request_parser::parse(request& req, std::string_view bytes) {
  if (state_ == state::error) return {result::error, 0};
  if (state_ == state::idle || state_ == state::done) begin(req);
  const char* const first = bytes.data();
  const char* const end = first + bytes.size();
  const char* p = first;
  auto used = [&] { return static_cast<std::size_t>(p - first); };
  while (p < end) {
    if (state_ <= state::section_end_lf) {
      // The header phase sees no further than the header byte budget allows.
      std::size_t budget = limits_.max_header_bytes - m_.header_bytes;
      const char* lim = p + std::min(static_cast<std::size_t>(end - p), budget);
      const char* q = parse_head(req, p, lim);
      m_.header_bytes += static_cast<std::size_t>(q - p);
      p = q;
      if (state_ <= state::section_end_lf && p == lim && p < end) {
        p = fail(p, 431, "request header fields too large");
      }
    } else {
      p = parse_body(req, p, end);
    }
    if (state_ == state::done) return {result::complete, used()};
    if (state_ == state::error) return {result::error, used()};
  }
  return {result::need_more, used()};
}

const char* request_parser::parse_head(request& req, const char* p, const char* end) {
  while (p < end) {
    switch (state_) {
      case state::start:  // empty lines before a request are ignored (RFC 9112 §2.2)
        if (*p == '\r') {
          ++p;
          state_ = state::start_lf;
          break;
        }
        if (!is(*p, k_tchar)) return fail(p, 400, "malformed request line");
        m_.begun = true;
        state_ = state::method;
        break;
      case state::start_lf:
        if (*p != '\n') return fail(p, 400, "malformed request line");
        ++p;
        state_ = state::start;
        break;
      case state::method: {
        const char* s = p;
        while (p < end && is(*p, k_tchar)) ++p;
        req.method.append(s, p);
        if (p == end) return p;
        if (*p != ' ') return fail(p, 400, "malformed request line");
        ++p;
        state_ = state::target;
        break;
      }
      case state::target: {
        const char* s = p;
        p = scan(p, find_byte(p, end, ' '), k_target);
        req.target.append(s, p);
        if (p == end) return p;
        if (*p != ' ' || !split_target(req)) return fail(p, 400, "malformed request target");
        ++p;
        state_ = state::version;
        break;
      }
      case state::version:
        while (p < end && *p != '\r' && m_.version_len < sizeof m_.version) {
          m_.version[m_.version_len++] = *p++;
        }
        if (p == end) return p;
        if (*p != '\r') return fail(p, 400, "malformed HTTP version");
        if (!end_request_line(req)) return p;
        ++p;
        state_ = state::line_lf;
        break;
      case state::line_lf:
        if (*p != '\n') return fail(p, 400, "line not ended by CRLF");
        ++p;
        state_ = state::field_start;
        break;
      case state::field_start:
        if (*p == '\r') {
          ++p;
          state_ = state::section_end_lf;
          break;
        }
        if (*p == ' ' || *p == '\t') return fail(p, 400, "obsolete line folding");
        if (!is(*p, k_tchar)) return fail(p, 400, "malformed header field name");
        if (++m_.field_count > limits_.max_headers) return fail(p, 431, "too many header fields");
        if (!m_.trailers) req.headers.emplace_back();
        state_ = state::field_name;
        break;
      case state::field_name: {
        const char* s = p;
        while (p < end && is(*p, k_tchar)) ++p;
        if (!m_.trailers) {
          auto& name = req.headers.back().first;
          auto old = name.size();
          name.append(s, p);
          for (auto i = old; i < name.size(); ++i) name[i] = to_lower(name[i]);
        }
        if (p == end) return p;
        if (*p != ':') return fail(p, 400, "malformed header field name");
        ++p;
        state_ = state::value_ows;
        break;
      }
      case state::value_ows:
        while (p < end && (*p == ' ' || *p == '\t')) ++p;
        if (p == end) return p;
        state_ = state::value;
        break;
      case state::value: {
        const char* s = p;
        p = scan(p, find_byte(p, end, '\r'), k_value);
        if (!m_.trailers) req.headers.back().second.append(s, p);
        if (p == end) return p;
        if (*p != '\r') return fail(p, 400, "invalid character in a header field");
        ++p;
        state_ = state::line_lf;
        if (!m_.trailers) {
          auto& [name, value] = req.headers.back();
          while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
          if (!end_field(name, value)) return p;
        }
        break;
      }
      case state::section_end_lf:
        if (*p != '\n') return fail(p, 400, "line not ended by CRLF");
        ++p;
        if (m_.trailers) {
          state_ = state::done;
        } else {
          end_headers(req);
        }
        return p;
      default:
        return p;
    }
  }
  return p;
}

bool request_parser::split_target(request& req) {
  std::string_view t = req.target;
  if (t.empty()) return false;
  std::string_view rest;
  if (t[0] == '/') {
    rest = t;  // origin-form
  } else if (t == "*") {
    if (req.method != "OPTIONS") return false;
    // (clear + push_back: GCC 12 at -O3 warns falsely (-Wrestrict, its bug
    // 105329) on assigning a literal here.)
    req.path.clear();
    req.path.push_back('*');  // asterisk-form
    return true;
  } else {
    // absolute-form: scheme "://" authority [path-abempty] ["?" query];
    // the authority is checked, then ignored.
    auto colon = t.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    for (std::size_t i = 0; i < colon; ++i) {
      char c = to_lower(t[i]);
      bool ok = (c >= 'a' && c <= 'z') ||
                (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
      if (!ok) return false;
    }
    if (t.substr(colon, 3) != "://") return false;
    rest = t.substr(colon + 3);
    auto a = rest.find_first_of("/?");
    auto authority = rest.substr(0, a);
    // userinfo ("user@host") is refused, as RFC 9110 §4.2.4 advises
    if (authority.empty() || authority.find('@') != std::string_view::npos ||
        !all_of(authority, k_host)) {
      return false;
    }
    rest = a == std::string_view::npos ? std::string_view() : rest.substr(a);
  }
  auto q = rest.find('?');
  auto path = rest.substr(0, q);
  if (path.empty()) {
    req.path.clear();
    req.path.push_back('/');
  } else {
    req.path.assign(path);
  }
  if (q != std::string_view::npos) req.query.assign(rest.substr(q + 1));
  return true;
}

bool request_parser::end_request_line(request& req) {
  std::string_view v(m_.version, m_.version_len);
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || !digit(v[5]) || v[6] != '.' || !digit(v[7])) {
    fail(nullptr, 400, "malformed HTTP version");
    return false;
  }
  if (v[5] != '1' || v[7] > '1') {
    fail(nullptr, 505, "HTTP version not supported");
    return false;
  }
  req.version_minor = v[7] - '0';
  return true;
}

bool request_parser::end_field(std::string_view name, std::string_view value) {
  switch (name.size()) {
    case 4:
      if (name == "host") {
        ++m_.host_count;
        if (!all_of(value, k_host)) {
          fail(nullptr, 400, "invalid Host header");
          return false;
        }
      }
      break;
    case 6:
      if (name == "expect") {
        each_element(value, [this](std::string_view e) {
          if (iequals(e, "100-continue")) {
            m_.expect_continue = true;
          } else {
            m_.expect_other = true;
          }
        });
      }
      break;
    case 10:
      if (name == "connection") {
        each_element(value, [this](std::string_view e) {
          if (iequals(e, "close")) m_.conn_close = true;
          if (iequals(e, "keep-alive")) m_.conn_keep_alive = true;
        });
      }
      break;
    case 14:
      if (name == "content-length") {
        // 1*DIGIT; a list of identical values ("42, 42") is accepted as one
        // (RFC 9112 §6.3), anything else refused.
        constexpr auto max = std::numeric_limits<std::uint64_t>::max();
        for (;;) {
          auto comma = value.find(',');
          auto e = trim_ows(value.substr(0, comma));
          std::uint64_t n = 0;
          bool ok = !e.empty();
          for (char c : e) {
            auto d = static_cast<unsigned>(c - '0');
            if (d > 9 || n > (max - d) / 10) {
              ok = false;
              break;
            }
            n = n * 10 + d;
          }
          if (!ok || (m_.has_length && n != m_.content_length)) {
            fail(nullptr, 400, "invalid Content-Length");
            return false;
          }
          m_.has_length = true;
          m_.content_length = n;
          if (comma == std::string_view::npos) break;
          value.remove_prefix(comma + 1);
        }
      }
      break;
    case 17:
      if (name == "transfer-encoding") {
        m_.te_present = true;
        each_element(value, [this](std::string_view e) {
          ++m_.te_codings;
          m_.te_last_chunked = iequals(e, "chunked");
        });
      }
      break;
    default:
      break;
  }
  return true;
}

void request_parser::end_headers(request& req) {
  m_.headers_complete = true;
  bool v11 = req.version_minor == 1;
  if (v11 && m_.host_count == 0) {
    fail(nullptr, 400, "missing Host header");
    return;
  }
  if (m_.host_count > 1) {
    fail(nullptr, 400, "more than one Host header");
    return;
  }
  if (m_.te_present) {
    // RFC 9112 §6.1 and §6.3: each of these leaves the framing in doubt.
    if (!v11) {
      fail(nullptr, 400, "Transfer-Encoding in an HTTP/1.0 request");
      return;
    }
    if (m_.has_length) {
      fail(nullptr, 400, "both Transfer-Encoding and Content-Length");
      return;
    }
    if (!m_.te_last_chunked) {
      fail(nullptr, 400, "chunked is not the final transfer coding");
      return;
    }
    if (m_.te_codings > 1) {
      fail(nullptr, 501, "transfer codings other than chunked are not supported");
      return;
    }
    m_.chunked = true;
  }
  if (m_.has_length && m_.content_length > limits_.max_body_bytes) {
    fail(nullptr, 413, "request body too large");
    return;
  }
  if (m_.expect_other) {
    fail(nullptr, 417, "unsupported expectation");
    return;
  }
  req.keep_alive = !m_.conn_close && (v11 || m_.conn_keep_alive);
  // RFC 9110 §10.1.1: a 100-continue expectation in HTTP/1.0 is ignored.
  m_.expects_continue = m_.expect_continue && v11 && (m_.chunked || m_.content_length > 0);
  if (m_.chunked) {
    state_ = state::chunk_size;
  } else if (m_.content_length > 0) {
    m_.remaining = m_.content_length;
    state_ = state::body;
  } else {
    state_ = state::done;
  }
}

const char* request_parser::parse_body(request& req, const char* p, const char* end) {
  while (p < end) {
    switch (state_) {
      case state::body:
      case state::chunk_data: {
        auto n = static_cast<std::size_t>(
            std::min<std::uint64_t>(m_.remaining, static_cast<std::uint64_t>(end - p)));
        req.body.append(p, n);
        p += n;
        m_.remaining -= n;
        if (m_.remaining == 0) {
          if (state_ == state::body) {
            state_ = state::done;
            return p;
          }
          state_ = state::chunk_data_cr;
        }
        break;
      }
      case state::chunk_size:
        while (p < end && is(*p, k_hex)) {
          if (++m_.chunk_digits > 16) return fail(p, 400, "chunk size too long");
          m_.remaining = m_.remaining * 16 + hex_value(*p);  // 16 digits fit in 64 bits
          ++p;
        }
        if (p == end) return p;
        if (m_.chunk_digits == 0) return fail(p, 400, "malformed chunk size");
        if (m_.remaining > limits_.max_body_bytes - req.body.size()) {
          return fail(p, 413, "request body too large");
        }
        if (*p == ';') {
          state_ = state::ext_name_start;
        } else if (*p == '\r') {
          state_ = state::chunk_size_lf;
        } else {
          return fail(p, 400, "malformed chunk size");
        }
        ++p;
        break;
      case state::chunk_size_lf:
        if (*p != '\n') return fail(p, 400, "chunk size line not ended by CRLF");
        ++p;
        if (m_.remaining == 0) {  // the last chunk: the trailer section follows
          m_.trailers = true;
          state_ = state::field_start;
          return p;
        }
        state_ = state::chunk_data;
        break;
      case state::chunk_data_cr:
        if (*p != '\r') return fail(p, 400, "chunk data not followed by CRLF");
        ++p;
        state_ = state::chunk_data_lf;
        break;
      case state::chunk_data_lf:
        if (*p != '\n') return fail(p, 400, "chunk data not followed by CRLF");
        ++p;
        m_.chunk_digits = 0;
        m_.remaining = 0;
        state_ = state::chunk_size;
        break;
      case state::ext_name_start:
      case state::ext_name:
      case state::ext_value_start:
      case state::ext_token:
      case state::ext_quoted:
      case state::ext_quoted_pair:
      case state::ext_after_quoted:
        p = parse_chunk_ext(p, end);
        break;
      default:
        return p;
    }
  }
  return p;
}

// chunk-ext = *( ";" token [ "=" ( token / quoted-string ) ] ), without the
// optional whitespace RFC 9112 §7.1.1 tolerates. Ignored, but every byte of
// every extension in the request counts against max_header_bytes.
const char* request_parser::parse_chunk_ext(const char* p, const char* end) {
  std::size_t budget = limits_.max_header_bytes - m_.ext_bytes;
  const char* lim = p + std::min(static_cast<std::size_t>(end - p), budget);
  const char* s = p;
  // After a name or a value: another extension, or the end of the line.
  auto separator = [&](char c) {
    if (c == ';') {
      state_ = state::ext_name_start;
    } else if (c == '\r') {
      state_ = state::chunk_size_lf;
    } else {
      fail(p, 400, "malformed chunk extension");
      return;
    }
    ++p;
  };
  while (p < lim && state_ != state::chunk_size_lf && state_ != state::error) {
    char c = *p;
    switch (state_) {
      case state::ext_name_start:
        if (!is(c, k_tchar)) {
          fail(p, 400, "malformed chunk extension");
          break;
        }
        ++p;
        state_ = state::ext_name;
        break;
      case state::ext_name:
        if (is(c, k_tchar)) {
          ++p;
        } else if (c == '=') {
          ++p;
          state_ = state::ext_value_start;
        } else {
          separator(c);
        }
        break;
      case state::ext_value_start:
        if (c == '"') {
          state_ = state::ext_quoted;
        } else if (is(c, k_tchar)) {
          state_ = state::ext_token;
        } else {
          fail(p, 400, "malformed chunk extension");
          break;
        }
        ++p;
        break;
      case state::ext_token:
        if (is(c, k_tchar)) {
          ++p;
        } else {
          separator(c);
        }
        break;
      case state::ext_quoted:
        if (c == '"') {
          state_ = state::ext_after_quoted;
        } else if (c == '\\') {
          state_ = state::ext_quoted_pair;
        } else if (!is(c, k_value)) {
          fail(p, 400, "malformed chunk extension");
          break;
        }
        ++p;
        break;
      case state::ext_quoted_pair:
        if (!is(c, k_value)) {
          fail(p, 400, "malformed chunk extension");
          break;
        }
        ++p;
        state_ = state::ext_quoted;
        break;
      case state::ext_after_quoted:
        separator(c);
        break;
      default:
        return p;
    }
  }
  m_.ext_bytes += static_cast<std::size_t>(p - s);
  if (state_ != state::chunk_size_lf && state_ != state::error && p == lim && p < end) {
    return fail(p, 400, "chunk extensions too long");
  }
  return p;
}

parse_outcome parse_one(std::string_view bytes, const limits& l) {
  parse_outcome out;
  request_parser parser(l);
  auto s = parser.parse(out.parsed, bytes);
  out.state = s.state;
  out.consumed = s.consumed;
  if (s.state == request_parser::result::error) {
    out.status = parser.error_status();
    out.message = parser.error_message();
  }
  out.expects_continue = parser.headers_complete() && parser.expects_continue();
  return out;
}

}  // namespace tern::http
