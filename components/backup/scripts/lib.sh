# shellcheck shell=bash
# Shared helpers for backup.sh, restore.sh and verify.sh. Sourced, never executed.
# These run inside the official postgres image: bash + coreutils + PG client tools
# + aws CLI (v1 in tests, v2 in prod). No jq, no python: JSON is read with
# PostgreSQL's own JSON functions and written with printf.

# The CLI v2 pipes output through a pager when it thinks it has a terminal.
export AWS_PAGER=""
# Never wait forever on an unreachable server; never prompt for a password.
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-15}"
# -X: ignore any ~/.psqlrc; -w: never prompt; -At: bare values we can parse.
PSQL=(psql -X -w -q -At -v ON_ERROR_STOP=1)

SCRIPT_NAME=$(basename "$0" .sh)
FAIL_REASON=""   # set by die(); printed on the final FAILED line
OK_MESSAGE=""    # set by the script just before a successful exit
ERR_AT=""        # last failing command seen by the ERR trap (fallback reason)

# Everything goes to stderr so the status line is also the last line of the
# (merged) pod log, whatever the tools print.
exec 1>&2

log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SCRIPT_NAME" "$*"; }

# Microsecond clock from bash itself (no awk/bc in the image).
now_us() { local t=${EPOCHREALTIME/[.,]/}; printf '%s' "$((10#$t))"; }
# seconds since $1 (a now_us value), formatted s.mmm
since() { local ms=$((($(now_us) - $1) / 1000)); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }

# die CODE MESSAGE: record the reason; the EXIT trap prints it as the last line.
die() { FAIL_REASON="$2"; exit "$1"; }

require_env() {
  local v
  for v in "$@"; do
    [[ -n "${!v:-}" ]] || die 2 "missing required environment variable $v"
  done
}

# Each script defines cleanup(); this prints the single status line after it ran.
_finish() {
  local rc=$?
  trap - EXIT ERR
  set +e
  EXIT_CODE=$rc
  cleanup
  if ((rc == 0)); then
    log "$SCRIPT_NAME OK $OK_MESSAGE"
  else
    log "$SCRIPT_NAME FAILED: ${FAIL_REASON:-unexpected error (exit $rc) at ${ERR_AT:-unknown command}}"
  fi
  exit "$rc"
}
_on_err() { ERR_AT="line $1: $2 (exit $3)"; }
install_traps() {
  trap '_on_err "$LINENO" "$BASH_COMMAND" "$?"' ERR
  trap _finish EXIT
  # A TERM (pod eviction, activeDeadlineSeconds) must still run cleanup.
  trap 'FAIL_REASON="terminated by signal"; exit 143' TERM INT
}

# JSON string literal for a bash value (names only; no control characters expected).
json_str() {
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\r'/\\r}; s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

# json_get DB JSON PATH: extract a text value with PostgreSQL (PATH like '{a,b}').
# Used only for reading our own manifest/pointer.
json_get() {
  "${PSQL[@]}" -d "$1" -v j="$2" -v p="$3" <<'SQL'
SELECT (:'j'::jsonb) #>> (:'p')::text[];
SQL
}

# SQL printing one JSON object: row count of every user table (schema-qualified,
# quote_ident'ed so names are unambiguous) plus the number of large objects.
# Extension member tables are skipped: pg_dump does not dump their rows.
# Shared by backup (inside the exported snapshot) and restore (to compare).
CONTENTS_SQL=$(cat <<'SQL'
SELECT coalesce(string_agg(format('SELECT %L AS t, count(*) AS n FROM %I.%I',
                                  quote_ident(n.nspname) || '.' || quote_ident(c.relname),
                                  n.nspname, c.relname), ' UNION ALL '),
                'SELECT NULL::text AS t, 0::bigint AS n WHERE false') AS count_query
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
\gset
SELECT json_build_object(
  'tables', (SELECT coalesce(json_object_agg(t, n ORDER BY t), '{}') FROM (:count_query) s),
  'large_objects', (SELECT count(*) FROM pg_largeobject_metadata)) AS contents;
SQL
)
