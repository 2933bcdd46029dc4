#include "tern/http/server.hpp"
#include "tern/http/request_parser.hpp"

#include "../support/harness.hpp"

#include <doctest/doctest.h>
#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <sys/resource.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace tern::http;
using http_limits = tern::http::limits;
using http_request = tern::http::request;
using http_response = tern::http::response;
using http_server = tern::http::server;
using result = request_parser::result;
using namespace std::string_view_literals;

namespace {

// ---- the parser, without sockets ----

struct outcome {
  result state = result::need_more;
  std::size_t consumed = 0;
  int status = 0;
  bool headers_complete = false;
  bool expects_continue = false;
  http_request req;
};

// Feeds `bytes` to a fresh parser cut at the offsets `cuts`, each piece
// copied into a heap buffer of exactly its size, so that a read past a
// piece is caught under ASan. Stops at the first complete request or error.
outcome feed(std::string_view bytes, const std::vector<std::size_t>& cuts,
             const http_limits& limits = {}) {
  request_parser parser(limits);
  outcome out;
  std::size_t pos = 0;
  std::size_t next = 0;
  for (;;) {
    while (next < cuts.size() && cuts[next] <= pos) ++next;
    std::size_t stop = next < cuts.size() ? cuts[next] : bytes.size();
    std::size_t n = stop - pos;
    auto piece = std::make_unique<char[]>(n);
    if (n) std::memcpy(piece.get(), bytes.data() + pos, n);
    auto s = parser.parse(out.req, std::string_view(piece.get(), n));
    pos += s.consumed;
    out.state = s.state;
    if (s.state != result::need_more) break;
    REQUIRE(s.consumed == n);
    if (pos == bytes.size()) break;
  }
  out.consumed = pos;
  if (out.state == result::error) out.status = parser.error_status();
  out.headers_complete = parser.headers_complete();
  out.expects_continue = parser.expects_continue();
  return out;
}

outcome whole(std::string_view bytes, const http_limits& limits = {}) {
  return feed(bytes, {}, limits);
}

std::vector<std::size_t> every_byte(std::size_t size) {
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < size; ++i) cuts.push_back(i);
  return cuts;
}

void check_same(const outcome& a, const outcome& b) {
  CHECK(a.state == b.state);
  CHECK(a.consumed == b.consumed);
  CHECK(a.status == b.status);
  CHECK(a.headers_complete == b.headers_complete);
  CHECK(a.expects_continue == b.expects_continue);
  CHECK(a.req.method == b.req.method);
  CHECK(a.req.target == b.req.target);
  CHECK(a.req.path == b.req.path);
  CHECK(a.req.query == b.req.query);
  CHECK(a.req.headers == b.req.headers);
  CHECK(a.req.body == b.req.body);
  CHECK(a.req.version_minor == b.req.version_minor);
  CHECK(a.req.keep_alive == b.req.keep_alive);
}

// The request's fate: 0 complete, -1 need more, else the error status. Also
// checks that one byte at a time gives the same result as all at once.
int status_of(std::string_view bytes, const http_limits& limits = {}) {
  auto all = whole(bytes, limits);
  check_same(all, feed(bytes, every_byte(bytes.size()), limits));
  return all.state == result::complete ? 0 : all.state == result::need_more ? -1 : all.status;
}

std::string get(std::string_view headers) {
  return "GET / HTTP/1.1\r\n" + std::string(headers) + "\r\n";
}

std::string chunked(std::string_view body) {
  return "POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(body);
}

const std::string typical_get =
    "GET /api-gateway/users?limit=2&x=%20 HTTP/1.1\r\n"
    "Host: localhost:3000\r\n"
    "User-Agent: test/1.0\r\n"
    "Accept:  */*  \r\n"
    "X-Empty:\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

const std::string chunked_post = chunked(
    "4\r\nWiki\r\n"
    "5;name=val;flag;q=\"a \\\"b\\\"\"\r\npedia\r\n"
    "E\r\n in\r\n\r\nchunks.\r\n"
    "0;last\r\n"
    "Expires: never\r\n"
    "X-Trailer: 1\r\n"
    "\r\n");

// Requests of every shape, valid and not, for the split and overread checks.
const std::vector<std::string> samples = {
    typical_get,
    chunked_post,
    "POST /api-gateway/users HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n{\"a\":\"bc\"}\n",
    "\r\n\r\nGET http://example.com/api-gateway/users?limit=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    "OPTIONS * HTTP/1.0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    chunked("3\r\nabcdef\r\n"),
    chunked("1;" + std::string(40, 'e') + "\r\nx\r\n0\r\n\r\n"),
    "GET / HTTP/1.1\r\n\r\n",
    "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
};

}  // namespace

TEST_CASE("a GET is parsed into method, target, path, query and lower-cased, trimmed headers") {
  auto o = whole(typical_get);
  REQUIRE(o.state == result::complete);
  CHECK(o.consumed == typical_get.size());
  CHECK(o.req.method == "GET");
  CHECK(o.req.target == "/api-gateway/users?limit=2&x=%20");
  CHECK(o.req.path == "/api-gateway/users");
  CHECK(o.req.query == "limit=2&x=%20");
  REQUIRE(o.req.headers.size() == 5);
  CHECK(o.req.headers[0] == std::pair<std::string, std::string>("host", "localhost:3000"));
  CHECK(o.req.headers[1].first == "user-agent");
  CHECK(o.req.header("accept") == "*/*");
  CHECK(o.req.header("x-empty").empty());
  CHECK(o.req.header("missing").empty());
  CHECK(o.req.version_minor == 1);
  CHECK(o.req.keep_alive);
  CHECK(o.req.body.empty());

  auto one = parse_one(typical_get);
  CHECK(one.state == result::complete);
  CHECK(one.parsed.path == "/api-gateway/users");
  CHECK(parse_one("GET / HTTP/1.1\r\n\r\n").status == 400);
  CHECK(parse_one("GET / HTTP/1.1\r\n\r\n").message == "missing Host header");
}

TEST_CASE("bytes fed in any pieces give the same result as all at once") {
  for (const auto& s : samples) {
    CAPTURE(s);
    auto all = whole(s);
    check_same(all, feed(s, every_byte(s.size())));
    for (std::size_t cut = 0; cut <= s.size(); ++cut) check_same(all, feed(s, {cut}));
  }
}

TEST_CASE("pipelined requests are parsed one at a time and the rest is left to the caller") {
  std::string a = "GET /a HTTP/1.1\r\nHost: x\r\nX-Long: " + std::string(100, 'v') + "\r\n\r\n";
  std::string b = "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
  std::string c = chunked("1\r\nz\r\n0\r\n\r\n");
  std::string all = a + b + c + "GET /d HTTP/1.0\r\n\r\n";
  std::string_view rest = all;
  request_parser p;
  http_request req;
  auto s = p.parse(req, rest);
  REQUIRE(s.state == result::complete);
  CHECK(s.consumed == a.size());
  CHECK(req.path == "/a");
  CHECK_FALSE(p.in_progress());
  auto header_storage = req.headers.capacity();
  rest.remove_prefix(s.consumed);

  s = p.parse(req, rest);
  REQUIRE(s.state == result::complete);
  CHECK(s.consumed == b.size());
  CHECK((req.method == "POST" && req.path == "/b" && req.body == "abc"));
  CHECK(req.headers.size() == 2);
  CHECK(req.headers.capacity() == header_storage);  // storage kept between requests
  rest.remove_prefix(s.consumed);

  s = p.parse(req, rest);
  REQUIRE(s.state == result::complete);
  CHECK(s.consumed == c.size());
  CHECK(req.body == "z");
  rest.remove_prefix(s.consumed);

  s = p.parse(req, rest);
  REQUIRE(s.state == result::complete);
  CHECK((req.path == "/d" && req.version_minor == 0 && !req.keep_alive));
  CHECK(s.consumed == rest.size());

  s = p.parse(req, "");
  CHECK((s.state == result::need_more && s.consumed == 0));
  CHECK_FALSE(p.in_progress());
  CHECK(req.path.empty());   // the next request has begun (reset)
  s = p.parse(req, "\r\n");  // an empty line between requests is ignored, and not a request
  CHECK(s.state == result::need_more);
  CHECK_FALSE(p.in_progress());
  s = p.parse(req, "G");
  CHECK(p.in_progress());
  CHECK_FALSE(p.headers_complete());
}

TEST_CASE("a chunked body is read strictly") {
  auto o = whole(chunked_post);
  REQUIRE(o.state == result::complete);
  CHECK(o.consumed == chunked_post.size());
  CHECK(o.req.body == "Wikipedia in\r\n\r\nchunks.");
  CHECK(o.req.header("expires").empty());  // trailers are read and ignored
  CHECK(o.req.headers.size() == 2);
  CHECK(status_of(chunked("a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n")) == 0);
  CHECK(status_of(chunked("0000000000000003\r\nabc\r\n0\r\n\r\n")) == 0);  // 16 digits

  // The case libhttp-parser got wrong: chunk data must end where its size says.
  CHECK(status_of(chunked("3\r\nabcdef\r\n")) == 400);
  CHECK(status_of(chunked("3\r\nabc\n0\r\n\r\n")) == 400);  // bare LF after the data
  CHECK(status_of(chunked("3\r\nabcX\r\n0\r\n\r\n")) == 400);
  CHECK(status_of(chunked("3\nabc\r\n0\r\n\r\n")) == 400);  // bare LF after the size
  CHECK(status_of(chunked("3\rabc\r\n0\r\n\r\n")) == 400);
  CHECK(status_of(chunked("\r\nabc\r\n")) == 400);  // no size
  CHECK(status_of(chunked("x\r\n")) == 400);
  CHECK(status_of(chunked(" 3\r\nabc\r\n")) == 400);
  CHECK(status_of(chunked("3 \r\nabc\r\n")) == 400);
  CHECK(status_of(chunked("-3\r\nabc\r\n")) == 400);
  CHECK(status_of(chunked("0x3\r\nabc\r\n")) == 400);
  CHECK(status_of(chunked("00000000000000003\r\nabc\r\n")) == 400);  // 17 digits
  CHECK(status_of(chunked("0\r\n\n")) == 400);
  CHECK(status_of(chunked("0\r\n")) == -1);
  CHECK(status_of(chunked("0\r\n\r")) == -1);
  CHECK(status_of(chunked("3\r\nab")) == -1);

  // Sizes against the body limit, before any of the data is read.
  http_limits small;
  small.max_body_bytes = 10;
  CHECK(status_of(chunked("A\r\n0123456789\r\n0\r\n\r\n"), small) == 0);
  CHECK(status_of(chunked("B\r\n"), small) == 413);
  CHECK(status_of(chunked("5\r\nabcde\r\n6\r\n"), small) == 413);
  CHECK(status_of(chunked("FFFFFFFFFFFFFFFF\r\n")) == 413);
  CHECK(status_of(chunked("FFFFFFFFFFFFFFFFF\r\n")) == 400);

  // Extensions: ;name[=token|quoted-string], no whitespace, bounded.
  CHECK(status_of(chunked("3;a=b;c;d=\"x;y\\\\\"\r\nabc\r\n0\r\n\r\n")) == 0);
  CHECK(status_of(chunked("3;\r\nabc\r\n")) == 400);
  CHECK(status_of(chunked("3;=x\r\nabc\r\n")) == 400);
  CHECK(status_of(chunked("3;a=\r\nabc\r\n")) == 400);
  CHECK(status_of(chunked("3; a\r\nabc\r\n")) == 400);
  CHECK(status_of(chunked("3;a =b\r\nabc\r\n")) == 400);
  CHECK(status_of(chunked("3;a=\"open\r\nabc\r\n")) == 400);
  CHECK(status_of(chunked("3;a=\"x\"y\r\nabc\r\n")) == 400);
  CHECK(status_of(chunked("3;a\nabc\r\n")) == 400);
  http_limits tight;
  tight.max_header_bytes = 200;
  CHECK(status_of(chunked("1;" + std::string(150, 'e') + "\r\nx\r\n0\r\n\r\n"), tight) == 0);
  CHECK(status_of(chunked("1;" + std::string(250, 'e') + "\r\nx\r\n0\r\n\r\n"), tight) == 400);
  std::string many;  // each extension is small; together they pass the limit
  for (int i = 0; i < 10; ++i) many += "1;" + std::string(30, 'e') + "\r\nx\r\n";
  CHECK(status_of(chunked(many + "0\r\n\r\n"), tight) == 400);

  // Trailers: checked like headers, counted with them, not kept.
  CHECK(status_of(chunked("0\r\nX: 1\r\n 2\r\n\r\n")) == 400);
  CHECK(status_of(chunked("0\r\nX : 1\r\n\r\n")) == 400);
  CHECK(status_of(chunked("0\r\nX: 1\n\r\n")) == 400);
  CHECK(status_of(chunked("0\r\nX: " + std::string(300, 't') + "\r\n\r\n"), tight) == 431);
  std::string trailers;
  for (int i = 0; i < 98; ++i) trailers += "T: 1\r\n";  // 2 headers + 98 trailers = 100
  CHECK(status_of(chunked("0\r\n" + trailers + "\r\n")) == 0);
  CHECK(status_of(chunked("0\r\n" + trailers + "T: 1\r\n\r\n")) == 431);
}

TEST_CASE("HTTP/1.1 needs exactly one valid Host header, HTTP/1.0 none") {
  CHECK(status_of("GET / HTTP/1.1\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nhOST: b\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.0\r\n\r\n") == 0);
  CHECK(status_of("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n") == 400);
  CHECK(status_of(get("Host: a b\r\n")) == 400);
  CHECK(status_of(get("Host: a/b\r\n")) == 400);
  CHECK(status_of(get("Host:\r\n")) == 0);  // empty is allowed (RFC 9112 §3.2)
  CHECK(status_of(get("Host: [::1]:8080\r\n")) == 0);
  CHECK(status_of(get("Host: example.com:80\r\n")) == 0);
}

TEST_CASE("an absolute-form target is routed by its path and query") {
  auto o = whole("GET http://example.com/api-gateway/users?limit=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  REQUIRE(o.state == result::complete);
  CHECK(o.req.target == "http://example.com/api-gateway/users?limit=1");
  CHECK(o.req.path == "/api-gateway/users");
  CHECK(o.req.query == "limit=1");
  o = whole("GET HTTPS://example.com:8443 HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK((o.state == result::complete && o.req.path == "/" && o.req.query.empty()));
  o = whole("GET http://example.com?a=b HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK((o.state == result::complete && o.req.path == "/" && o.req.query == "a=b"));
  o = whole("GET /a/b?c?d HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK((o.req.path == "/a/b" && o.req.query == "c?d"));
  // Absolute-form still needs Host in HTTP/1.1.
  CHECK(status_of("GET http://example.com/ HTTP/1.1\r\n\r\n") == 400);
  CHECK(status_of("GET http://user@example.com/ HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET http:///x HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET http:/x HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET 1http://x/ HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET http://ex{ample/ HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET users HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
  // Asterisk-form: OPTIONS only; its path is "*" (no route matches it: 404).
  o = whole("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK((o.state == result::complete && o.req.path == "*"));
  CHECK(status_of("GET * HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("OPTIONS *x HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
}

TEST_CASE("Expect: 100-continue is reported once the headers are in, others get 417") {
  std::string head =
      "POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n";
  auto o = whole(head);
  CHECK(o.state == result::need_more);
  CHECK(o.headers_complete);
  CHECK(o.expects_continue);
  request_parser p;
  http_request req;
  CHECK(p.parse(req, std::string_view(head).substr(0, head.size() - 1)).state == result::need_more);
  CHECK_FALSE(p.headers_complete());
  CHECK_FALSE(p.expects_continue());
  CHECK(p.parse(req, "\n").state == result::need_more);
  CHECK((p.headers_complete() && p.expects_continue()));
  CHECK(p.parse(req, "abc").state == result::complete);
  CHECK(req.body == "abc");

  // No body, or HTTP/1.0: nothing to continue.
  CHECK_FALSE(whole(get("Host: x\r\nExpect: 100-continue\r\n")).expects_continue);
  CHECK_FALSE(whole("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                  .expects_continue);
  CHECK(whole(chunked("")).state == result::need_more);
  CHECK(whole("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
              "Transfer-Encoding: chunked\r\n\r\n")
            .expects_continue);

  CHECK(status_of(get("Host: x\r\nExpect: something-else\r\n")) == 417);
  CHECK(status_of(get("Host: x\r\nExpect: 100-continue, more\r\n")) == 417);
  CHECK(status_of(get("Host: x\r\nExpect:\r\n")) == 0);  // an empty list expects nothing
  // Over the body limit: 413, not 100.
  o = whole(
      "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n");
  CHECK((o.state == result::error && o.status == 413));
}

TEST_CASE("framing that could be read two ways is refused") {
  CHECK(status_of(get("Host: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n")) == 400);
  CHECK(status_of(get("Host: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n")) == 400);
  CHECK(status_of(get("Host: x\r\nTransfer-Encoding: gzip\r\n")) == 400);  // chunked not last
  CHECK(status_of(get("Host: x\r\nTransfer-Encoding: chunked, gzip\r\n")) == 400);
  CHECK(status_of(get("Host: x\r\nTransfer-Encoding:\r\n")) == 400);
  CHECK(status_of(get("Host: x\r\nTransfer-Encoding: chunked;x=1\r\n")) == 400);
  CHECK(status_of(get("Host: x\r\nTransfer-Encoding: gzip, chunked\r\n")) == 501);
  CHECK(status_of(get("Host: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")) ==
        501);
  CHECK(status_of(get("Host: x\r\nTransfer-Encoding: CHUNKED\r\n") + "0\r\n\r\n") == 0);
  CHECK(status_of("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n") == 400);

  auto length = [](std::string_view v) {
    return status_of(get("Host: x\r\nContent-Length: " + std::string(v) + "\r\n") + "abc");
  };
  CHECK(length("3") == 0);
  CHECK(length(" 3 ") == 0);
  CHECK(length("3, 3") == 0);
  CHECK(length("3\r\nContent-Length: 3") == 0);
  CHECK(length("abc") == 400);
  CHECK(length("-3") == 400);
  CHECK(length("+3") == 400);
  CHECK(length("3 3") == 400);
  CHECK(length("0x3") == 400);
  CHECK(length("") == 400);
  CHECK(length("3,") == 400);
  CHECK(length("3, 4") == 400);
  CHECK(length("3\r\nContent-Length: 4") == 400);
  CHECK(length("18446744073709551615") == 413);  // the largest 64-bit value: over the limit
  CHECK(length("18446744073709551616") == 400);  // overflow
  CHECK(length("99999999999999999999999999") == 400);
  CHECK(length("1048577") == 413);
  CHECK(length("1048576") == -1);
  auto o = whole(get("Host: x\r\nContent-Length: 00\r\n"));
  CHECK((o.state == result::complete && o.req.body.empty()));
}

TEST_CASE("header fields are strict") {
  CHECK(status_of(get("Host : x\r\n")) == 400);  // whitespace before the colon
  CHECK(status_of(get("Host\t: x\r\n")) == 400);
  CHECK(status_of(get("Host: x\r\nX-A: 1\r\n 2\r\n")) == 400);  // obs-fold
  CHECK(status_of(get("Host: x\r\nX-A: 1\r\n\t2\r\n")) == 400);
  CHECK(status_of(get(" Host: x\r\n")) == 400);
  CHECK(status_of(get("Host: x\r\nX(A): 1\r\n")) == 400);
  CHECK(status_of(get("Host: x\r\nX\"A: 1\r\n")) == 400);
  CHECK(status_of(get("Host: x\r\n: 1\r\n")) == 400);
  CHECK(status_of(get("Host: x\r\nX-A 1\r\n")) == 400);
  CHECK(status_of(get("Host: x\r\nX-A: a\0b\r\n"sv)) == 400);
  CHECK(status_of(get("Host: x\r\nX-A: a\x01z\r\n")) == 400);
  CHECK(status_of(get("Host: x\r\nX-A: a\x7f\r\n")) == 400);
  CHECK(status_of(get("Host: x\r\nX-A: a\rb\r\n")) == 400);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\nX: 1\r\n\r\n") == 400);  // bare LF
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r\n\n") == 400);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r\n\r\r\n") == 400);
  auto o = whole(get("Host: x\r\nX-Text:\t caf\xc3\xa9 \t au\tlait \t\r\nX-Upper-CASE: V\r\n"));
  REQUIRE(o.state == result::complete);
  CHECK(o.req.header("x-text") == "caf\xc3\xa9 \t au\tlait");  // obs-text kept; OWS trimmed
  CHECK(o.req.header("x-upper-case") == "V");
}

TEST_CASE("the request line is strict") {
  CHECK(status_of("get / HTTP/1.1\r\nHost: x\r\n\r\n") ==
        0);  // a token; methods are case-sensitive
  CHECK(whole("PATCH /x HTTP/1.1\r\nHost: x\r\n\r\n").req.method == "PATCH");
  CHECK(status_of("G(T / HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of(" GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET  / HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.1 \r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET /a\x7f HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET /\x80 HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET /\0 HTTP/1.1\r\nHost: x\r\n\r\n"sv) == 400);
  CHECK(status_of("GET /\r\nHost: x\r\n\r\n") == 400);  // HTTP/0.9
  CHECK(status_of("GET / HTTP/1.1\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.1\r\rHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET / http/1.1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.10\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.x\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/2.0\r\nHost: x\r\n\r\n") == 505);
  CHECK(status_of("GET / HTTP/3.0\r\nHost: x\r\n\r\n") == 505);
  CHECK(status_of("GET / HTTP/1.2\r\nHost: x\r\n\r\n") == 505);
  CHECK(status_of("GET / HTTP/0.9\r\nHost: x\r\n\r\n") == 505);
  CHECK(status_of("THIS IS NOT HTTP\r\n\r\n") == 400);
  CHECK(status_of("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);  // empty lines first
  CHECK(status_of("\nGET / HTTP/1.1\r\nHost: x\r\n\r\n") == 400);
  CHECK(status_of("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"sv) == 400);  // TLS hello
  CHECK(status_of("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == 400);                // h2 preface
}

TEST_CASE("header bytes and header count are bounded") {
  http_limits limits;
  limits.max_header_bytes = 100;
  std::string base = "GET / HTTP/1.1\r\nHost: x\r\nX: ";  // 29 bytes; "\r\n\r\n" ends it
  std::string exact = base + std::string(100 - base.size() - 4, 'v') + "\r\n\r\n";
  REQUIRE(exact.size() == 100);
  CHECK(status_of(exact, limits) == 0);
  CHECK(status_of(base + std::string(100 - base.size() - 3, 'v') + "\r\n\r\n", limits) == 431);
  CHECK(status_of("GET /" + std::string(200, 'a') + " HTTP/1.1\r\n", limits) == 431);
  CHECK(status_of(std::string(100, '\r') + "\n", limits) == 400);
  std::string crlfs;
  for (int i = 0; i < 50; ++i) crlfs += "\r\n";  // empty lines count too
  CHECK(status_of(crlfs + "G", limits) == 431);
  CHECK(status_of(std::string(200, 'G'), limits) == 431);  // never ends: refused at the limit

  std::string fields = "Host: x\r\n";
  for (int i = 0; i < 99; ++i) fields += "X-" + std::to_string(i) + ": v\r\n";
  CHECK(status_of(get(fields)) == 0);  // 100
  CHECK(status_of(get(fields + "One-More: v\r\n")) == 431);
  http_limits few;
  few.max_headers = 2;
  CHECK(status_of(get("Host: x\r\nA: 1\r\n"), few) == 0);
  CHECK(status_of(get("Host: x\r\nA: 1\r\nB: 2\r\n"), few) == 431);
}

TEST_CASE("keep-alive follows the version and the Connection header's tokens") {
  auto keep = [](std::string_view line, std::string_view fields) {
    auto o = whole(std::string(line) + "\r\nHost: x\r\n" + std::string(fields) + "\r\n");
    REQUIRE(o.state == result::complete);
    return o.req.keep_alive;
  };
  CHECK(keep("GET / HTTP/1.1", ""));
  CHECK_FALSE(keep("GET / HTTP/1.1", "Connection: close\r\n"));
  CHECK_FALSE(keep("GET / HTTP/1.1", "Connection: Upgrade, CLOSE\r\n"));
  CHECK_FALSE(keep("GET / HTTP/1.1", "Connection: x\r\nConnection: close\r\n"));
  CHECK(keep("GET / HTTP/1.1", "Connection: closed, keep-alive\r\n"));
  CHECK_FALSE(keep("GET / HTTP/1.0", ""));
  CHECK(keep("GET / HTTP/1.0", "Connection: Keep-Alive\r\n"));
  CHECK(keep("GET / HTTP/1.0", "Connection: te ,keep-alive\r\n"));
  CHECK_FALSE(keep("GET / HTTP/1.0", "Connection: keep-alive, close\r\n"));
  CHECK_FALSE(keep("GET / HTTP/1.0", "Keep-Alive: yes\r\n"));
}

TEST_CASE("an error is final: the parser consumes nothing more until reset") {
  request_parser p;
  http_request req;
  auto s = p.parse(req, "GET / HTTP/9.9\r\n");
  CHECK(s.state == result::error);
  CHECK(p.error_status() == 505);
  CHECK(p.error_message() == "HTTP version not supported");
  CHECK_FALSE(p.in_progress());
  s = p.parse(req, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK((s.state == result::error && s.consumed == 0));
  p.reset();
  CHECK(p.parse(req, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").state == result::complete);
}

TEST_CASE("nothing is read past the bytes given") {
  // Every prefix of every sample, in an exact-size heap buffer (ASan checks).
  for (const auto& s : samples) {
    auto all = whole(s);
    for (std::size_t k = 0; k <= s.size(); ++k) {
      auto buf = std::make_unique<char[]>(k);
      if (k) std::memcpy(buf.get(), s.data(), k);
      auto one = parse_one(std::string_view(buf.get(), k));
      CHECK(one.consumed <= k);
      if (one.state == result::complete) CHECK(k >= all.consumed);
    }
  }
}

TEST_CASE("mutated requests never break the parser, whole or in pieces") {
  // A small deterministic fuzz: random edits of the samples, parsed at once
  // and in random pieces; both must agree and stay in bounds.
  std::mt19937 rng(20240611);
  auto pick = [&](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n)(rng); };
  const auto alphabet = "\r\n :;=\"\\,\t0aF/?*%\x00\x7f\x80Hh1.-"sv;
  http_limits limits;
  limits.max_header_bytes = 512;
  limits.max_body_bytes = 64;
  limits.max_headers = 8;
  int complete = 0, errors = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string s = samples[pick(samples.size() - 1)];
    for (auto edits = pick(3) + 1; edits > 0; --edits) {
      auto at = pick(s.size());
      switch (pick(3)) {
        case 0:
          if (at < s.size()) s[at] = alphabet[pick(alphabet.size() - 1)];
          break;
        case 1:
          s.insert(at, 1, alphabet[pick(alphabet.size() - 1)]);
          break;
        case 2:
          if (at < s.size()) s.erase(at, 1);
          break;
        default:
          s.insert(at, s.substr(at, pick(20)));
          break;
      }
    }
    std::vector<std::size_t> cuts;
    for (std::size_t c = pick(8); c < s.size(); c += pick(16) + 1) cuts.push_back(c);
    auto all = whole(s, limits);
    check_same(all, feed(s, cuts, limits));
    complete += all.state == result::complete;
    errors += all.state == result::error;
  }
  CHECK(complete > 0);
  CHECK(errors > 0);
}

// ---- the server, over loopback ----

namespace {

using tcp = asio::ip::tcp;
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);

// A one-shot event a coroutine can wait for.
class event {
 public:
  explicit event(asio::io_context& io) : timer_(io, asio::steady_timer::time_point::max()) {}
  void notify() {
    set_ = true;
    timer_.cancel();
  }
  [[nodiscard]] bool is_set() const { return set_; }
  asio::awaitable<void> wait() {
    while (!set_) co_await timer_.async_wait(nothrow);
  }

 private:
  asio::steady_timer timer_;
  bool set_ = false;
};

struct response {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;
  [[nodiscard]] bool close() const { return head.find("\r\nConnection: close\r\n") != npos; }
  static constexpr auto npos = std::string::npos;
};

asio::awaitable<tcp::socket> connect(asio::io_context& io, std::uint16_t port) {
  tcp::socket s(io);
  co_await s.async_connect({asio::ip::make_address("127.0.0.1"), port}, asio::use_awaitable);
  co_return s;
}

asio::awaitable<void> send(tcp::socket& s, std::string_view bytes) {
  co_await asio::async_write(s, asio::buffer(bytes.data(), bytes.size()), asio::use_awaitable);
}

// Reads one response; bytes after it stay in `buf`. A response to HEAD
// (`head`) has a Content-Length but no body.
asio::awaitable<response> read_response(tcp::socket& s, std::string& buf, bool head = false) {
  char chunk[4096];
  for (;;) {
    auto end = buf.find("\r\n\r\n");
    if (end != std::string::npos) {
      response r;
      r.head = buf.substr(0, end + 2);
      REQUIRE_MESSAGE(r.head.rfind("HTTP/1.1 ", 0) == 0, buf);
      r.status = std::stoi(r.head.substr(9, 3));
      std::size_t length = 0;
      if (auto at = r.head.find("\r\nContent-Length: "); at != std::string::npos) {
        length = std::stoul(r.head.substr(at + 18));
      }
      std::size_t total = end + 4 + (head ? 0 : length);
      if (buf.size() >= total) {
        r.body = buf.substr(end + 4, total - end - 4);
        buf.erase(0, total);
        co_return r;
      }
    }
    auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), nothrow);
    if (ec) throw std::runtime_error("closed before a whole response; got: " + buf);
    buf.append(chunk, n);
  }
}

// Everything until the peer closes (or resets), after what `buf` holds.
asio::awaitable<std::string> read_to_end(tcp::socket& s, std::string buf = {}) {
  char chunk[4096];
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), nothrow);
    if (ec) co_return buf;
    buf.append(chunk, n);
  }
}

// Echoes "METHOD path body"; "/slow" waits for `release` after notifying
// `started`. `ended` counts handlers that have ended, however they did.
struct test_app {
  explicit test_app(asio::io_context& io) : started(io), release(io) {}
  event started, release;
  int calls = 0;
  int ended = 0;
  http_server::handler handler() {
    return [this](http_request& r) -> asio::awaitable<http_response> {
      ++calls;
      struct count {
        int& n;
        ~count() { ++n; }
      } end{ended};
      if (r.path == "/slow") {
        started.notify();
        co_await release.wait();
      }
      http_response resp;
      resp.body = r.method + " " + r.path + " " + r.body;
      co_return resp;
    };
  }
};

http_limits test_limits() {
  http_limits l;
  l.read_timeout = std::chrono::milliseconds(5000);
  return l;
}

}  // namespace

TEST_CASE("a HEAD response has no body, so the keep-alive connection stays in sync") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    test_app app(io);
    http_server server(io, test_limits(), app.handler());
    auto port = server.listen("127.0.0.1", 0);
    auto c = co_await connect(io, port);
    std::string buf;
    co_await send(c, "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n");
    auto h = co_await read_response(c, buf, true);
    CHECK(h.status == 200);
    CHECK(h.head.find("\r\nContent-Length: 8\r\n") != std::string::npos);  // "HEAD /h "
    CHECK(h.body.empty());
    co_await send(c, "GET /h HTTP/1.1\r\nHost: x\r\n\r\n");
    auto g = co_await read_response(c, buf);
    CHECK(g.status == 200);
    CHECK(g.body == "GET /h ");
    // Pipelined: the same.
    co_await send(c, "HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK((co_await read_response(c, buf, true)).body.empty());
    CHECK((co_await read_response(c, buf)).body == "GET /b ");
    CHECK(buf.empty());
    c.close();
    co_await server.drain(std::chrono::seconds(5));
    CHECK(server.connections() == 0);
  });
}

TEST_CASE("100 Continue comes before the body is read, 413 or 417 instead of it") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    test_app app(io);
    http_server server(io, test_limits(), app.handler());
    auto port = server.listen("127.0.0.1", 0);
    auto c = co_await connect(io, port);
    std::string buf;
    co_await send(
        c, "POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    auto cont = co_await read_response(c, buf);
    CHECK(cont.status == 100);
    CHECK(cont.head == "HTTP/1.1 100 Continue\r\n");
    CHECK(app.calls == 0);
    co_await send(c, "hello");
    auto r = co_await read_response(c, buf);
    CHECK((r.status == 200 && r.body == "POST /c hello" && !r.close()));
    // Chunked, the same; the body sent with the headers gets no 100.
    co_await send(c,
                  "POST /d HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n");
    CHECK((co_await read_response(c, buf)).status == 100);
    co_await send(c, "2\r\nok\r\n0\r\n\r\n");
    CHECK((co_await read_response(c, buf)).body == "POST /d ok");
    co_await send(
        c, "POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n!");
    CHECK((co_await read_response(c, buf)).body == "POST /e !");
    c.close();

    auto big = co_await connect(io, port);
    buf.clear();
    co_await send(big,
                  "POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  "Content-Length: 2000000\r\n\r\n");
    auto refused = co_await read_response(big, buf);
    CHECK(refused.status == 413);
    CHECK(refused.close());
    CHECK((co_await read_to_end(big, buf)).empty());

    auto odd = co_await connect(io, port);
    buf.clear();
    co_await send(odd, "GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n");
    auto failed = co_await read_response(odd, buf);
    CHECK((failed.status == 417 && failed.close()));
    CHECK(failed.body.find("unsupported expectation") !=
          std::string::npos);  // the reason, as plain text
    CHECK(app.calls == 3);
    big.close();
    odd.close();
    co_await server.drain(std::chrono::seconds(5));
    CHECK(server.connections() == 0);
  });
}

TEST_CASE("a refused request gets its status and Connection: close, then the server closes") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    test_app app(io);
    http_server server(io, test_limits(), app.handler());
    auto port = server.listen("127.0.0.1", 0);
    const std::pair<std::string, int> cases[] = {
        {chunked("3\r\nabcdef\r\n0\r\n\r\n"), 400},
        {"GET / HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
        {"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
    };
    for (const auto& [request, status] : cases) {
      auto c = co_await connect(io, port);
      std::string buf;
      co_await send(c, request);
      auto r = co_await read_response(c, buf);
      CHECK(r.status == status);
      CHECK(r.close());
      CHECK((co_await read_to_end(c, buf)).empty());
      c.close();
    }
    // HTTP/1.0 closes by default; the request before it is answered first.
    auto c = co_await connect(io, port);
    std::string buf;
    co_await send(c,
                  "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.0\r\n\r\nGET /3 HTTP/1.1\r\n");
    CHECK_FALSE((co_await read_response(c, buf)).close());
    auto last = co_await read_response(c, buf);
    CHECK((last.body == "GET /2 " && last.close()));
    CHECK((co_await read_to_end(c, buf)).empty());
    CHECK(app.calls == 2);
    c.close();
    co_await server.drain(std::chrono::seconds(5));
    CHECK(server.connections() == 0);
  });
}

TEST_CASE("drain finishes a request in flight with Connection: close, and closes idle ones") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    test_app app(io);
    http_server server(io, test_limits(), app.handler());
    auto port = server.listen("127.0.0.1", 0);
    auto idle = co_await connect(io, port);
    std::string ibuf;
    co_await send(idle, "GET /warm HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_FALSE((co_await read_response(idle, ibuf)).close());
    auto busy = co_await connect(io, port);
    co_await send(busy,
                  "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    co_await app.started.wait();

    event drained(io);
    asio::co_spawn(io, server.drain(std::chrono::seconds(10)),
                   [&](std::exception_ptr) { drained.notify(); });
    // The idle connection closes at once, with nothing sent.
    CHECK((co_await read_to_end(idle, ibuf)).empty());
    // No new connection is accepted.
    tcp::socket late(io);
    auto [refused] =
        co_await late.async_connect({asio::ip::make_address("127.0.0.1"), port}, nothrow);
    CHECK(refused);
    CHECK_FALSE(drained.is_set());

    app.release.notify();
    std::string buf;
    auto r = co_await read_response(busy, buf);
    CHECK(r.status == 200);
    CHECK(r.body == "GET /slow ");
    CHECK(r.close());
    CHECK((co_await read_to_end(busy, buf)).empty());  // /next is not started
    busy.close();
    co_await drained.wait();
    CHECK(app.calls == 2);
    CHECK(server.connections() == 0);
  });
}

TEST_CASE("drain serves a request already sent on an idle connection") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    test_app app(io);
    http_server server(io, test_limits(), app.handler());
    auto port = server.listen("127.0.0.1", 0);
    auto c = co_await connect(io, port);
    std::string buf;
    co_await send(c, "GET /warm HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_FALSE((co_await read_response(c, buf)).close());
    // Written synchronously: the server has not run since, so its session
    // is idle (reading) when the drain begins, with the request in the socket.
    std::string_view next = "GET /sent HTTP/1.1\r\nHost: x\r\n\r\n";
    asio::write(c, asio::buffer(next.data(), next.size()));
    event drained(io);
    asio::co_spawn(io, server.drain(std::chrono::seconds(10)),
                   [&](std::exception_ptr) { drained.notify(); });
    auto r = co_await read_response(c, buf);
    CHECK((r.status == 200 && r.body == "GET /sent " && r.close()));
    CHECK((co_await read_to_end(c, buf)).empty());
    c.close();
    co_await drained.wait();
    CHECK(server.connections() == 0);
  });
}

TEST_CASE("drain closes what is left when its bound passes, cancels its handlers and awaits them") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    test_app app(io);
    http_server server(io, test_limits(), app.handler());
    auto port = server.listen("127.0.0.1", 0);
    auto c = co_await connect(io, port);
    co_await send(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    co_await app.started.wait();
    auto begun = std::chrono::steady_clock::now();
    co_await server.drain(std::chrono::milliseconds(50));
    CHECK(std::chrono::steady_clock::now() - begun >= std::chrono::milliseconds(50));
    CHECK(app.ended == 1);  // never released: cancelled, and over before drain returned
    CHECK(server.connections() == 0);
    CHECK((co_await read_to_end(c)).empty());  // closed without a response
    CHECK(app.calls == 1);
  });
}

TEST_CASE("stop() cancels the handlers still running, and a destroyed server's sessions end") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    test_app app(io);
    auto server = std::make_unique<http_server>(io, test_limits(), app.handler());
    auto port = server->listen("127.0.0.1", 0);
    auto a = co_await connect(io, port);
    co_await send(a, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    co_await app.started.wait();
    server->stop();
    co_await tern::test::until([&] { return app.ended == 1; });
    CHECK(app.ended == 1);  // never released: the stop cancelled it
    CHECK((co_await read_to_end(a)).empty());

    // Destroyed with a handler running: the session ends (its handler
    // cancelled) and touches nothing freed.
    app.started = event(io);
    server = std::make_unique<http_server>(io, test_limits(), app.handler());
    port = server->listen("127.0.0.1", 0);
    auto b = co_await connect(io, port);
    co_await send(b, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    co_await app.started.wait();
    server.reset();
    co_await tern::test::until([&] { return app.ended == 2; });
    CHECK(app.ended == 2);
    CHECK((co_await read_to_end(b)).empty());
  });
}

TEST_CASE("a client that does not read its responses is cut off after read_timeout") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    http_limits limits;
    limits.read_timeout = std::chrono::milliseconds(300);
    http_server server(io, limits, [](http_request&) -> asio::awaitable<http_response> {
      http_response r;
      r.body.assign(64 * 1024, 'x');
      co_return r;
    });
    auto port = server.listen("127.0.0.1", 0);
    auto c = co_await connect(io, port);
    std::string many;
    for (int i = 0; i < 300; ++i) many += "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
    co_await send(c, many);  // 19 MiB of responses asked for; none read
    auto start = std::chrono::steady_clock::now();
    co_await tern::test::until([&] { return server.connections() == 0; });
    CHECK(server.connections() == 0);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(3));
  });
}

TEST_CASE("at max_connections a new connection takes the place of the idle one held longest") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    test_app app(io);
    auto limits = test_limits();
    limits.max_connections = 3;
    http_server server(io, limits, app.handler());
    auto port = server.listen("127.0.0.1", 0);
    std::string buf;
    // Between requests: served once, then idle.
    auto kept = co_await connect(io, port);
    co_await send(kept, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK((co_await read_response(kept, buf)).status == 200);
    // Connected, never a byte: reclaimed first, though it came later.
    auto silent = co_await connect(io, port);
    // Busy: its handler is working.
    auto busy = co_await connect(io, port);
    co_await send(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    co_await app.started.wait();
    co_await tern::test::until([&] { return server.connections() == 3; });

    auto second = co_await connect(io, port);
    CHECK((co_await read_to_end(silent)).empty());  // closed without a word
    co_await send(second, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK((co_await read_response(second, buf)).body == "GET /2 ");
    // The next one: `kept` is now the idle connection held longest.
    auto third = co_await connect(io, port);
    CHECK((co_await read_to_end(kept)).empty());
    co_await send(third, "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK((co_await read_response(third, buf)).body == "GET /3 ");
    CHECK(server.reclaimed() == 2);

    // Nothing idle (every connection's handler is working): a new one is
    // closed at once, and the others are served.
    co_await send(second, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    co_await send(third, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    co_await tern::test::until([&] { return app.calls == 6; });
    auto refused = co_await connect(io, port);
    CHECK((co_await read_to_end(refused)).empty());
    CHECK(server.reclaimed() == 2);
    app.release.notify();
    for (auto* c : {&busy, &second, &third}) {
      CHECK((co_await read_response(*c, buf)).body == "GET /slow ");
    }
  });
}

TEST_CASE("at max_connections a connection whose request has come is never the one reclaimed") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    test_app app(io);
    auto limits = test_limits();
    limits.max_connections = 1;
    http_server server(io, limits, app.handler());
    auto port = server.listen("127.0.0.1", 0);
    tcp::endpoint at(asio::ip::make_address("127.0.0.1"), port);
    std::string buf;
    auto kept = co_await connect(io, port);
    for (int round = 0; round < 20; ++round) {
      co_await send(kept, "GET /k HTTP/1.1\r\nHost: x\r\n\r\n");
      CHECK((co_await read_response(kept, buf)).body == "GET /k ");
      co_await tern::test::until([&] { return server.connections() == 1; });
      // Idle between requests, the only connection. Before the server runs
      // again (blocking calls on its thread), a new connection arrives and
      // then the kept one's next request: the server learns of both at
      // once, the new one first, while the request is there.
      tcp::socket late(io);
      late.connect(at);
      asio::write(kept, asio::buffer("GET /again HTTP/1.1\r\nHost: x\r\n\r\n"sv));
      CHECK((co_await read_response(kept, buf)).body == "GET /again ");
      CHECK((co_await read_to_end(late)).empty());  // refused: nothing was idle
    }
    CHECK(server.reclaimed() == 0);
  });
}

TEST_CASE("a pipelined request waiting behind a slow handler costs no CPU meanwhile") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    test_app app(io);
    http_server server(io, test_limits(), app.handler());
    auto port = server.listen("127.0.0.1", 0);
    auto c = co_await connect(io, port);
    co_await send(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    co_await app.started.wait();
    // The next request comes while the first is being handled: it waits in
    // the socket, not in the server's buffer.
    co_await send(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    // The window observed: 300 ms of the handler working. The server's
    // watch for the client leaving must not wake over and over for the
    // request that waits in the socket.
    auto cpu = [] {
      rusage u{};
      ::getrusage(RUSAGE_SELF, &u);
      return std::chrono::seconds(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
             std::chrono::microseconds(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
    };
    auto before = cpu();
    co_await tern::test::sleep_for(std::chrono::milliseconds(300));
    auto used = std::chrono::duration_cast<std::chrono::milliseconds>(cpu() - before);
    CHECK_MESSAGE(used < std::chrono::milliseconds(100), used.count(), " ms of CPU");
    app.release.notify();
    std::string buf;
    CHECK((co_await read_response(c, buf)).body == "GET /slow ");
    CHECK((co_await read_response(c, buf)).body == "GET /next ");
  });
}

TEST_CASE("a client that leaves while a request whose end came late is handled is noticed") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    test_app app(io);
    http_server server(io, test_limits(), app.handler());
    auto port = server.listen("127.0.0.1", 0);
    auto c = co_await connect(io, port);
    // One request whole and the next one's start in one write: the server
    // answers the first, then reads on for the rest of the second (the
    // wait begun for the first handler sees those bytes too).
    co_await send(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /slow HTTP/1.1\r\n");
    std::string buf;
    CHECK((co_await read_response(c, buf)).body == "GET /a ");
    co_await send(c, "Host: x\r\n\r\n");
    co_await app.started.wait();
    c.close();  // gone while /slow is being handled
    co_await tern::test::until([&] { return app.ended == 2; });
    CHECK(app.ended == 2);  // /slow never released: cancelled when its client left
  });
}

TEST_CASE("servers on one port (SO_REUSEPORT) share the connections and one max_connections") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    test_app app(io);
    auto limits = test_limits();
    limits.max_connections = 24;
    http_server first(io, limits, app.handler());
    http_server second(io, limits, app.handler());
    auto open = std::make_shared<std::atomic<std::size_t>>(0);
    first.share_connection_count(open);
    second.share_connection_count(open);
    auto port = first.listen("127.0.0.1", 0, true);
    CHECK(second.listen("127.0.0.1", port, true) == port);
    // A plain bind of that port is still refused: it is taken.
    http_server other(io, limits, app.handler());
    CHECK_THROWS_AS(other.listen("127.0.0.1", port), std::system_error);

    // The kernel spreads connections by a hash of their ports: of 24, each
    // server gets some (all on one: a chance of 2^-23).
    std::vector<tcp::socket> held;
    std::string buf;
    for (int i = 0; i < 24; ++i) {
      held.push_back(co_await connect(io, port));
      co_await send(held.back(), "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
      CHECK((co_await read_response(held.back(), buf)).status == 200);
    }
    CHECK(first.accepted() > 0);
    CHECK(second.accepted() > 0);
    CHECK(first.accepted() + second.accepted() == 24);
    CHECK(first.connections() + second.connections() == 24);
    // The limit is the two servers' together, whichever one a new
    // connection reaches: each of these takes the place of an idle one
    // there, and the count stays at the limit.
    for (int i = 0; i < 4; ++i) {
      auto d = co_await connect(io, port);
      co_await send(d, "GET /y HTTP/1.1\r\nHost: x\r\n\r\n");
      CHECK((co_await read_response(d, buf)).body == "GET /y ");
      held.push_back(std::move(d));
    }
    CHECK(first.reclaimed() + second.reclaimed() == 4);
    CHECK(open->load() == 24);
    co_await tern::test::until([&] { return first.connections() + second.connections() == 24; });
    CHECK(first.connections() + second.connections() == 24);
  });
}
