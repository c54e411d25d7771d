#!/usr/bin/env bash
# Install check-status so that cron really runs it, and prove it.
#
#   ./install.sh               install or upgrade, system-wide (as root)
#   ./install.sh --user        install for this user: ~/.local, ~/.config, your crontab
#   ./install.sh --check       verify only: change nothing, exit non-zero on any FAIL
#   ./install.sh --uninstall [--purge]
#                              remove the cron entry, the link and the venv
#                              (--purge also removes the env file, the state and the log)
#
# Every path can be moved with these variables (the tests install into a
# temporary root this way): PREFIX BIN_DIR CONFIG_DIR STATE_DIR LOG_FILE CRON_FILE
# LOGROTATE_FILE (system-wide only; empty to skip).
# PYTHON picks the interpreter for the venv (default: python3).
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

action=install
user_mode=0
purge=0
for arg in "$@"; do
  case "$arg" in
    --user) user_mode=1 ;;
    --check) action=check ;;
    --uninstall) action=uninstall ;;
    --purge) purge=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

source_dir=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python3}

if [ "$user_mode" -eq 1 ]; then
  PREFIX=${PREFIX:-$HOME/.local/share/check-status/venv}
  BIN_DIR=${BIN_DIR:-$HOME/.local/bin}
  CONFIG_DIR=${CONFIG_DIR:-$HOME/.config/check-status}
  STATE_DIR=${STATE_DIR:-$HOME/.local/state/check-status}
  LOG_FILE=${LOG_FILE:-$HOME/.local/state/check-status/check-status.log}
  # No file in /etc/cron.d: the entry goes into this user's crontab.
  CRON_FILE=${CRON_FILE:-/etc/cron.d/check-status}
else
  PREFIX=${PREFIX:-/opt/check-status}
  BIN_DIR=${BIN_DIR:-/usr/local/bin}
  CONFIG_DIR=${CONFIG_DIR:-/etc/check-status}
  STATE_DIR=${STATE_DIR:-/var/lib/check-status}
  LOG_FILE=${LOG_FILE:-/var/log/check-status.log}
  CRON_FILE=${CRON_FILE:-/etc/cron.d/check-status}
  # One line a minute, forever: rotate it.
  LOGROTATE_FILE=${LOGROTATE_FILE-/etc/logrotate.d/check-status}
fi
LOGROTATE_FILE=${LOGROTATE_FILE:-}
ENV_FILE=$CONFIG_DIR/check-status.env
EXECUTABLE=$PREFIX/bin/check-status
# The line install.sh owns in a user crontab ends with this comment.
USER_MARK="# check-status (managed by install.sh; other lines are left alone)"

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

for path in "$PREFIX" "$BIN_DIR" "$CONFIG_DIR" "$STATE_DIR" "$LOG_FILE" "$CRON_FILE"; do
  case "$path" in
    /*) ;;
    *) die "every path must be absolute; got '$path'" ;;
  esac
done

cron_line() {
  local user_field=""
  [ "$user_mode" -eq 1 ] || user_field="root "
  # Absolute paths everywhere: cron's PATH is /usr/bin:/bin and its cwd is $HOME.
  printf '* * * * * %s%s run --env-file %s >> %s 2>&1' "$user_field" "$EXECUTABLE" "$ENV_FILE" "$LOG_FILE"
}

verify() {
  # The same checks as `check-status self-test`, run with the venv's own
  # python so they work even if the executable itself was renamed.
  if [ ! -x "$PREFIX/bin/python" ]; then
    echo "FAIL venv: $PREFIX/bin/python is missing"
    echo "     fix: run install.sh again"
    return 1
  fi
  CRON_FILE=$CRON_FILE "$PREFIX/bin/python" -m check_status self-test --install-only \
    --env-file "$ENV_FILE" --expect-executable "$EXECUTABLE"
}

user_crontab_without_ours() {
  crontab -l 2>/dev/null | grep -vF "$USER_MARK" || true
}

write_cron_entry() {
  if [ "$user_mode" -eq 1 ]; then
    { user_crontab_without_ours; printf '%s %s\n' "$(cron_line)" "$USER_MARK"; } | crontab -
    say "cron entry written to your crontab (other lines kept)"
    return
  fi
  local cron_dir tmp
  cron_dir=$(dirname "$CRON_FILE")
  mkdir -p "$cron_dir"
  # A temp name with a dot: cron ignores it until the rename makes it whole.
  tmp=$(mktemp "$cron_dir/.check-status.XXXXXX")
  cat > "$tmp" <<EOF
# check-status: written by install.sh; run install.sh again to change it.
# The file name has no dot on purpose: cron silently ignores /etc/cron.d files
# whose names contain one. MAILTO is empty because output goes to the log.
SHELL=/bin/sh
PATH=/usr/bin:/bin
MAILTO=""
$(cron_line)
EOF
  chmod 0644 "$tmp"
  if [ "$(id -u)" -eq 0 ]; then chown root:root "$tmp"; fi
  mv -f "$tmp" "$CRON_FILE"
  say "cron entry written to $CRON_FILE"
}

write_logrotate() {
  [ -n "$LOGROTATE_FILE" ] || return 0
  mkdir -p "$(dirname "$LOGROTATE_FILE")"
  # Each run opens the log anew (>>), so plain rotation is safe: no copytruncate.
  cat > "$LOGROTATE_FILE" <<EOF
$LOG_FILE {
    weekly
    rotate 8
    compress
    delaycompress
    missingok
    notifempty
}
EOF
  chmod 0644 "$LOGROTATE_FILE"
}

install() {
  if [ "$user_mode" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root for a system-wide install, or use --user"
  fi
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is older than 3.11; set PYTHON=/path/to/python3.11"

  if [ ! -x "$PREFIX/bin/python" ]; then
    say "creating the venv in $PREFIX"
    mkdir -p "$(dirname "$PREFIX")"
    "$PYTHON" -m venv "$PREFIX"
  fi
  say "installing check-status from $source_dir"
  "$PREFIX/bin/pip" install --quiet --disable-pip-version-check --upgrade "$source_dir"

  mkdir -p "$BIN_DIR"
  ln -sfn "$EXECUTABLE" "$BIN_DIR/check-status"

  mkdir -p "$CONFIG_DIR" "$STATE_DIR" "$(dirname "$LOG_FILE")"
  if [ -e "$ENV_FILE" ]; then
    say "keeping the existing $ENV_FILE"
  else
    local tmp
    tmp=$(umask 077 && mktemp "$CONFIG_DIR/.check-status.env.XXXXXX")
    "$EXECUTABLE" config-template --set "STATE_FILE=$STATE_DIR/state.json" \
      --set "CRON_FILE=$CRON_FILE" > "$tmp"
    chmod 0600 "$tmp"
    mv -n "$tmp" "$ENV_FILE"
    rm -f "$tmp"
    say "wrote $ENV_FILE (mode 0600): fill in the Twilio keys and ALERT_TO"
  fi

  write_cron_entry
  write_logrotate

  say "verifying the installation"
  verify || die "the installation is not right; see FAIL above"
  say "running check-status self-test"
  CRON_FILE=$CRON_FILE "$EXECUTABLE" self-test --env-file "$ENV_FILE" --expect-executable "$EXECUTABLE" || true
  say "done. Next: edit $ENV_FILE, then run: check-status self-test --send-test-sms"
}

uninstall() {
  if [ "$user_mode" -eq 1 ]; then
    user_crontab_without_ours | crontab -
    say "removed the entry from your crontab"
  elif [ -f "$CRON_FILE" ]; then
    rm -f "$CRON_FILE"
    say "removed $CRON_FILE"
  fi
  if [ -n "$LOGROTATE_FILE" ]; then rm -f "$LOGROTATE_FILE"; fi
  if [ -L "$BIN_DIR/check-status" ] && [ "$(readlink "$BIN_DIR/check-status")" = "$EXECUTABLE" ]; then
    rm -f "$BIN_DIR/check-status"
  fi
  # Only ever remove a directory that is our venv.
  if [ -f "$PREFIX/pyvenv.cfg" ]; then
    rm -rf "$PREFIX"
    say "removed $PREFIX"
  fi
  if [ "$purge" -eq 1 ]; then
    rm -f "$ENV_FILE" "$LOG_FILE"
    rmdir "$CONFIG_DIR" 2>/dev/null || true
    rm -rf "$STATE_DIR"
    say "purged $ENV_FILE, $STATE_DIR and $LOG_FILE"
  else
    say "kept $ENV_FILE and $STATE_DIR (use --purge to remove them)"
  fi
}

case "$action" in
  install) install ;;
  check) verify ;;
  uninstall) uninstall ;;
esac
