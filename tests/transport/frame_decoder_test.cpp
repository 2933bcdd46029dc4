#include "tern/transport/frame_decoder.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace tern::transport;

namespace {
std::string frame(const std::string& body) {
  std::string f(4, '\0');
  write_frame_header(f.data(), static_cast<std::uint32_t>(body.size()));
  return f + body;
}
}  // namespace

TEST_CASE("a whole frame is complete, with its body length") {
  frame_decoder d;
  auto f = frame("hello");
  auto r = d.next(f.data(), f.size());
  CHECK(r.status == frame_status::complete);
  CHECK(r.length == 5);
  CHECK(r.total() == 9);
}

TEST_CASE("the header is big-endian") {
  char h[4];
  write_frame_header(h, 0x01020304);
  CHECK(h[0] == 1);
  CHECK(h[1] == 2);
  CHECK(h[2] == 3);
  CHECK(h[3] == 4);
}

TEST_CASE("a frame split at every byte boundary needs more until its last byte") {
  frame_decoder d;
  auto f = frame("split me anywhere");
  for (std::size_t cut = 0; cut < f.size(); ++cut) {
    auto r = d.next(f.data(), cut);
    CHECK_MESSAGE(r.status == frame_status::need_more, "cut at ", cut);
    if (cut >= 4) {
      CHECK(r.header == 4);
      CHECK(r.length == 17);
    } else {
      CHECK(r.header == 0);
    }
  }
  CHECK(d.next(f.data(), f.size()).status == frame_status::complete);
}

TEST_CASE("many frames in one buffer come out one after another") {
  frame_decoder d;
  std::string buf;
  for (int i = 0; i < 100; ++i) buf += frame(std::string(static_cast<std::size_t>(i), 'x'));
  buf += frame("tail").substr(0, 6);  // and half a frame
  std::size_t pos = 0;
  int seen = 0;
  for (;;) {
    auto r = d.next(buf.data() + pos, buf.size() - pos);
    if (r.status != frame_status::complete) {
      CHECK(r.status == frame_status::need_more);
      break;
    }
    CHECK(r.length == static_cast<std::uint32_t>(seen));
    pos += r.total();
    ++seen;
  }
  CHECK(seen == 100);
  CHECK(buf.size() - pos == 6);
}

TEST_CASE("an announced length over the limit is refused from the header alone") {
  frame_decoder d(1024);
  char h[4];
  write_frame_header(h, 1025);
  auto r = d.next(h, 4);
  CHECK(r.status == frame_status::too_large);
  CHECK(r.length == 1025);
  write_frame_header(h, 0xFFFFFFFF);
  CHECK(frame_decoder().next(h, 4).status == frame_status::too_large);
  write_frame_header(h, 1024);
  CHECK(d.next(h, 4).status == frame_status::need_more);
}

TEST_CASE("an empty body is a complete frame") {
  frame_decoder d;
  auto f = frame("");
  CHECK(d.next(f.data(), 4).status == frame_status::complete);
}
