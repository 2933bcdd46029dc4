// The msgpack -> JSON writer, differentially: whatever it accepts must be
// one value msgpack-c reads the same way, its output must parse as strict
// JSON, and where nlohmann can convert the same bytes itself (string keys,
// no binaries, valid UTF-8) both must give the same JSON value.
#include <tern/json.hpp>

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string out = "x";  // appended to: what was there stays
  try {
    tern::append_json(in, out);
  } catch (const std::invalid_argument&) {
    if (out != "x") std::abort();  // a refusal leaves the output as it was
    return 0;
  }
  if (out.empty() || out[0] != 'x') std::abort();
  std::string_view json(out);
  json.remove_prefix(1);
  // msgpack-c agrees that this is exactly one value.
  std::size_t off = 0;
  try {
    auto oh = msgpack::unpack(in.data(), in.size(), off);
  } catch (const std::exception&) {
    std::abort();
  }
  if (off != in.size()) std::abort();
  // Always valid JSON (UTF-8 included).
  auto ours = nlohmann::json::parse(json, nullptr, false);
  if (ours.is_discarded()) std::abort();
  // The same value as nlohmann's own reading, where it has one.
  nlohmann::json theirs;
  try {
    theirs = nlohmann::json::from_msgpack(in);
    (void)theirs.dump();  // throws for strings that are not UTF-8
  } catch (const std::exception&) {
    return 0;
  }
  // nlohmann keeps msgpack's bin and ext as binary values (ours become strings).
  std::vector<const nlohmann::json*> todo{&theirs};
  while (!todo.empty()) {
    const auto* j = todo.back();
    todo.pop_back();
    if (j->is_binary()) return 0;
    // Non-finite floats: ours are null (JSON has no NaN); nlohmann keeps them.
    if (j->is_number_float() && !std::isfinite(j->get<double>())) return 0;
    if (j->is_structured()) {
      for (const auto& child : *j) todo.push_back(&child);
    }
  }
  if (ours != theirs) std::abort();
  return 0;
}
