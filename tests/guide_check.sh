#!/usr/bin/env bash
# Every ```cpp block of docs/guide.md whose first line is `// examples/F`
# must equal the file examples/F, which the build compiles; and the count
# of C++ lines the guide states for a `tern new` service must be the
# skeleton's (tern is the build's tools/tern).
#   tests/guide_check.sh SOURCE_DIR TERN
set -euo pipefail
root=$1
tern=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk -v dir="$tmp" '
  /^```cpp$/ { inblock = 1; first = 1; out = ""; next }
  /^```$/ && inblock { inblock = 0; if (out != "") close(out); next }
  inblock && first { first = 0; if ($0 ~ /^\/\/ examples\//) { split($2, p, "/"); sub(/:.*/, "", p[2]); out = dir "/" p[2] } }
  inblock && out != "" { print > out }
' "$root/docs/guide.md"
count=0
for f in "$tmp"/*; do
  [ -e "$f" ] || break
  name=$(basename "$f")
  if ! diff -u "$root/examples/$name" "$f"; then
    echo "docs/guide.md's copy of examples/$name differs from the file"
    exit 1
  fi
  count=$((count + 1))
done
[ "$count" -ge 3 ] || { echo "expected the guide to show the three example files, found $count"; exit 1; }
echo "guide examples match: $count files"

# The skeleton's C++, without blank lines and comments.
TERN_TEMPLATES="$root/tools/templates" "$tern" new service orders --dir "$tmp/skeleton" >/dev/null
lines=$(cat "$tmp"/skeleton/src/*.hpp "$tmp"/skeleton/src/*.cpp | grep -cvE '^\s*$|^\s*//')
stated=$(grep -oE '\*\*[0-9]+ lines of C\+\+' "$root/docs/guide.md" | grep -oE '[0-9]+')
if [ "$stated" != "$lines" ]; then
  echo "docs/guide.md says a tern new service is $stated lines of C++; the skeleton has $lines"
  exit 1
fi
[ "$lines" -le 40 ] || { echo "a tern new service is $lines lines of C++, over the goal of 40"; exit 1; }
echo "a tern new service: $lines lines of C++, as the guide says"

# Names that are not plain identifiers never reach the templates (they go into sed).
for bad in 'a;e touch x;#' "$(printf 'ab\ncd')" 'Orders' 'linux' '9lives' ''; do
  if TERN_TEMPLATES="$root/tools/templates" "$tern" new service "$bad" --dir "$tmp/bad" 2>/dev/null; then
    echo "tern new accepted the service name '$bad'"
    exit 1
  fi
  [ ! -e "$tmp/bad" ] || { echo "tern new wrote files for the name '$bad'"; exit 1; }
done
echo "tern new refuses names that are not lower-case identifiers"
