#!/usr/bin/env bash
# Run fuzz targets one after the other (the machine has 2 cores), each for SECONDS.
# Usage: fuzz/run.sh SECONDS TARGET...   Logs land in fuzz/artifacts/logs/ (git-ignored).
set -u
cd "$(dirname "$0")"
secs=$1
shift
mkdir -p artifacts/logs
[ -d corpus ] || python3 seed_corpus.py
for t in "$@"; do
    echo "== $t: $secs s, started $(date -u +%FT%TZ)"
    RUSTC_BOOTSTRAP=1 cargo fuzz run -s none "$t" -- \
        -max_total_time="$secs" -jobs=1 -workers=1 -dict="dicts/$t.dict" -print_final_stats=1
    echo "== $t: exit $?, ended $(date -u +%FT%TZ)"
    mv -f fuzz-0.log "artifacts/logs/$t.log" 2>/dev/null
done
