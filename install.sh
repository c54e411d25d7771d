#!/usr/bin/env bash
# Install check-status so that cron really runs it, and prove it.
#
#   ./install.sh               install or upgrade, system-wide (as root)
#   ./install.sh --user        install for this user: ~/.local, ~/.config, your crontab
#   ./install.sh --check       verify only: change nothing, exit non-zero on any FAIL,
#                              including "cron has not run it yet" (freshness)
#   ./install.sh --uninstall [--purge]
#                              remove the cron entry, the link and the venv
#                              (--purge also removes the env file, the state and the log);
#                              only paths install.sh recorded in its manifest
#   ./install.sh --token-file  also keep the Twilio auth token apart from the settings:
#                              write it to $CONFIG_DIR/twilio-token (mode 0600) and
#                              TWILIO_AUTH_TOKEN_FILE=that path into the env file, which
#                              then may be 0644 for a monitoring user (nagios) to read.
#                              The token comes from $TWILIO_AUTH_TOKEN if exported, else
#                              from stdin (a prompt that does not echo on a terminal):
#                                TWILIO_AUTH_TOKEN=... ./install.sh --token-file
#                              TWILIO_AUTH_TOKEN_FILE=PATH names another path (and implies it).
#
# Every path can be moved with NAME=VALUE arguments (the tests install into a
# temporary root this way): PREFIX BIN_DIR CONFIG_DIR STATE_DIR LOG_FILE CRON_FILE
# LOGROTATE_FILE (system-wide only; empty to skip). Install and --check also read
# them from the environment; --uninstall does not (see the manifest below).
# PYTHON picks the interpreter for the venv (default: python3).
# CRON_D=DIR (command line only, for tests) stands in for /etc/cron.d in --check.
set -euo pipefail

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; }

path_vars=(PREFIX BIN_DIR CONFIG_DIR STATE_DIR LOG_FILE CRON_FILE LOGROTATE_FILE)
declare -A given=()
declare -A inherited=()
action=install
user_mode=0
purge=0
split_token=0
for arg in "$@"; do
  case "$arg" in
    --user) user_mode=1 ;;
    --check) action=check ;;
    --uninstall) action=uninstall ;;
    --purge) purge=1 ;;
    --token-file) split_token=1 ;;
    TWILIO_AUTH_TOKEN_FILE=*) split_token=1; given[TWILIO_AUTH_TOKEN_FILE]=${arg#*=} ;;
    TWILIO_AUTH_TOKEN=*)
      # Any user can read a command line in ps: the token never goes on one.
      echo "install.sh: TWILIO_AUTH_TOKEN on the command line is visible to every user in ps:" \
        "export it (or type it at the prompt) and run: ./install.sh --token-file" >&2
      exit 2 ;;
    -h | --help) usage; exit 0 ;;
    PREFIX=* | BIN_DIR=* | CONFIG_DIR=* | STATE_DIR=* | LOG_FILE=* | CRON_FILE=* | LOGROTATE_FILE=* | PYTHON=* | CRON_D=*)
      given[${arg%%=*}]=${arg#*=} ;;
    *) echo "install.sh: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
# The manifest, not the caller's shell, says what --uninstall removes: a
# STATE_DIR exported for nodeos must never be deleted as ours.
if [ "$action" = uninstall ]; then
  for name in "${path_vars[@]}"; do
    if [ -n "${!name+set}" ]; then inherited[$name]=${!name}; fi
    unset "$name"
  done
fi
unset CRON_D
for name in "${!given[@]}"; do printf -v "$name" '%s' "${given[$name]}"; done
CRON_D=${CRON_D:-/etc/cron.d}

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
TOKEN_FILE=${TWILIO_AUTH_TOKEN_FILE:-$CONFIG_DIR/twilio-token}
EXECUTABLE=$PREFIX/bin/check-status
# What install.sh created, one "KIND PATH" a line: all that --uninstall removes.
MANIFEST=$CONFIG_DIR/install-manifest
MANIFEST_HEAD="# check-status install manifest: written by install.sh; --uninstall removes only these paths"
# The line install.sh owns in a user crontab ends with this comment.
USER_MARK="# check-status (managed by install.sh; other lines are left alone)"

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

token_path=()
if [ "$split_token" -eq 1 ]; then token_path=("$TOKEN_FILE"); fi
for path in "$PREFIX" "$BIN_DIR" "$CONFIG_DIR" "$STATE_DIR" "$LOG_FILE" "$CRON_FILE" "$CRON_D" "${token_path[@]}"; do
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
  # The same items as `check-status self-test`, run with the venv's own python
  # so they work even if the executable itself was renamed, and then freshness
  # (has cron run it?) with no grace: the check passes only once cron has.
  # `verify --no-freshness` is install's own check, just after writing the entry.
  if [ ! -x "$PREFIX/bin/python" ]; then
    echo "FAIL venv: $PREFIX/bin/python is missing"
    echo "     fix: run install.sh again"
    return 1
  fi
  CRON_FILE=$CRON_FILE "$PREFIX/bin/python" -m check_status.installation \
    --env-file "$ENV_FILE" --expect-executable "$EXECUTABLE" --cron-dir "$CRON_D" "$@"
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
# check-status: written by install.sh
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

# --- the manifest -----------------------------------------------------------

declare -A recorded=()

read_manifest() {
  local file=$1 line
  [ -f "$file" ] || return 1
  head -n 1 "$file" | grep -qxF "$MANIFEST_HEAD" || return 1
  while IFS= read -r line; do
    case "$line" in
      '#'* | '') ;;
      *' '/*) recorded[${line%% *}]=${line#* } ;;
    esac
  done < "$file"
}

record() { recorded[$1]=$2; }

write_manifest() {
  local tmp kind
  tmp=$(mktemp "$CONFIG_DIR/.install-manifest.XXXXXX")
  {
    echo "$MANIFEST_HEAD"
    for kind in venv link config-dir env token state-dir log cron logrotate; do
      if [ -n "${recorded[$kind]:-}" ]; then printf '%s %s\n' "$kind" "${recorded[$kind]}"; fi
    done
  } > "$tmp"
  chmod 0644 "$tmp"
  if [ "$(id -u)" -eq 0 ]; then chown root:root "$tmp"; fi
  mv -f "$tmp" "$MANIFEST"
}

# A state directory is ours only if it holds nothing but check-status's files:
# state.json and what sits beside it (.lock, .corrupt-*, the reserve, temp files).
only_state_files() {
  local dir=$1 entry name
  [ -d "$dir" ] && [ ! -L "$dir" ] || return 1
  for entry in "$dir"/* "$dir"/.[!.]* "$dir"/..?*; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    name=${entry##*/}
    [ -f "$entry" ] && [ ! -L "$entry" ] || return 1
    case "$name" in
      state.json | state.json.* | .state.json.*) ;;
      *) return 1 ;;
    esac
  done
}

# --- the token file (--token-file) -------------------------------------------

token=""

# The token, from the environment or stdin; never an argument of any command.
read_token() {
  if [ -n "${TWILIO_AUTH_TOKEN:-}" ]; then
    token=$TWILIO_AUTH_TOKEN
  elif [ -t 0 ]; then
    read -r -s -p "install.sh: Twilio auth token (not shown): " token
    echo
  else
    IFS= read -r token || true
  fi
  # Exported alongside TWILIO_AUTH_TOKEN_FILE it would be a config error in
  # the checks below: from here on the file holds it.
  unset TWILIO_AUTH_TOKEN
  # Surrounding whitespace only (a pasted newline); a space inside stays, and fails.
  token=${token#"${token%%[![:space:]]*}"}
  token=${token%"${token##*[![:space:]]}"}
  [[ $token =~ ^[0-9a-f]{32}$ ]] \
    || die "the Twilio auth token must be 32 hex digits (0-9, a-f), this one has ${#token} characters: copy it again from the Twilio console"
}

write_token_file() {
  local dir tmp
  dir=$(dirname "$TOKEN_FILE")
  mkdir -p "$dir"
  # umask 077: the file is never readable by others, not even for an instant.
  tmp=$(umask 077 && mktemp "$dir/.twilio-token.XXXXXX")
  printf '%s\n' "$token" > "$tmp"  # printf is a builtin: no process, nothing in ps
  chmod 0600 "$tmp"
  if [ "$(id -u)" -eq 0 ]; then chown root:root "$tmp"; fi
  mv -f "$tmp" "$TOKEN_FILE"
  token=""
  record token "$TOKEN_FILE"
  say "wrote the Twilio auth token to $TOKEN_FILE (mode 0600)"
}

# An existing env file: its TWILIO_AUTH_TOKEN line gives way to TWILIO_AUTH_TOKEN_FILE.
point_env_file_at_token() {
  local tmp
  tmp=$(umask 077 && mktemp "$CONFIG_DIR/.check-status.env.XXXXXX")
  grep -vE '^[[:space:]]*(export[[:space:]]+)?TWILIO_AUTH_TOKEN(_FILE)?[[:space:]]*=' "$ENV_FILE" > "$tmp" || true
  printf 'TWILIO_AUTH_TOKEN_FILE=%s\n' "$TOKEN_FILE" >> "$tmp"
  chmod 0600 "$tmp"
  mv -f "$tmp" "$ENV_FILE"
}

# 0644 for a monitoring user to read, only once nothing secret is left in it
# (a heartbeat URL, a URL with a password).
open_env_file() {
  local secrets
  secrets=$("$PREFIX/bin/python" -c 'import sys
from pathlib import Path
from check_status.config import secret_keys_in
print(" ".join(secret_keys_in(Path(sys.argv[1]))))' "$ENV_FILE")
  if [ -n "$secrets" ]; then
    say "kept $ENV_FILE mode 0600: it still holds a secret ($secrets)"
  else
    chmod 0644 "$ENV_FILE"
    say "$ENV_FILE is mode 0644: it holds no secret, the token is in $TOKEN_FILE"
  fi
}

install() {
  if [ "$user_mode" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root for a system-wide install, or use --user"
  fi
  if [ "$split_token" -eq 1 ]; then read_token; fi
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is older than 3.11; set PYTHON=/path/to/python3.11"
  read_manifest "$MANIFEST" || true

  if [ ! -x "$PREFIX/bin/python" ]; then
    say "creating the venv in $PREFIX"
    mkdir -p "$(dirname "$PREFIX")"
    "$PYTHON" -m venv "$PREFIX"
    record venv "$PREFIX"
  elif [ -f "$PREFIX/pyvenv.cfg" ] && [ -e "$EXECUTABLE" ]; then
    record venv "$PREFIX"  # an earlier install's venv: upgraded here
  fi
  say "installing check-status from $source_dir"
  "$PREFIX/bin/pip" install --quiet --disable-pip-version-check --upgrade "$source_dir"

  mkdir -p "$BIN_DIR"
  ln -sfn "$EXECUTABLE" "$BIN_DIR/check-status"
  record link "$BIN_DIR/check-status"

  [ -d "$CONFIG_DIR" ] || { mkdir -p "$CONFIG_DIR"; record config-dir "$CONFIG_DIR"; }
  if [ ! -d "$STATE_DIR" ]; then
    mkdir -p "$STATE_DIR"
    record state-dir "$STATE_DIR"
  elif [ -e "$STATE_DIR/state.json" ] && only_state_files "$STATE_DIR"; then
    record state-dir "$STATE_DIR"  # an earlier install's state
  fi
  mkdir -p "$(dirname "$LOG_FILE")"
  if [ ! -e "$LOG_FILE" ]; then
    : > "$LOG_FILE"
    record log "$LOG_FILE"
  fi
  if [ -e "$ENV_FILE" ]; then
    say "keeping the existing $ENV_FILE"
    record env "$ENV_FILE"  # its name is ours: check-status.env
    if [ "$split_token" -eq 1 ]; then
      point_env_file_at_token
      say "$ENV_FILE now names TWILIO_AUTH_TOKEN_FILE=$TOKEN_FILE instead of holding the token"
    fi
  else
    local tmp token_setting=()
    if [ "$split_token" -eq 1 ]; then token_setting=(--set "TWILIO_AUTH_TOKEN_FILE=$TOKEN_FILE"); fi
    tmp=$(umask 077 && mktemp "$CONFIG_DIR/.check-status.env.XXXXXX")
    "$EXECUTABLE" config-template --set "STATE_FILE=$STATE_DIR/state.json" \
      --set "CRON_FILE=$CRON_FILE" "${token_setting[@]}" > "$tmp"
    chmod 0600 "$tmp"
    mv -n "$tmp" "$ENV_FILE"
    rm -f "$tmp"
    record env "$ENV_FILE"
    say "wrote $ENV_FILE (mode 0600): fill in the Twilio keys and ALERT_TO"
  fi
  if [ "$split_token" -eq 1 ]; then
    write_token_file
    open_env_file
  fi

  write_cron_entry
  if [ "$user_mode" -eq 0 ]; then record cron "$CRON_FILE"; fi
  write_logrotate
  if [ -n "$LOGROTATE_FILE" ]; then record logrotate "$LOGROTATE_FILE"; fi
  write_manifest
  say "recorded what it created in $MANIFEST (all that --uninstall removes)"

  say "verifying the installation"
  verify --no-freshness || die "the installation is not right; see FAIL above"
  say "running check-status self-test"
  CRON_FILE=$CRON_FILE "$EXECUTABLE" self-test --env-file "$ENV_FILE" --expect-executable "$EXECUTABLE" || true
  say "done. Next: edit $ENV_FILE, then run: check-status self-test --send-test-sms"
  say "in a minute, run ./install.sh --check: it fails until cron has run check-status once"
}

# The path of KIND to remove: given on the command line, else the manifest's;
# with no manifest at all (an install older than it), the default path.
target() {
  local kind=$1 name=$2 path=$3
  if [ -n "${given[$name]+set}" ]; then
    printf '%s' "$path"
  elif [ "$have_manifest" -eq 1 ]; then
    printf '%s' "${recorded[$kind]:-}"
  else
    printf '%s' "$path"
  fi
}

uninstall() {
  have_manifest=0
  local name
  if read_manifest "$MANIFEST"; then
    have_manifest=1
  elif [ -z "${given[CONFIG_DIR]+set}" ] && [ -n "${inherited[CONFIG_DIR]:-}" ] \
    && read_manifest "${inherited[CONFIG_DIR]}/install-manifest"; then
    # An inherited CONFIG_DIR counts when it holds our manifest.
    MANIFEST=${inherited[CONFIG_DIR]}/install-manifest
    CONFIG_DIR=${inherited[CONFIG_DIR]}
    ENV_FILE=$CONFIG_DIR/check-status.env
    have_manifest=1
  fi
  for name in "${!inherited[@]}"; do
    [ "$name" = CONFIG_DIR ] && [ "$have_manifest" -eq 1 ] && [ "$CONFIG_DIR" = "${inherited[$name]}" ] && continue
    say "ignoring $name=${inherited[$name]} from the environment: --uninstall removes only what" \
      "the manifest lists (to name a path, give it on the command line: $name=...)"
  done
  if [ "$have_manifest" -eq 1 ]; then
    say "removing what $MANIFEST lists"
  else
    say "no install manifest at $MANIFEST: removing only what looks like check-status's at the default paths"
  fi

  local cron venv link logrotate env token_file log state config_dir
  cron=$(target cron CRON_FILE "$CRON_FILE")
  venv=$(target venv PREFIX "$PREFIX")
  link=$(target link BIN_DIR "$BIN_DIR/check-status")
  logrotate=$(target logrotate LOGROTATE_FILE "$LOGROTATE_FILE")
  env=$(target env CONFIG_DIR "$ENV_FILE")
  token_file=${recorded[token]:-}  # only ever the one install.sh wrote
  log=$(target log LOG_FILE "$LOG_FILE")
  state=$(target state-dir STATE_DIR "$STATE_DIR")
  config_dir=$(target config-dir CONFIG_DIR "$CONFIG_DIR")

  if [ "$user_mode" -eq 1 ]; then
    user_crontab_without_ours | crontab -
    say "removed the entry from your crontab"
  elif [ -n "$cron" ] && [ -f "$cron" ] && grep -qF "# check-status: written by install.sh" "$cron"; then
    rm -f "$cron"
    say "removed $cron"
  fi
  if [ -n "$logrotate" ] && [ -f "$logrotate" ] \
    && grep -qxF -e "# check-status: written by install.sh" -e "$LOG_FILE {" "$logrotate"; then
    rm -f "$logrotate"
  fi
  # Only ever remove a link to our venv, and a directory that is a venv.
  if [ -n "$link" ] && [ -L "$link" ] && [ "$(readlink "$link")" = "$venv/bin/check-status" ]; then
    rm -f "$link"
  fi
  if [ -n "$venv" ] && [ -f "$venv/pyvenv.cfg" ]; then
    rm -rf "$venv"
    say "removed $venv"
  fi
  if [ "$purge" -eq 0 ]; then
    say "kept ${env:-the env file}${token_file:+, $token_file} and ${state:-the state} (use --purge to remove them)"
    return
  fi
  local purged=()
  if [ -n "$env" ] && [ -f "$env" ]; then rm -f "$env"; purged+=("$env"); fi
  if [ -n "$token_file" ] && [ -f "$token_file" ]; then
    rm -f "$token_file"
    purged+=("$token_file")
  fi
  if [ -n "$log" ] && [ -f "$log" ]; then
    rm -f "$log" "$log".[0-9] "$log".[0-9].gz "$log".[0-9][0-9] "$log".[0-9][0-9].gz
    purged+=("$log")
  fi
  if [ -n "$state" ] && [ -d "$state" ]; then
    if only_state_files "$state"; then
      rm -rf "$state"
      purged+=("$state")
    else
      say "kept $state: it holds files check-status did not write"
    fi
  fi
  if [ "$have_manifest" -eq 1 ]; then rm -f "$MANIFEST"; fi
  if [ -n "$config_dir" ]; then rmdir "$config_dir" 2>/dev/null || true; fi
  say "purged ${purged[*]:-nothing}"
}

case "$action" in
  install) install ;;
  check) verify ;;
  uninstall) uninstall ;;
esac
