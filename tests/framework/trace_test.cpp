#include "tern/trace.hpp"

#include "tern/context.hpp"
#include "tern/detail/handler.hpp"

#include <doctest/doctest.h>
#include <msgpack.hpp>

#include <map>
#include <set>
#include <string>

using namespace tern;

namespace {

std::map<std::string, std::string> unpack_map(const std::string& packed) {
  auto oh = msgpack::unpack(packed.data(), packed.size());
  return oh.get().as<std::map<std::string, std::string>>();
}

message_context context_with(const std::string& peer, const std::string& pattern,
                             const std::string& packed_meta) {
  return {peer, pattern, msgpack::unpack(packed_meta.data(), packed_meta.size())};
}

}  // namespace

TEST_CASE("request ids: 1-128 characters of [A-Za-z0-9._:-]") {
  CHECK(valid_request_id("a"));
  CHECK(valid_request_id("Req-1.2_3:x"));
  CHECK(valid_request_id(std::string(128, 'x')));
  CHECK_FALSE(valid_request_id(""));
  CHECK_FALSE(valid_request_id(std::string(129, 'x')));
  CHECK_FALSE(valid_request_id("has space"));
  CHECK_FALSE(valid_request_id("semi;colon"));
  CHECK_FALSE(valid_request_id("new\nline"));
  std::set<std::string> ids;
  for (int i = 0; i < 100; ++i) {
    auto id = new_request_id();
    CHECK(id.size() == 32);
    CHECK(id.find_first_not_of("0123456789abcdef") == std::string::npos);
    ids.insert(id);
  }
  CHECK(ids.size() == 100);
}

TEST_CASE("traceparent: valid ones parse, anything else starts a new trace") {
  trace_parent t;
  REQUIRE(parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", t));
  CHECK(t.trace() == "0af7651916cd43dd8448eb211c80319c");
  CHECK(t.parent() == "b7ad6b7169203331");
  CHECK(t.flags == 1);
  std::string round;
  append_traceparent(t, round);
  CHECK(round == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  // A later version is read as 00, with its extra fields ignored.
  CHECK(parse_traceparent("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what", t));
  const char* bad[] = {
      "",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",     // short
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",  // 00 has no more fields
      "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",    // version ff is invalid
      "00-00000000000000000000000000000000-b7ad6b7169203331-01",    // zero trace id
      "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",    // zero parent id
      "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",    // upper case
      "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
  };
  for (const char* b : bad) CHECK_MESSAGE(!parse_traceparent(b, t), b);
}

TEST_CASE("a child span keeps the trace and flags and has a new parent id") {
  auto t = new_trace();
  CHECK(t.trace() != std::string(32, '0'));
  auto c = child_of(t);
  CHECK(c.trace() == t.trace());
  CHECK(c.flags == t.flags);
  CHECK(c.parent() != t.parent());
  CHECK(new_trace().trace() != t.trace());
}

TEST_CASE("message_context reads the request id and trace from meta, and forwards them") {
  trace_parent t;
  REQUIRE(parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", t));
  std::string meta;
  append_trace_meta(meta, "rid-7", &t, "vendor=x");
  CHECK(unpack_map(meta) ==
        std::map<std::string, std::string>{
            {"request_id", "rid-7"},
            {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
            {"tracestate", "vendor=x"}});
  std::string peer = "p", pattern = "q";
  auto ctx = context_with(peer, pattern, meta);
  CHECK(ctx.request_id() == "rid-7");
  CHECK(ctx.trace_id() == "0af7651916cd43dd8448eb211c80319c");
  CHECK(ctx.tracestate() == "vendor=x");
  auto fwd = unpack_map(ctx.forward_meta());
  CHECK(fwd["request_id"] == "rid-7");
  CHECK(fwd["tracestate"] == "vendor=x");
  trace_parent child;
  REQUIRE(parse_traceparent(fwd["traceparent"], child));
  CHECK(child.trace() == t.trace());
  CHECK(child.parent() != t.parent());

  // Nothing usable in meta: no id, no trace; forwarding starts a trace.
  std::string junk;
  append_trace_meta(junk, "bad id", nullptr, {});
  auto none = context_with(peer, pattern, junk);
  CHECK(none.request_id().empty());
  CHECK(none.trace_id().empty());
  auto started = unpack_map(none.forward_meta());
  CHECK(started.count("request_id") == 0);
  CHECK(parse_traceparent(started["traceparent"], child));
}

TEST_CASE("a coroutine handler's copy of meta outlives the packet it came in") {
  // Meta as the gateway sends it, with an identity: nested maps, arrays,
  // strings, binary and numbers.
  msgpack::sbuffer packed;
  msgpack::packer<msgpack::sbuffer> pk(packed);
  pk.pack_map(4);
  pk.pack(std::string("request_id"));
  pk.pack(std::string("rid-9"));
  pk.pack(std::string("deadline_ms"));
  pk.pack(1500);
  pk.pack(std::string("identity"));
  pk.pack_map(3);
  pk.pack(std::string("sub"));
  pk.pack(std::string("u-1"));
  pk.pack(std::string("roles"));
  pk.pack(std::vector<std::string>{"admin", "reader"});
  pk.pack(std::string("claims"));
  pk.pack_map(1);
  pk.pack(std::string("email"));
  pk.pack(std::string("a@example.com"));
  pk.pack(std::string("blob"));
  pk.pack_bin(3);
  pk.pack_bin_body("\x01\x02\x03", 3);

  std::string buffer(packed.data(), packed.size());
  msgpack::object_handle copy;
  {
    auto original = msgpack::unpack(buffer.data(), buffer.size());
    copy = detail::clone_meta(original.get());
    CHECK(copy.get() == original.get());
  }  // the original's zone is gone; the receive buffer is overwritten
  std::fill(buffer.begin(), buffer.end(), '\xff');
  std::string peer = "p", pattern = "q";
  message_context ctx(peer, pattern, std::move(copy));
  CHECK(ctx.request_id() == "rid-9");
  CHECK(ctx.authenticated());
  CHECK(ctx.subject() == "u-1");
  CHECK(ctx.has_role("reader"));
  const auto* email = ctx.claim("email");
  REQUIRE(email != nullptr);
  CHECK(email->as<std::string>() == "a@example.com");
  auto moved = std::move(ctx);  // a context moved into a coroutine frame
  CHECK(moved.roles() == std::vector<std::string_view>{"admin", "reader"});

  // Nothing to point into: nil and a number are kept as they are.
  msgpack::object number(42);
  CHECK(detail::clone_meta(number).get() == number);
  CHECK(detail::clone_meta(msgpack::object()).get().is_nil());
}
