// A call's data from an HTTP request: path params, query string and JSON
// body, made into one msgpack value without building a JSON tree.
#pragma once

#include "config/config.hpp"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tern::gateway {

/// The deepest nesting a JSON body may have: what the wire takes in a
/// value (docs/protocol.md), so the gateway never sends what a service
/// would refuse.
inline constexpr int max_body_depth = 64;

/// The msgpack data for a call: its sources (path params, query string,
/// JSON body) merged in order as objects, a later source's key replacing
/// an earlier one's. Path and query values made only of digits (optional
/// leading `-`) that fit a 64-bit integer become integers; a repeated query
/// key keeps its last value. The body is parsed in one pass straight into
/// msgpack (nlohmann's SAX interface, iterative): nesting past
/// max_body_depth, a duplicate key in an object, a non-finite number and
/// text that is not UTF-8 (params, query) are refused before anything is
/// built. Throws rpc_error(400) naming what is wrong.
std::string build_call_data(const std::vector<data_source>& sources,
                            const std::vector<std::pair<std::string_view, std::string>>& params,
                            std::string_view query, std::string_view body);

}  // namespace tern::gateway
