// A cheap nesting check for JSON text, made before any parser that builds
// a tree (or recurses) sees the text.
#pragma once

#include <string_view>

namespace tern {

/// The deepest nesting of arrays and objects in `text` (`[[1]]` is 2, a
/// scalar 0), counting brackets outside strings; the scan stops as soon
/// as the depth passes `limit` and returns limit + 1. The text is not
/// validated: malformed text is for the parser to refuse.
int json_depth(std::string_view text, int limit) noexcept;

}  // namespace tern
