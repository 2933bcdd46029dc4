// Log lines that hostile peers cannot amplify: client input clipped and
// escaped, repeated warnings rate-limited.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

namespace tern::transport {

/// How much of a client's bytes a log line shows.
inline constexpr std::size_t log_clip_bytes = 200;

/// `s` for a log line: at most `max` bytes of it, printable ASCII as is and
/// every other byte as \xNN (so input cannot forge lines or break a
/// terminal), with "... (N bytes)" when cut.
std::string clip(std::string_view s, std::size_t max = log_clip_bytes);

/// Lets one line through per interval and counts the ones held back.
/// Thread safety: none; one per thread or per single-threaded owner.
class log_limiter {
 public:
  explicit log_limiter(std::chrono::milliseconds interval = std::chrono::seconds(1)) noexcept
      : interval_(interval) {}

  /// Whether a line may be logged now. When it may, `suppressed` is the
  /// number of lines held back since the last one (then reset).
  bool allow(std::size_t& suppressed) noexcept {
    auto now = std::chrono::steady_clock::now();
    if (logged_ && now - last_ < interval_) {
      ++held_;
      return false;
    }
    logged_ = true;
    last_ = now;
    suppressed = held_;
    held_ = 0;
    return true;
  }

 private:
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point last_{};
  bool logged_ = false;
  std::size_t held_ = 0;
};

/// " (and N more since)" for a limited line, or nothing when N is 0.
std::string held_back(std::size_t suppressed);

}  // namespace tern::transport
