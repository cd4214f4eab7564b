# checks.sh — sourced by the shell tests of the example programs: a count of passed and failed
# checks, and check(), which runs a command and compares its exit status and output.
fails=0 passes=0

ok() { passes=$((passes + 1)); }
# A failed check: the verdict first (a long output after it must not push it away).
bad() { fails=$((fails + 1)); printf 'FAIL %s\n' "$*"; }

check() { # name, expected status, regex the output must match, command...
  local name=$1 want=$2 regex=$3
  shift 3
  local out status
  out=$("$@" 2>&1)
  status=$?
  if [[ $status -eq $want ]] && grep -Eq -- "$regex" <<<"$out"; then
    ok
  else
    bad "$name: status $status (wanted $want), output (last 20 lines):"
    tail -n 20 <<<"$out"
  fi
}
