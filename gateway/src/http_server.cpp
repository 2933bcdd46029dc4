#include "http_server.hpp"

#include "json_writer.hpp"

#include <tern/transport/server.hpp>

#include <http_parser.h>
#include <spdlog/spdlog.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <charconv>

namespace tern::gateway {

namespace {

constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);
using clock_type = std::chrono::steady_clock;

// What the parser callbacks build, plus the connection's timing state.
struct parse_state {
  const http_limits* limits = nullptr;
  http_request req;
  std::string field, value;
  bool in_value = false;
  std::size_t header_bytes = 0;
  bool in_message = false;  // a request has begun and is not complete
  bool complete = false;
  int error_status = 0;  // 431 or 413 decided by a callback
  clock_type::time_point started{};

  bool count_header(std::size_t n) {
    header_bytes += n;
    if (header_bytes > limits->max_header_bytes) {
      error_status = 431;
      return false;
    }
    return true;
  }
  void end_header() {
    if (!field.empty() || in_value) {
      for (auto& c : field) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      req.headers.emplace_back(std::move(field), std::move(value));
      field.clear();
      value.clear();
    }
    in_value = false;
  }
};

}  // namespace

struct http_server::session_info {
  asio::ip::tcp::socket* socket;
  parse_state* st;
  bool busy = false;  // handling or writing a response
  clock_type::time_point last_done{};
  [[nodiscard]] bool in_message() const { return st->in_message; }
  [[nodiscard]] clock_type::time_point started() const { return st->started; }
  [[nodiscard]] const std::string& peer() const { return st->req.peer; }
};

namespace {

parse_state& state(http_parser* p) {
  return *static_cast<parse_state*>(p->data);
}

const http_parser_settings& settings() {
  static const http_parser_settings s = [] {
    http_parser_settings s{};
    s.on_message_begin = [](http_parser* p) {
      auto& st = state(p);
      st.req.reset();  // keeps the strings' capacity for the next request
      st.header_bytes = 0;
      st.in_message = true;
      st.started = clock_type::now();
      return 0;
    };
    s.on_url = [](http_parser* p, const char* at, std::size_t n) {
      auto& st = state(p);
      st.req.target.append(at, n);
      return st.count_header(n) ? 0 : 1;
    };
    s.on_header_field = [](http_parser* p, const char* at, std::size_t n) {
      auto& st = state(p);
      if (st.in_value) st.end_header();
      st.field.append(at, n);
      return st.count_header(n) ? 0 : 1;
    };
    s.on_header_value = [](http_parser* p, const char* at, std::size_t n) {
      auto& st = state(p);
      st.in_value = true;
      st.value.append(at, n);
      return st.count_header(n) ? 0 : 1;
    };
    s.on_headers_complete = [](http_parser* p) {
      auto& st = state(p);
      st.end_header();
      st.req.method = http_method_str(static_cast<http_method>(p->method));
      auto target = std::string_view(st.req.target);
      auto q = target.find('?');
      st.req.path.assign(target.substr(0, q));
      if (q != std::string::npos) st.req.query.assign(target.substr(q + 1));
      if (p->content_length != ULLONG_MAX && p->content_length > st.limits->max_body_bytes) {
        st.error_status = 413;
        return -1;
      }
      return 0;
    };
    s.on_body = [](http_parser* p, const char* at, std::size_t n) {
      auto& st = state(p);
      if (st.req.body.size() + n > st.limits->max_body_bytes) {
        st.error_status = 413;
        return 1;
      }
      st.req.body.append(at, n);
      return 0;
    };
    s.on_message_complete = [](http_parser* p) {
      auto& st = state(p);
      st.complete = true;
      st.in_message = false;
      http_parser_pause(p, 1);  // one request at a time: answered before the next is parsed
      return 0;
    };
    return s;
  }();
  return s;
}

void append_response(std::string& out, const http_response& r, bool keep_alive) {
  char num[16];
  out += "HTTP/1.1 ";
  out.append(num, std::to_chars(num, num + sizeof num, r.status).ptr);
  out += ' ';
  out += reason_phrase(r.status);
  out += "\r\nContent-Type: ";
  out += r.content_type;
  out += "\r\nContent-Length: ";
  out.append(num, std::to_chars(num, num + sizeof num, r.body.size()).ptr);
  out += keep_alive ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n";
  for (const auto& [k, v] : r.headers) {
    out += k;
    out += ": ";
    out += v;
    out += "\r\n";
  }
  out += "\r\n";
  out += r.body;
}

}  // namespace

void http_request::reset() {
  method = {};
  target.clear();
  path.clear();
  query.clear();
  headers.clear();
  body.clear();
}

std::string_view http_request::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return {};
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return status < 400 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
  }
}

http_response error_response(int status, std::string_view message) {
  http_response r;
  r.status = status;
  r.body = "{\"statusCode\":" + std::to_string(status) + ",\"message\":";
  append_json_string(message, r.body);
  r.body += ",\"error\":";
  append_json_string(reason_phrase(status), r.body);
  r.body += '}';
  return r;
}

http_server::http_server(asio::io_context& io, http_limits limits, handler h)
    : io_(io), limits_(limits), handler_(std::move(h)), acceptor_(io), sweeper_(io) {}

http_server::~http_server() {
  stop();
}

std::uint16_t http_server::listen(const std::string& host, std::uint16_t port) {
  auto bound = transport::open_acceptor(acceptor_, host, port);
  running_ = true;
  asio::co_spawn(io_, accept_loop(), asio::detached);
  asio::co_spawn(io_, sweep_loop(), asio::detached);
  return bound;
}

void http_server::stop() {
  running_ = false;
  std::error_code ec;
  acceptor_.close(ec);
  sweeper_.cancel();
  for (auto* s : sessions_) s->socket->close(ec);
}

asio::awaitable<void> http_server::sweep_loop() {
  // One timer for every connection, instead of one re-armed per request:
  // a deadline is noticed within one tick of passing.
  auto tick = std::clamp(std::min(limits_.read_timeout, limits_.idle_timeout) / 8,
                         std::chrono::milliseconds(5), std::chrono::milliseconds(1000));
  while (running_) {
    sweeper_.expires_after(tick);
    co_await sweeper_.async_wait(nothrow);
    auto now = clock_type::now();
    for (auto* s : sessions_) {
      if (s->busy) continue;  // handling or writing: the client is not the one being slow
      auto deadline = s->in_message() ? s->started() + limits_.read_timeout
                                      : s->last_done + limits_.idle_timeout;
      if (now >= deadline) {
        spdlog::debug("[{}] http connection timed out", s->peer());
        std::error_code ec;
        s->socket->close(ec);  // its read fails and the session ends
      }
    }
  }
}

asio::awaitable<void> http_server::accept_loop() {
  asio::steady_timer pause(io_);
  while (running_) {
    auto [ec, sock] = co_await acceptor_.async_accept(nothrow);
    if (!running_) co_return;
    if (ec) {
      spdlog::warn("http accept failed: {}", ec.message());
      pause.expires_after(std::chrono::milliseconds(50));
      co_await pause.async_wait(nothrow);
      continue;
    }
    asio::co_spawn(io_, session(std::move(sock)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("http session failed: {}", ex.what());
      }
    });
  }
}

asio::awaitable<void> http_server::session(asio::ip::tcp::socket socket) {
  std::error_code ec;
  socket.set_option(asio::ip::tcp::no_delay(true), ec);
  auto remote = socket.remote_endpoint(ec);
  parse_state st;
  st.limits = &limits_;
  st.req.peer =
      ec ? "(unknown)" : remote.address().to_string() + ":" + std::to_string(remote.port());
  session_info info{&socket, &st};
  info.last_done = clock_type::now();
  sessions_.insert(&info);
  struct unregister {
    http_server* s;
    session_info* info;
    ~unregister() { s->sessions_.erase(info); }
  } guard{this, &info};

  http_parser parser;
  http_parser_init(&parser, HTTP_REQUEST);
  parser.data = &st;
  std::vector<char> in(16 * 1024);
  std::string out;
  for (;;) {
    auto [rec, n] = co_await socket.async_read_some(asio::buffer(in), nothrow);
    if (rec) break;
    std::size_t pos = 0;
    bool close_after = false;
    while (pos < n && !close_after) {
      pos += http_parser_execute(&parser, &settings(), in.data() + pos, n - pos);
      if (st.complete) {
        st.complete = false;
        http_parser_pause(&parser, 0);
        bool keep = http_should_keep_alive(&parser) != 0;
        info.busy = true;
        http_response r;
        try {
          r = co_await handler_(st.req);
        } catch (const std::exception& e) {
          spdlog::error("[{}] {} {} failed: {}", st.req.peer, st.req.method, st.req.target,
                        e.what());
          r = error_response(500, "Internal server error");
        }
        info.busy = false;
        info.last_done = clock_type::now();
        append_response(out, r, keep);
        close_after = !keep;
      } else if (HTTP_PARSER_ERRNO(&parser) != HPE_OK) {
        auto err = HTTP_PARSER_ERRNO(&parser);
        int status = st.error_status ? st.error_status : err == HPE_HEADER_OVERFLOW ? 431 : 400;
        spdlog::debug("[{}] bad request ({}): {}", st.req.peer, status,
                      http_errno_description(err));
        append_response(out,
                        error_response(status, status == 431   ? "request header fields too large"
                                               : status == 413 ? "request body too large"
                                                               : "malformed HTTP request"),
                        false);
        close_after = true;
      }
    }
    if (!out.empty()) {
      info.busy = true;
      auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(out), nothrow);
      info.busy = false;
      info.last_done = clock_type::now();
      out.clear();
      if (wec) break;
    }
    if (close_after) {
      socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
      break;
    }
  }
  socket.close(ec);
}

}  // namespace tern::gateway
