#!/usr/bin/env bash
# Benchmark: raw pg_dump/pg_restore vs our backup.sh/restore.sh, against a
# local PostgreSQL and a local moto S3 server. Two kinds of data:
#   random  - a table of 1 kB random bytea rows (pgcrypto's gen_random_bytes,
#             md5() fallback): incompressible, so the -Fc dump is about as big
#             as the database and the whole stream really goes through S3.
#   pgbench - pgbench -i: its blank `filler` columns compress ~55:1, so the
#             dump is tiny and fixed costs dominate.
# Plus the fixed overhead: backup.sh/restore.sh on an empty database.
#
#   npm run bench:backup                          # defaults below: 256 MB random + ~1 GB pgbench
#   BENCH_MODES=random BENCH_RANDOM_MB="256 2048" npm run bench:backup
#   BENCH_MODES=pgbench BENCH_SCALES="15 70" npm run bench:backup
#   BENCH_BASELINE_REF=<git ref> ...              # also time that ref's backup.sh on the empty DB
# Environment:
#   BENCH_MODES      "random pgbench"   which data sets
#   BENCH_RANDOM_MB  "256"              target sizes of the random database, MB
#   BENCH_CODECS     "1"                empty: skip the per-codec compression table
#   BENCH_SCALES     "70"               pgbench scales (70 = ~1 GB, 300 = ~4.5 GB)
#   BENCH_PG_BINDIR  pg_config --bindir PostgreSQL (server and clients) to measure with;
#                    bench/debian-postgres.sh provides the deployed 17 here
#
# Prints a markdown table. Peak RSS = max over 100 ms samples of the summed
# RSS of the measured command's whole process tree (ps), i.e. the client
# side: pg_dump/pg_restore, psql, tee, sha256sum, wc, aws. The PostgreSQL
# server and moto (which keeps objects in memory, so it grows with the data)
# are separate process trees and are NOT counted.
# Everything (server, moto, data, dumps) lives in one temp dir that is removed
# on exit, whatever happens.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
read -r -a MODES <<<"${BENCH_MODES:-random pgbench}"
read -r -a RANDOM_MB <<<"${BENCH_RANDOM_MB:-256}"
read -r -a SCALES <<<"${BENCH_SCALES:-70}"
PG_BIN=${BENCH_PG_BINDIR:-$(pg_config --bindir)}
[[ -x "$PG_BIN/postgres" ]] || { echo "bench: no PostgreSQL in $PG_BIN" >&2; exit 2; }
# Every client (pg_dump, psql, pgbench, and those backup.sh and restore.sh run) from the same version.
export PATH="$PG_BIN:$PATH"
AS_PG=(); [[ $EUID -eq 0 ]] && AS_PG=(runuser -u postgres --)
SCRIPTS="$ROOT/components/backup/scripts"
T_BENCH=$EPOCHREALTIME

WORK=$(mktemp -d /tmp/backup-bench.XXXXXX)
[[ $EUID -eq 0 ]] && chown postgres "$WORK"
PG_STARTED=""; MOTO_PID=""; MEASURE_PID=""
cleanup() {
  [[ -n "$MEASURE_PID" ]] && kill -- -"$MEASURE_PID" 2>/dev/null
  [[ -n "$MOTO_PID" ]] && kill -- -"$MOTO_PID" 2>/dev/null && wait "$MOTO_PID" 2>/dev/null
  [[ -n "$PG_STARTED" ]] && "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    (: >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# AWS CLI shim: counts invocations (one line per call) and runs the real CLI.
REAL_AWS=$(command -v aws)
mkdir -p "$WORK/shim"
printf '#!/bin/bash\necho "$1 $2" >>"%s/aws-calls"\nexec %q "$@"\n' "$WORK" "$REAL_AWS" >"$WORK/shim/aws"
chmod 755 "$WORK/shim/aws"

# measure NAME CMD...: run CMD in its own process group; sets SECS, PEAK_KB, AWS_CALLS.
measure() {
  local name=$1; shift
  : >"$WORK/aws-calls"
  local t0=$EPOCHREALTIME peak=0 rss
  setsid env PATH="$WORK/shim:$PATH" "$@" >"$WORK/$name.log" 2>&1 &
  MEASURE_PID=$!
  while kill -0 "$MEASURE_PID" 2>/dev/null; do
    rss=$(ps -e -o pid=,ppid=,rss= | awk -v root="$MEASURE_PID" '
      { pp[$1] = $2; r[$1] = $3 }
      END { for (x in pp) { y = x; while (y != root && (y in pp) && y > 1) y = pp[y]; if (y == root) s += r[x] } print s + 0 }')
    ((rss > peak)) && peak=$rss
    sleep 0.1
  done
  if ! wait "$MEASURE_PID"; then MEASURE_PID=""; echo "bench: $name failed:" >&2; tail -n 20 "$WORK/$name.log" >&2; exit 1; fi
  MEASURE_PID=""
  SECS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  PEAK_KB=$peak
  AWS_CALLS=$(wc -l <"$WORK/aws-calls")
}

echo "bench: starting PostgreSQL and moto in $WORK" >&2
PGPORT=$(free_port)
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust --no-sync >/dev/null
# Same durability shortcuts for every contender; 2-core machine, modest memory.
PG_STARTED=yes
"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w start -o \
  "-p $PGPORT -c listen_addresses='' -c unix_socket_directories='$WORK' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB" >/dev/null
MOTO_PORT=$(free_port)
setsid moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
export PGHOST=$WORK PGPORT PGUSER=postgres PGDATABASE=postgres
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
export AWS_RESPONSE_CHECKSUM_VALIDATION=when_required # moto copy-object CRC bug, see test/support/realpg.ts
for _ in $(seq 100); do aws s3api create-bucket --bucket bench >/dev/null 2>&1 && break; sleep 0.3; done
export BACKUP_BUCKET=bench BACKUP_PREFIX=bench BACKUP_SSE=AES256

ROWS=()
CODECS=()
STEPS=() # where backup.sh's time went, from its own step= log lines
row() { ROWS+=("$(printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |' "$@")"); }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1048576 / (s > 0 ? s : 0.001) }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
mb1() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
rss_mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

HAVE_PGCRYPTO=$(psql -XAtc "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgcrypto'")
make_random() { # DB MB: ~MB of 1 kB random bytea rows, loaded by two sessions in parallel
  local db=$1 rows=$(($2 * 880)) gen
  if [[ "$HAVE_PGCRYPTO" == 1 ]]; then
    psql -XqAt -d "$db" -c 'CREATE EXTENSION pgcrypto'
    gen='gen_random_bytes(1024)'
  else
    gen="(SELECT decode(string_agg(md5(random()::text || i || k), ''), 'hex') FROM generate_series(1, 64) k)"
  fi
  psql -XqAt -d "$db" -c 'CREATE TABLE blobs (id bigint NOT NULL, payload bytea NOT NULL)'
  local half=$((rows / 2)) pids=()
  psql -XqAt -d "$db" -c "INSERT INTO blobs SELECT i, $gen FROM generate_series(1, $half) i" & pids+=($!)
  psql -XqAt -d "$db" -c "INSERT INTO blobs SELECT i, $gen FROM generate_series($half + 1, $rows) i" & pids+=($!)
  wait "${pids[0]}"; wait "${pids[1]}"
  psql -XqAt -d "$db" -c 'ALTER TABLE blobs ADD PRIMARY KEY (id)' -c 'VACUUM ANALYZE blobs'
}

# bench_one MODE LABEL DB: on one database, in one run, against the same S3:
#  (a) pg_dump -Fc -Z0 > /dev/null          what PostgreSQL can hand out
#  (b) pg_dump -Fc | aws s3 cp -            the naive peer (default gzip level)
#  (c) backup.sh                            ratio vs (b)
#  (d) aws s3 cp + pg_restore (naive restore of (b)'s object) vs restore.sh (ratio vs (d))
bench_one() {
  local mode=$1 label=$2 db=$3 size size_mb naive_s naive_bytes ours_bytes raw_restore_s dd
  size=$(psql -XAtc "SELECT pg_database_size('$db')")
  size_mb=$(mb "$size")

  echo "bench: $mode $label ($size_mb MB): pg_dump -Z0 > /dev/null" >&2
  measure raw_dump pg_dump -Fc -Z0 --no-sync -d "$db" -f /dev/null
  row "$mode" "$label" "$size_mb" '(a) `pg_dump -Fc -Z0 > /dev/null`' "-" "$SECS" "$(mbps "$size" "$SECS")" "$(rss_mb "$PEAK_KB")" "-"

  echo "bench: $mode $label: naive pg_dump | aws s3 cp -" >&2
  measure naive bash -c 'set -o pipefail; pg_dump -Fc -d "$1" | aws s3 cp - "s3://bench/naive/$1.dump" --only-show-errors' _ "$db"
  naive_s=$SECS
  naive_bytes=$(aws s3api head-object --bucket bench --key "naive/$db.dump" --query ContentLength --output text)
  row "$mode" "$label" "$size_mb" '(b) naive `pg_dump -Fc \| aws s3 cp -`' "$(mb1 "$naive_bytes")" "$SECS" "$(mbps "$size" "$SECS")" "$(rss_mb "$PEAK_KB")" "1.00x"

  echo "bench: $mode $label: backup.sh" >&2
  measure backup env BACKUP_DATABASES="$db" BACKUP_RUN_ID="run-$db" bash "$SCRIPTS/backup.sh"
  ours_bytes=$(aws s3api head-object --bucket bench --key "bench/runs/run-$db/$db.dump" --query ContentLength --output text)
  STEPS+=("$mode $label: $(grep -o 'step=[a-z-]* .*seconds=[0-9.]*' "$WORK/backup.log" | sed -E 's/^step=([a-z-]+) .*seconds=/\1=/' | tr '\n' ' ')")
  row "$mode" "$label" "$size_mb" "(c) backup.sh ($AWS_CALLS aws calls, $(grep -o 'compression=[^ ]*' "$WORK/backup.log"))" "$(mb1 "$ours_bytes")" "$SECS" "$(mbps "$size" "$SECS")" "$(rss_mb "$PEAK_KB")" "$(ratio "$naive_s" "$SECS")"

  echo "bench: $mode $label: naive download + pg_restore" >&2
  createdb "${db}_raw"
  measure raw_restore bash -c 'set -e; aws s3 cp "s3://bench/naive/$1.dump" "$2" --only-show-errors; pg_restore -d "$1_raw" "$2"; rm -f "$2"' _ "$db" "$WORK/naive.dump"
  raw_restore_s=$SECS
  row "$mode" "$label" "$size_mb" '(d) naive `aws s3 cp` + `pg_restore`' "$(mb1 "$naive_bytes")" "$SECS" "$(mbps "$size" "$SECS")" "$(rss_mb "$PEAK_KB")" "1.00x"
  dropdb "${db}_raw"

  echo "bench: $mode $label: restore.sh" >&2
  measure restore env RESTORE_RUN_ID="run-$db" RESTORE_DATABASE="$db" RESTORE_TARGET_DATABASE="${db}_ours" \
    RESTORE_SCRATCH_DIR="$WORK/scratch" bash "$SCRIPTS/restore.sh"
  row "$mode" "$label" "$size_mb" "(d) restore.sh (download, sha256, restore aside, counts, swap; $AWS_CALLS aws calls)" "$(mb1 "$ours_bytes")" "$SECS" "$(mbps "$size" "$SECS")" "$(rss_mb "$PEAK_KB")" "$(ratio "$raw_restore_s" "$SECS")"

  # Compression options on this data, single-threaded like pg_dump: the first 256 MB of the
  # uncompressed (-Z0) dump through each codec.
  if [[ -n "${BENCH_CODECS:-1}" ]]; then
    echo "bench: $mode $label: codecs" >&2
    pg_dump -Fc -Z0 -d "$db" | head -c $((256 * 1024 * 1024)) >"$WORK/z0.dump" || true
    dd=$(stat -c %s "$WORK/z0.dump")
    local c
    for c in "gzip -1" "gzip -6" "zstd -1" "zstd -3" "zstd -6" "lz4 -1"; do
      measure codec bash -c "$c -c <\"\$1\" | wc -c >\"\$2\"" _ "$WORK/z0.dump" "$WORK/codec.out"
      CODECS+=("$(printf '| %s %s | %s | %s | %s | %.1f |' "$mode" "$label" "$c" "$(mbps "$dd" "$SECS")" "$(mb1 "$(<"$WORK/codec.out")")" "$(awk -v a="$dd" -v b="$(<"$WORK/codec.out")" 'BEGIN { print a / b }')")")
    done
    rm -f "$WORK/z0.dump"
  fi

  dropdb "${db}_ours"; dropdb "$db"
  aws s3 rm --recursive --only-show-errors "s3://bench/bench/runs/run-$db/"
  aws s3 rm --only-show-errors "s3://bench/naive/$db.dump"
}

# --- upload memory: the AWS CLI streaming 256 MB at two --expected-size values -----
# Peak RSS of the `aws s3 cp -` process itself (/usr/bin/time -v), fed from a
# local file so the input outruns S3 (the CLI's buffers fill: the worst case),
# with the CLI's defaults and with the config backup.sh writes (lib.sh aws_config).
MEMROWS=()
upload_memory() {
  head -c $((256 * 1024 * 1024)) /dev/urandom >"$WORK/rand.bin"
  mkdir -p "$WORK/awscfg"
  # The very file backup.sh writes (lib.sh's aws_config).
  ( _BACKUP_WORKER=1; AWS_CONFIG_FILE=""; . "$SCRIPTS/lib.sh"; aws_config "$WORK/awscfg" ) 2>/dev/null
  local cfg exp kb t0 secs
  for cfg in default backup.sh; do
    for exp in $((1024 * 1024 * 1024)) $((300 * 1024 * 1024 * 1024)); do
      echo "bench: upload memory: $cfg config, expected size $(mb "$exp") MB" >&2
      t0=$EPOCHREALTIME
      if [[ $cfg == default ]]; then
        AWS_CONFIG_FILE=/dev/null /usr/bin/time -v aws s3 cp - s3://bench/mem/x --only-show-errors --expected-size "$exp" <"$WORK/rand.bin" 2>"$WORK/time.log"
      else
        AWS_CONFIG_FILE="$WORK/awscfg/aws-config" /usr/bin/time -v aws s3 cp - s3://bench/mem/x --only-show-errors --expected-size "$exp" <"$WORK/rand.bin" 2>"$WORK/time.log"
      fi
      secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
      kb=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$WORK/time.log")
      MEMROWS+=("$(printf '| %s | %s GiB | %s | %s |' "$cfg" "$((exp / 1024 / 1024 / 1024))" "$(rss_mb "$kb")" "$secs")")
      aws s3 rm --only-show-errors s3://bench/mem/x
    done
  done
  rm -f "$WORK/rand.bin"
}

# --- fixed overhead: an empty database ----------------------------------------
FIXED=()
createdb bench_empty
if [[ -n "${BENCH_BASELINE_REF:-}" ]]; then
  mkdir -p "$WORK/baseline"
  for f in backup.sh lib.sh; do git -C "$ROOT" show "$BENCH_BASELINE_REF:components/backup/scripts/$f" >"$WORK/baseline/$f"; done
  echo "bench: empty DB: backup.sh at $BENCH_BASELINE_REF" >&2
  measure base_empty env BACKUP_DATABASES=bench_empty BACKUP_RUN_ID=run-base-empty bash "$WORK/baseline/backup.sh"
  FIXED+=("$(printf '| backup.sh at `%s` | %s | %s | %s |' "$BENCH_BASELINE_REF" "$SECS" "$AWS_CALLS" "$(rss_mb "$PEAK_KB")")")
fi
echo "bench: empty DB: backup.sh / restore.sh" >&2
measure empty_dump pg_dump -Fc -d bench_empty -f "$WORK/empty.dump"
FIXED+=("$(printf '| raw `pg_dump -Fc` | %s | 0 | %s |' "$SECS" "$(rss_mb "$PEAK_KB")")")
measure empty_naive bash -c 'set -o pipefail; pg_dump -Fc -d bench_empty | aws s3 cp - s3://bench/naive/empty.dump --only-show-errors'
FIXED+=("$(printf '| naive `pg_dump -Fc \| aws s3 cp -` | %s | %s | %s |' "$SECS" "$AWS_CALLS" "$(rss_mb "$PEAK_KB")")")
measure empty_backup env BACKUP_DATABASES=bench_empty BACKUP_RUN_ID=run-empty bash "$SCRIPTS/backup.sh"
FIXED+=("$(printf '| backup.sh | %s | %s | %s |' "$SECS" "$AWS_CALLS" "$(rss_mb "$PEAK_KB")")")
grep -o 'step=[a-z-]* .*seconds=[0-9.]*' "$WORK/empty_backup.log" | sed 's/^/bench:   /' >&2
measure empty_restore env RESTORE_RUN_ID=run-empty RESTORE_DATABASE=bench_empty RESTORE_TARGET_DATABASE=bench_empty_ours \
  RESTORE_SCRATCH_DIR="$WORK/scratch" bash "$SCRIPTS/restore.sh"
FIXED+=("$(printf '| restore.sh | %s | %s | %s |' "$SECS" "$AWS_CALLS" "$(rss_mb "$PEAK_KB")")")
dropdb bench_empty; dropdb bench_empty_ours; rm -f "$WORK/empty.dump"
aws s3 rm --recursive --only-show-errors "s3://bench/bench/runs/"

upload_memory

# --- data sets -----------------------------------------------------------------
for mode in "${MODES[@]}"; do
  case "$mode" in
    random)
      for mbs in "${RANDOM_MB[@]}"; do
        db="bench_random_$mbs"
        echo "bench: creating $db (~$mbs MB of random bytea, pgcrypto=$HAVE_PGCRYPTO)" >&2
        createdb "$db"; make_random "$db" "$mbs"
        bench_one random "${mbs} MB" "$db"
      done ;;
    pgbench)
      for scale in "${SCALES[@]}"; do
        db="bench_pgbench_$scale"
        echo "bench: pgbench -i -s $scale" >&2
        createdb "$db"; pgbench -i -q -s "$scale" "$db" >"$WORK/pgbench.log" 2>&1
        bench_one pgbench "scale $scale" "$db"
      done ;;
    *) echo "bench: unknown mode '$mode' (random, pgbench)" >&2; exit 2 ;;
  esac
done

echo
echo "Backup benchmark, $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ { printf "%.0f GB RAM", $2 / 1048576 }' /proc/meminfo), PostgreSQL $(psql -XAtc 'SHOW server_version' | cut -d' ' -f1) (pg_dump $(pg_dump --version | awk '{ print $3 }')), $("$REAL_AWS" --version 2>&1 | cut -d' ' -f1,2), S3 = local moto_server $(python3 -c 'import moto; print(moto.__version__)' 2>/dev/null), pgcrypto=$([[ $HAVE_PGCRYPTO == 1 ]] && echo yes || echo no)"
echo
echo "Fixed overhead (empty database):"
echo
echo "| step | wall s | aws CLI calls | peak RSS MB (client tree) |"
echo "|---|---|---|---|"
printf '%s\n' "${FIXED[@]}"
echo
echo "| data | size | DB MB | step | dump MB | wall s | MB/s (of DB size) | peak RSS MB (client tree) | throughput vs naive (naive s / this s) |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "Upload memory: peak RSS of \`aws s3 cp -\` streaming 256 MB (/usr/bin/time -v), CLI defaults vs backup.sh's config ($(grep -v '^\[' "$WORK/awscfg/aws-config" 2>/dev/null | tr -s ' \n' ' '))"
echo
echo "| config | --expected-size | peak RSS MB | wall s |"
echo "|---|---|---|---|"
printf '%s\n' "${MEMROWS[@]}"
echo
if ((${#CODECS[@]})); then
  echo "Codecs on the uncompressed (-Z0) custom-format dump, one core each:"
  echo
  echo "| data | codec | MB/s (of the uncompressed dump) | out MB | ratio |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${CODECS[@]}"
  echo
fi
echo "backup.sh steps (seconds, from its log): "
printf -- '- %s\n' "${STEPS[@]}"
echo
echo "Peak RSS: summed RSS of the measured command's process tree, sampled every 100 ms (ps); excludes the PostgreSQL server and moto_server (moto holds objects in memory)."
echo "Total bench time: $(awk -v a="$T_BENCH" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s"
