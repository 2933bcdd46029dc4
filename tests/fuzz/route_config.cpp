// The route-config parser and the checks of the sections policies own:
// any text is a config or a config_error naming what is wrong, never a
// crash.
#include "config/config.hpp"
#include "pipeline/registry.hpp"

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto cfg = tern::gateway::parse_config(text);
    tern::gateway::check_sections(cfg);
  } catch (const tern::gateway::config_error&) {
  }
  return 0;
}
