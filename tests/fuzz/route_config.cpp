// The route-config parser: any text is a config or a config_error naming
// what is wrong, never a crash.
#include "config/config.hpp"

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto cfg = tern::gateway::parse_config(text);
    (void)cfg.routes.size();
  } catch (const tern::gateway::config_error&) {
  }
  return 0;
}
