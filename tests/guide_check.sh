#!/usr/bin/env bash
# Every ```cpp block of docs/guide.md whose first line is `// examples/F`
# must equal the file examples/F, which the build compiles.
set -euo pipefail
root=$1
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
