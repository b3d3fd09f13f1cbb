#!/usr/bin/env bash
# A local BuildGrid (REAPI CAS + ActionCache + ByteStream + Capabilities, in memory) for Pants'
# remote cache: see bgd.yml next to this script and pants.ci.toml at the repository root.
#
#   build-support/buildgrid/server.sh start    create the venv if missing, start bgd in the
#                                             background, wait until its port accepts
#                                             connections; prints grpc://127.0.0.1:PORT
#   build-support/buildgrid/server.sh stop     stop it (TERM, then KILL after 10 s)
#   build-support/buildgrid/server.sh status   exit 0 and print the address if it runs, else 1
#   build-support/buildgrid/server.sh venv     only create the venv; prints its path
#
# Environment:
#   BUILDGRID_RUN_DIR  directory for buildgrid.pid, buildgrid.port and buildgrid.log (default /tmp)
#   BUILDGRID_PORT     TCP port on 127.0.0.1 (default 50051; 0 picks a free port)
#   BUILDGRID_PYTHON   a CPython 3.11 (default: newest pyenv 3.11.N, else python3.11 on PATH)
#   BUILDGRID_VENV     venv directory (default ~/.cache/pants-sysext/buildgrid-venv-<hash of
#                      requirements.txt and the Python version>)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
CONFIG="$HERE/bgd.yml"
REQS="$HERE/requirements.txt"
MARKER=".buildgrid-complete"
RUN_DIR="${BUILDGRID_RUN_DIR:-/tmp}"
PID_FILE="$RUN_DIR/buildgrid.pid"
PORT_FILE="$RUN_DIR/buildgrid.port"
LOG_FILE="$RUN_DIR/buildgrid.log"
START_TIMEOUT=60

say() { echo "buildgrid: $*" >&2; }
die() { echo "buildgrid: error: $*" >&2; exit 1; }

find_python() {
  if [[ -n "${BUILDGRID_PYTHON:-}" ]]; then
    [[ -x "$BUILDGRID_PYTHON" ]] || die "BUILDGRID_PYTHON=$BUILDGRID_PYTHON is not an executable file"
    echo "$BUILDGRID_PYTHON"; return
  fi
  local root="${PYENV_ROOT:-}" best="" best_patch=-1 d patch
  if [[ -z "$root" ]] && command -v pyenv >/dev/null; then root="$(pyenv root)"; fi
  for d in "${root:-$HOME/.pyenv}"/versions/3.11*; do
    [[ -x "$d/bin/python3.11" ]] || continue
    patch="${d##*/3.11.}"; [[ "$patch" =~ ^[0-9]+$ ]] || patch=0
    if (( patch > best_patch )); then best="$d/bin/python3.11"; best_patch=$patch; fi
  done
  if [[ -n "$best" ]]; then echo "$best"; return; fi
  if command -v python3.11 >/dev/null; then command -v python3.11; return; fi
  die "no Python 3.11 found (pyenv install 3.11, or set BUILDGRID_PYTHON=/path/to/python3.11)"
}

# The venv is named by the hash of requirements.txt and the interpreter version, and built next
# to its final path then renamed, so it is either complete (has $MARKER) or absent.
ensure_venv() {
  local py pyver key f
  if [[ -n "${BUILDGRID_VENV:-}" ]]; then
    VENV="$BUILDGRID_VENV"
    [[ -e "$VENV/$MARKER" ]] && return 0
  fi
  py="$(find_python)"
  pyver="$("$py" -I -S -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
  [[ "$pyver" == 3.11.* ]] || die "$py is Python $pyver, BuildGrid 0.4.4 is set up here for 3.11"
  key="$({ cat "$REQS"; echo "$pyver"; } | sha256sum)"
  VENV="${BUILDGRID_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pants-sysext/buildgrid-venv-${key:0:12}}"
  [[ -e "$VENV/$MARKER" ]] && return 0
  [[ ! -e "$VENV" ]] || die "$VENV exists but is not complete (no $MARKER); remove it"
  mkdir -p "$(dirname "$VENV")"
  TMP_VENV="$(mktemp -d "$VENV.tmp.XXXXXX")"
  trap 'rm -rf "$TMP_VENV"' EXIT
  trap 'exit 130' INT; trap 'exit 143' TERM  # make signals run the EXIT trap too
  local tmp="$TMP_VENV"
  say "creating the BuildGrid venv with $py ($pyver) in $VENV ..."
  "$py" -m venv "$tmp" >&2
  if ! "$tmp/bin/python" -m pip install --no-input --disable-pip-version-check -r "$REQS" \
        >"$tmp/pip-install.log" 2>&1; then
    grep -v 'is ignored: it is neither a file nor a directory' "$tmp/pip-install.log" | tail -n 30 >&2
    die "pip install failed (log above)"
  fi
  # Console scripts name the venv's python by absolute path: point them at the final location.
  for f in "$tmp"/bin/*; do
    [[ -f "$f" && ! -L "$f" ]] && [[ "$(head -c 2 "$f")" == "#!" ]] || continue
    sed -i "1s|^#!$tmp/bin/|#!$VENV/bin/|" "$f"
  done
  touch "$tmp/$MARKER"
  mv "$tmp" "$VENV"
  trap - EXIT INT TERM
}

# The pid in $PID_FILE, if that process is alive and is our bgd.
running_pid() {
  local pid
  [[ -f "$PID_FILE" ]] || return 1
  pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "bgd server start $CONFIG" \
    || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd_start() {
  local pid port deadline
  if pid="$(running_pid)"; then
    say "already running (pid $pid)"
    echo "grpc://127.0.0.1:$(cat "$PORT_FILE")"
    return 0
  fi
  ensure_venv
  mkdir -p "$RUN_DIR"
  port="${BUILDGRID_PORT:-50051}"
  [[ "$port" =~ ^[0-9]{1,5}$ ]] && (( port <= 65535 )) || die "BUILDGRID_PORT=$port is not a port number"
  if [[ "$port" == 0 ]]; then port="$(free_port)"; fi
  port_open "$port" && die "127.0.0.1:$port is already in use"
  echo "$port" >"$PORT_FILE"
  # setsid: its own session, so a Ctrl-C in the caller's terminal does not reach it.
  BGD_ADDRESS="127.0.0.1:$port" setsid "$VENV/bin/bgd" server start "$CONFIG" \
    </dev/null >"$LOG_FILE" 2>&1 &
  pid=$!
  echo "$pid" >"$PID_FILE"
  deadline=$((SECONDS + START_TIMEOUT))
  until port_open "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      say "bgd exited before listening on 127.0.0.1:$port; its log ($LOG_FILE):"
      cat "$LOG_FILE" >&2
      exit 1
    fi
    if (( SECONDS >= deadline )); then
      kill -TERM "$pid" 2>/dev/null || true
      rm -f "$PID_FILE"
      say "bgd did not listen on 127.0.0.1:$port within ${START_TIMEOUT}s; its log ($LOG_FILE):"
      cat "$LOG_FILE" >&2
      exit 1
    fi
    sleep 0.2
  done
  say "started (pid $pid), log in $LOG_FILE"
  echo "grpc://127.0.0.1:$port"
}

cmd_stop() {
  local pid i
  if ! pid="$(running_pid)"; then
    say "not running"
    rm -f "$PID_FILE"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "pid $pid ignored TERM for 10 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
  say "stopped (pid $pid)"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    say "running (pid $pid)"
    echo "grpc://127.0.0.1:$(cat "$PORT_FILE")"
  else
    say "not running"
    return 1
  fi
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  venv) ensure_venv; echo "$VENV" ;;
  *) echo "usage: $0 start|stop|status|venv" >&2; exit 2 ;;
esac
