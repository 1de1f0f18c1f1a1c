#!/usr/bin/env bash
# A newcomer's first minutes: clone the committed HEAD into an empty temporary folder with no shared/ beside it,
# then run the README's two set-up commands there (the main sample, then the tests). Both must exit 0; tests that
# need the outside data in ../shared skip, naming the folder.
#   tools/fresh-clone/check.sh            # from anywhere inside the repository
#   KEEP=1 tools/fresh-clone/check.sh     # keep the clone for a look afterwards
set -euo pipefail
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
readme="$repo/README.md"
sample_cmd=$(grep -m1 -oE '^dotnet run --project samples/[^ ]+ -c Release$' "$readme") \
  || { echo "fresh-clone: README.md names no 'dotnet run --project samples/... -c Release' line" >&2; exit 2; }
test_cmd=$(grep -m1 -oE '^dotnet test [^ ]+\.sln$' "$readme") \
  || { echo "fresh-clone: README.md names no 'dotnet test <solution>' line" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/peftdsl-fresh-XXXXXX")
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "fresh-clone: kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
git clone -q "$repo" "$work/clone"
cd "$work/clone"
for dir in . ..; do
  [ -e "$dir/shared" ] && { echo "fresh-clone: $work/clone/$dir/shared exists; the check needs a clone with none" >&2; exit 2; }
done
unset PEFT_SHARED_DIR
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

echo "fresh-clone: $(git log -1 --format='%h %s' | cut -c1-100) in $work/clone"
echo "fresh-clone: \$ $sample_cmd"
bash -c "$sample_cmd" > "$work/sample.log" 2>&1 || { tail -40 "$work/sample.log"; echo "fresh-clone: the sample failed" >&2; exit 1; }
tail -3 "$work/sample.log"
echo "fresh-clone: \$ $test_cmd"
bash -c "$test_cmd --logger trx --results-directory '$work/results'" > "$work/test.log" 2>&1 \
  || { grep -E '^\s*Failed |error' "$work/test.log" | head -40; echo "fresh-clone: the tests failed" >&2; exit 1; }
grep -E '^(Passed|Failed|Skipped)!' "$work/test.log" | sed 's/^/  /'
echo "fresh-clone: tests skipped for want of outside data, by folder:"
# (none, where every test found its data: grep's "no match" must not end the script under pipefail)
cat "$work"/results/*.trx | { grep -oE '<Message>needs the outside data shared/[^ ]+' || true; } | cut -d' ' -f5 | sort | uniq -c | sed 's/^/  /'
echo "fresh-clone: both commands exit 0"
