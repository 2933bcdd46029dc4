// tern::decode: request data (a msgpack value off the wire, within the
// transport's limits) into DTOs of every shape the decoder knows, with
// rules. Whatever the bytes, the answer is a value or an rpc_error 400.
#include "tern/dto.hpp"
#include "tern/transport/codec.hpp"
#include "tern/transport/packet.hpp"

#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace {

struct leaf {
  std::string city;
  std::optional<std::int8_t> floor;
  MSGPACK_DEFINE_MAP(city, floor);
  static auto rules() {
    return tern::rules(tern::unknown_fields::refuse,
                       tern::field(&leaf::city, tern::length(1, 8), tern::matches("[a-z]+")));
  }
};

struct tree {
  std::int64_t id = 0;
  std::uint16_t port = 0;
  double price = 0;
  float ratio = 0;
  bool flag = false;
  std::string name;
  std::vector<unsigned char> blob;
  std::vector<leaf> leaves;
  std::map<std::string, std::vector<std::int32_t>> scores;
  std::optional<leaf> extra;
  std::vector<std::vector<std::string>> grid;
  MSGPACK_DEFINE_MAP(id, port, price, ratio, flag, name, blob, leaves, scores, extra, grid);
  static auto rules() {
    return tern::rules(
        tern::field(&tree::id, tern::optional, tern::range(1, 1000)),
        tern::field(&tree::port, tern::optional),
        tern::field(&tree::price, tern::optional, tern::at_least(0)),
        tern::field(&tree::ratio, tern::optional), tern::field(&tree::flag, tern::optional),
        tern::field(&tree::name, tern::optional, tern::length(0, 20)),
        tern::field(&tree::blob, tern::optional),
        tern::field(&tree::leaves, tern::optional, tern::length(0, 50)),
        tern::field(&tree::scores, tern::optional), tern::field(&tree::grid, tern::optional));
  }
};

template <class T>
void attempt(const msgpack::object& o) {
  try {
    (void)tern::decode<T>(o);
  } catch (const tern::rpc_error& e) {
    if (e.status() != 400) std::abort();
    std::string_view what = e.what();
    if (what.empty() || what.size() > 4096) std::abort();  // messages stay short
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  try {
    msgpack::zone zone;
    auto o = tern::transport::decode_value(in, zone, true);
    attempt<tree>(o);
    attempt<leaf>(o);
    attempt<std::vector<std::int64_t>>(o);
    attempt<std::map<std::string, tree>>(o);
    attempt<std::optional<std::string>>(o);
  } catch (const tern::transport::protocol_violation&) {
  }
  return 0;
}
