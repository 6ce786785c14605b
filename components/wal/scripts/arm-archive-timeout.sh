#!/usr/bin/env bash
# Sidecar of the database pod: makes archive_timeout effective from the moment the server starts.
#
# Why: since PostgreSQL 15 the checkpointer starts before the startup process has finished. Its
# first sleep is computed while RecoveryInProgress() is still true, which leaves archive_timeout out
# (checkpointer.c, CheckpointerMain: `if (XLogArchiveTimeout > 0 && !RecoveryInProgress())`), so it
# sleeps a full checkpoint_timeout and nothing wakes it after a clean start. For up to
# checkpoint_timeout (5 min) after every server start, a commit is not archived within
# archive_timeout. A configuration reload sets the checkpointer's latch; it recomputes its sleep
# with archive_timeout. Nothing else changes: no WAL switch is forced, no checkpoint requested.
#
# Every WAL_ARM_INTERVAL seconds: if the server's start time changed (first start, a container
# restart, the entrypoint's temporary init server), reload once. Also reload when WAL_HBA_FILE
# changed (the pg_hba.conf ConfigMap was updated): PostgreSQL rereads it only on a reload.
# Connects over the pod's own socket.
set -uo pipefail
# shellcheck source=wal-lib.sh
. "$(dirname "$0")/wal-lib.sh"

require_env PGHOST PGUSER
INTERVAL=${WAL_ARM_INTERVAL:-10}
ARMED=""
HBA_SUM=""
hba_sum() { [[ -n "${WAL_HBA_FILE:-}" && -r "$WAL_HBA_FILE" ]] && sha256sum <"$WAL_HBA_FILE" | cut -d' ' -f1; }
trap 'exit 0' TERM INT
while :; do
  NOW_SUM=$(hba_sum || true)
  if [[ -n "$ARMED" && "$NOW_SUM" != "$HBA_SUM" ]]; then
    "${PSQL[@]}" -d postgres -c "SELECT pg_reload_conf()" >/dev/null 2>&1 && log "pg_hba.conf changed: configuration reloaded"
  fi
  HBA_SUM=$NOW_SUM
  STARTED=$("${PSQL[@]}" -d postgres -c "SELECT pg_postmaster_start_time()" 2>/dev/null) || STARTED=""
  if [[ -n "$STARTED" && "$STARTED" != "$ARMED" ]]; then
    if "${PSQL[@]}" -d postgres -c "SELECT pg_reload_conf()" >/dev/null 2>&1; then
      ARMED=$STARTED
      log "server started at $STARTED: checkpointer woken, archive_timeout=$("${PSQL[@]}" -d postgres -c 'SHOW archive_timeout') in force"
    fi
  fi
  sleep "$INTERVAL" & wait $!
done
