#!/usr/bin/env bash
# fuzz.sh: run every native Go fuzz target in the module, one after another,
# each for FUZZTIME (default 60s). `make fuzz` runs it.
#
# `go test -fuzz` takes one target of one package at a time, so the targets
# are listed first with `go test -list '^Fuzz' ./...`: a FuzzXxx added to any
# package is run without touching this script. The first failure stops the
# run, naming the target and the crasher file Go wrote beside the package
# (testdata/fuzz/<Target>/<hash>); commit that file with the fix and it stays
# in the seed corpus, replayed by every plain `go test`.
#
# Knobs (environment): FUZZTIME (a duration like 30s or 5m, or Nx for N
# executions), GO (the go command).
set -euo pipefail

cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-60s}
GO=${GO:-go}

# -list prints a package's matching names, then its "ok <pkg> <time>" line;
# packages without tests print "?" lines, and a build failure fails this.
if ! listing=$("$GO" test -list '^Fuzz' ./...); then
	echo "fuzz.sh: listing the fuzz targets failed (go test -list above)" >&2
	exit 1
fi
targets=$(awk '
	/^Fuzz/ { names[n++] = $1; next }
	/^ok/   { for (i = 0; i < n; i++) print $2, names[i]; n = 0; next }
	        { n = 0 }
' <<<"$listing")
if [ -z "$targets" ]; then
	echo "fuzz.sh: no fuzz targets found" >&2
	exit 1
fi
echo "fuzz.sh: $(wc -l <<<"$targets") targets, $FUZZTIME each:"
awk '{ print "  " $0 }' <<<"$targets"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
while read -r pkg name; do
	echo "== $name ($pkg), $FUZZTIME"
	# stdin is the list being read: go test gets none of it.
	if "$GO" test -run='^$' -fuzz="^$name\$" -fuzztime="$FUZZTIME" "$pkg" </dev/null 2>&1 | tee "$log"; then
		continue
	fi
	dir=$("$GO" list -f '{{.Dir}}' "$pkg")
	# go test says "Failing input written to testdata/fuzz/<name>/<hash>",
	# relative to the package directory.
	crasher=$(sed -n 's/^.*Failing input written to \(.*\)$/\1/p' "$log" | tail -n 1)
	echo "fuzz.sh: $name in $pkg FAILED" >&2
	if [ -n "$crasher" ]; then
		echo "fuzz.sh: crasher: $dir/$crasher" >&2
		echo "fuzz.sh: replay: $GO test -run='^$name/$(basename "$crasher")\$' $pkg" >&2
	else
		echo "fuzz.sh: no crasher was written: a seed (f.Add or $dir/testdata/fuzz/$name/) or the build failed; see above" >&2
	fi
	exit 1
done <<<"$targets"
echo "fuzz.sh: every target ran $FUZZTIME without a failure"
