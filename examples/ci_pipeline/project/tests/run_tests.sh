#!/bin/sh
# The project's tests: plain sh. A large corpus is made once and kept in $TEST_CACHE
# (a cache volume in the CI pipeline), so later runs reuse it.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
wordfreq="$here/bin/wordfreq"
passed=0
failed=0

check() { # name, expected, actual
    if [ "$2" = "$3" ]; then
        passed=$((passed + 1))
        echo "ok - $1"
    else
        failed=$((failed + 1))
        echo "not ok - $1: expected '$2', got '$3'" >&2
    fi
}

check "counts and orders words" "2 the
1 cat" "$(printf 'The cat, the!' | "$wordfreq" -n 2)"
check "ties are alphabetical" "1 a
1 b" "$(printf 'b a' | "$wordfreq")"
check "empty input" "" "$(printf '' | "$wordfreq")"
"$wordfreq" -n x </dev/null 2>/dev/null
check "refuses a bad -n" "2" "$?"

cache=${TEST_CACHE:-${TMPDIR:-/tmp}}
if [ -s "$cache/corpus.txt" ]; then
    echo "corpus: reused from the cache"
else
    i=0
    while [ $i -lt 2000 ]; do
        echo "alpha beta beta gamma gamma gamma"
        i=$((i + 1))
    done > "$cache/corpus.txt.tmp" && mv "$cache/corpus.txt.tmp" "$cache/corpus.txt"
    echo "corpus: generated"
fi
check "a large corpus" "6000 gamma" "$("$wordfreq" -n 1 "$cache/corpus.txt")"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
