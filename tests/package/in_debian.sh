#!/usr/bin/env bash
# Runs as root on a Debian 12 system (a fresh container: scripts/package-test)
# and proves tern's packages there, against the installed package alone:
#   1. apt installs tern-dev and tern-gateway (their Depends pull the rest);
#   2. the guide's "Start here" commands run verbatim (tern new, build, test,
#      run, tern call, the gateway, curl), and print what the guide says;
#   3. the guide's notes example, copied out of the source tree, builds with
#      find_package(tern) and with pkg-config, runs, answers tern-call and
#      its client;
#   4. every installed header compiles in one translation unit; the packaged
#      gateway config loads; the systemd unit passes systemd-analyze verify.
#   tests/package/in_debian.sh WORK     (WORK holds debs/, guide.sh, examples/)
set -euo pipefail
work=$1
say() { echo "package-test[debian]: $*"; }
fail() {
  echo "package-test[debian]: FAILED: $*" >&2
  exit 1
}
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq

# 1 and 2: the guide's commands, in an empty directory holding the packages.
start=$(mktemp -d /tmp/tern-start.XXXXXX)
cp "$work"/debs/*.deb "$start/"
{
  echo "trap 'kill \$(jobs -p) 2>/dev/null || true' EXIT"
  cat "$work/guide.sh"
} >"$start/.guide-run.sh"
say "running the guide's commands:"
sed 's/^/  | /' "$work/guide.sh"
(cd "$start" && bash -euo pipefail -x .guide-run.sh) >"$start/.guide.log" 2>&1 ||
  { tail -n 40 "$start/.guide.log" >&2; fail "the guide's commands failed (above)"; }
grep -q "100% tests passed" "$start/.guide.log" || fail "the skeleton's test did not pass"
hellos=$(grep -o '{"message":"Hello, Ada!"}' "$start/.guide.log" | wc -l)
[ "$hellos" -eq 2 ] ||
  { tail -n 40 "$start/.guide.log" >&2; fail "expected tern call and curl to print the greeting, saw it $hellos time(s)"; }
say "the guide's commands: the skeleton built, its test passed, tern call and curl printed the greeting"
[ "$(tern version)" = "tern 0.2.0" ] || fail "tern version says '$(tern version)'"
[ "$(pkg-config --modversion tern)" = "0.2.0" ] || fail "pkg-config --modversion tern"

# 3: the notes example, outside any tern source tree.
notes=$(mktemp -d /tmp/tern-notes.XXXXXX)
cp "$work"/examples/CMakeLists.txt "$work"/examples/notes_*.?pp "$notes/"
cmake -S "$notes" -B "$notes/build" >/dev/null
cmake --build "$notes/build" >/dev/null || fail "the notes example did not build with find_package(tern)"
g++ -O1 "$notes/notes_client.cpp" $(pkg-config --cflags --libs tern) -o "$notes/client_pc" ||
  fail "the notes client did not build with pkg-config"
"$notes/build/notes_service" >"$notes/service.log" 2>&1 &
pids+=($!)
out=$(tern-call --wait-ms 10000 --port 3101 '{"cmd":"add_note"}' '{"text":"from tern-call"}')
[ "$out" = '{"id":1,"text":"from tern-call"}' ] || fail "add_note answered '$out'"
if err=$(tern-call --port 3101 '{"cmd":"add_note"}' '{"text":""}' 2>&1); then
  fail "an empty note was accepted: $err"
fi
[ "$err" = "tern_call: remote 400: text: must not be empty" ] || fail "an empty note: '$err'"
"$notes/build/notes_client" >"$notes/client.log" || fail "notes_client failed"
grep -q "^added note 2$" "$notes/client.log" && grep -q "^error 404: note 999 not found$" "$notes/client.log" ||
  { cat "$notes/client.log" >&2; fail "notes_client printed something else"; }
"$notes/client_pc" | grep -q "^added note 3$" || fail "the pkg-config build of notes_client"
say "the notes example: built with find_package and pkg-config, answered tern-call and its client"

# 4: headers, the packaged config, the unit.
hdrs=$(mktemp -d /tmp/tern-hdrs.XXXXXX)
(cd /usr/include && find tern -name '*.hpp' | sort | sed 's/.*/#include <&>/') >"$hdrs/all.cpp"
g++ -fsyntax-only $(pkg-config --cflags tern) "$hdrs/all.cpp" || fail "the installed headers do not compile together"
say "$(wc -l <"$hdrs/all.cpp") installed headers compile together"
TERN_JWT_SECRET=package-test-secret-of-at-least-32-bytes GATEWAY_CONFIG=/etc/tern/gateway.json tern-gateway --port 3991 \
  --admin-port 9991 >"$hdrs/gateway.log" 2>&1 &
pids+=($!)
curl -sS --retry 10 --retry-connrefused --retry-max-time 20 -o /dev/null -w '%{http_code}' http://127.0.0.1:9991/health/live |
  grep -q 200 || { cat "$hdrs/gateway.log" >&2; fail "tern-gateway did not start on /etc/tern/gateway.json"; }
say "tern-gateway starts on the packaged /etc/tern/gateway.json"
apt-get install -y -qq --no-install-recommends systemd >/dev/null
systemd-analyze verify /lib/systemd/system/tern-gateway.service || fail "systemd-analyze verify tern-gateway.service"
say "the systemd unit passes systemd-analyze verify"
say "PASSED"
