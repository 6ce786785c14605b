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
# restart, the entrypoint's temporary init server), reload once. Connects over the pod's own socket.
set -uo pipefail
# shellcheck source=wal-lib.sh
. "$(dirname "$0")/wal-lib.sh"

require_env PGHOST PGUSER
INTERVAL=${WAL_ARM_INTERVAL:-10}
ARMED=""
trap 'exit 0' TERM INT
while :; do
  STARTED=$("${PSQL[@]}" -d postgres -c "SELECT pg_postmaster_start_time()" 2>/dev/null) || STARTED=""
  if [[ -n "$STARTED" && "$STARTED" != "$ARMED" ]]; then
    if "${PSQL[@]}" -d postgres -c "SELECT pg_reload_conf()" >/dev/null 2>&1; then
      ARMED=$STARTED
      log "server started at $STARTED: checkpointer woken, archive_timeout=$("${PSQL[@]}" -d postgres -c 'SHOW archive_timeout') in force"
    fi
  fi
  sleep "$INTERVAL" & wait $!
done
