#!/usr/bin/env bash
# Benchmark: raw pg_dump/pg_restore vs our backup.sh/restore.sh on pgbench
# databases, against a local PostgreSQL and a local moto S3 server.
#   npm run bench:backup                  # default: pgbench scale 70 (~1 GB)
#   BENCH_SCALES="15 70" npm run bench:backup
#   bash bench/backup-bench.sh 5 20       # scales as arguments
# Prints a markdown table. Peak RSS = max over 100 ms samples of the summed
# RSS of the measured command's whole process tree (ps), i.e. the client
# side: pg_dump/pg_restore, psql, tee, sha256sum, wc, aws. The PostgreSQL
# server and moto (which keeps objects in memory, so it grows with the data)
# are separate process trees and are NOT counted.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
read -r -a SCALES <<<"${*:-${BENCH_SCALES:-70}}"
PG_BIN=$(pg_config --bindir)
AS_PG=(); [[ $EUID -eq 0 ]] && AS_PG=(runuser -u postgres --)

WORK=$(mktemp -d /tmp/backup-bench.XXXXXX)
[[ $EUID -eq 0 ]] && chown postgres "$WORK"
PG_PID=""; MOTO_PID=""
cleanup() {
  [[ -n "$MOTO_PID" ]] && kill -- -"$MOTO_PID" 2>/dev/null
  [[ -n "$PG_PID" ]] && "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    (: >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# measure NAME CMD...: run CMD (its own process tree), set SECS and PEAK_KB.
measure() {
  local name=$1; shift
  local t0=$EPOCHREALTIME peak=0 rss
  "$@" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(ps -e -o pid=,ppid=,rss= | awk -v root="$pid" '
      { pp[$1] = $2; r[$1] = $3 }
      END { for (x in pp) { y = x; while (y != root && (y in pp) && y > 1) y = pp[y]; if (y == root) s += r[x] } print s + 0 }')
    ((rss > peak)) && peak=$rss
    sleep 0.1
  done
  if ! wait "$pid"; then echo "bench: $name failed:" >&2; tail -n 20 "$WORK/$name.log" >&2; exit 1; fi
  SECS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  PEAK_KB=$peak
}

echo "bench: starting PostgreSQL and moto in $WORK" >&2
PGPORT=$(free_port)
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust --no-sync >/dev/null
# Same durability shortcuts for every contender; 2-core machine, modest memory.
"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w start -o \
  "-p $PGPORT -c listen_addresses='' -c unix_socket_directories='$WORK' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB" >/dev/null
PG_PID=started
MOTO_PORT=$(free_port)
setsid moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
export PGHOST=$WORK PGPORT PGUSER=postgres PGDATABASE=postgres
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
export AWS_RESPONSE_CHECKSUM_VALIDATION=when_required # moto copy-object CRC bug, see test/support/realpg.ts
for _ in $(seq 100); do aws s3api create-bucket --bucket bench >/dev/null 2>&1 && break; sleep 0.3; done
export BACKUP_BUCKET=bench BACKUP_PREFIX=bench BACKUP_SSE=AES256

ROWS=()
row() { ROWS+=("$(printf '| %s | %s | %s | %s | %s | %s | %s |' "$@")"); }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1048576 / (s > 0 ? s : 0.001) }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }

for scale in "${SCALES[@]}"; do
  db="bench_s$scale"
  echo "bench: pgbench -i -s $scale" >&2
  createdb "$db"
  pgbench -i -q -s "$scale" "$db" >"$WORK/pgbench.log" 2>&1
  size=$(psql -XAtc "SELECT pg_database_size('$db')")
  size_mb=$(mb $((size / 1024)))

  echo "bench: scale $scale ($size_mb MB): raw pg_dump" >&2
  measure raw_dump bash -c "pg_dump -Fc -d '$db' >/dev/null"
  dump_s=$SECS; row "$scale" "$size_mb" 'raw `pg_dump -Fc > /dev/null`' "$SECS" "$(mbps "$size" "$SECS")" "$(mb "$PEAK_KB")" "1.00x"

  echo "bench: scale $scale: backup.sh" >&2
  measure backup env BACKUP_DATABASES="$db" BACKUP_RUN_ID="run-s$scale" bash "$ROOT/components/backup/scripts/backup.sh"
  dump_bytes=$(grep -o "step=dump db=$db bytes=[0-9]*" "$WORK/backup.log" | grep -o '[0-9]*$')
  row "$scale" "$size_mb" "backup.sh → S3 (dump $(mb $((dump_bytes / 1024))) MB)" "$SECS" "$(mbps "$size" "$SECS")" "$(mb "$PEAK_KB")" "$(ratio "$SECS" "$dump_s")"

  echo "bench: scale $scale: raw pg_restore" >&2
  pg_dump -Fc -d "$db" -f "$WORK/local.dump"
  createdb "${db}_raw"
  measure raw_restore pg_restore -d "${db}_raw" "$WORK/local.dump"
  restore_s=$SECS; row "$scale" "$size_mb" 'raw `pg_restore` of a local file' "$SECS" "$(mbps "$size" "$SECS")" "$(mb "$PEAK_KB")" "1.00x"
  rm -f "$WORK/local.dump"

  echo "bench: scale $scale: restore.sh" >&2
  measure restore env RESTORE_RUN_ID="run-s$scale" RESTORE_DATABASE="$db" RESTORE_TARGET_DATABASE="${db}_ours" \
    RESTORE_SCRATCH_DIR="$WORK/scratch" bash "$ROOT/components/backup/scripts/restore.sh"
  row "$scale" "$size_mb" "restore.sh (S3 download + sha256 + restore + counts)" "$SECS" "$(mbps "$size" "$SECS")" "$(mb "$PEAK_KB")" "$(ratio "$SECS" "$restore_s") of raw restore"

  dropdb "${db}_raw"; dropdb "${db}_ours"; dropdb "$db"
  aws s3 rm --recursive --only-show-errors "s3://bench/bench/runs/run-s$scale/"
done

echo
echo "Backup benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GB RAM", $2 / 1048576 }' /proc/meminfo), PostgreSQL $(psql -XAtc 'SHOW server_version' | cut -d' ' -f1), $(aws --version 2>&1 | cut -d' ' -f1), S3 = local moto_server"
echo
echo "| pgbench scale | DB size MB | step | wall s | MB/s (of DB size) | peak RSS MB (client tree) | vs raw |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "Peak RSS: summed RSS of the measured command's process tree, sampled every 100 ms (ps); excludes the PostgreSQL server and moto_server (moto holds objects in memory)."
