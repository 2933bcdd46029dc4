// `gateway token`: a token signed with the configured secret, for the demo,
// tests and scripts.
#pragma once

namespace tern::gateway {

/// Runs `gateway token --sub S [--role R]... [--scope S]... [--ttl SECONDS]
/// [--config PATH]` (argv[1] is "token"): prints the token and returns 0,
/// or says what is wrong on stderr and returns 2 (usage) or 1 (config).
int token_command(int argc, char** argv);

}  // namespace tern::gateway
