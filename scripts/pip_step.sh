# Sourced by the setup scripts: `pip_step PIP ARGS...` runs one pip command quietly and, when it fails, stops the
# script with pip's own output and the command that failed (never a silent failure that surfaces later).
pip_step() {
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  # pip repeats a warning for each unreachable extra index location; that line is noise, everything else is kept.
  printf '%s\n' "$out" | grep -v -e "is ignored: it is neither" -e "^$" >&2 || true
  if [ $rc -ne 0 ]; then
    echo "setup: this step failed (exit $rc): $*" >&2
    exit $rc
  fi
}
