#!/usr/bin/env bash
# shellcheck disable=SC2016  # sh -c scripts in single quotes take their values as "$1", "$2"
# A private RabbitMQ node for mqsec's tests and demo (AMQP 1.0 via the rabbitmq_amqp1_0 plugin).
#
#   scripts/broker.sh start  <dir>   start a node whose files all live in <dir> (or find it running)
#                                    and wait until it is ready; prints its URL
#   scripts/broker.sh stop   <dir>   clean shutdown (bounded), then kill what is left; data kept;
#                                    safe when nothing runs
#   scripts/broker.sh kill   <dir>   SIGKILL the node (a crash; data kept, its epmd left running)
#   scripts/broker.sh status <dir>   print the URL and exit 0 if the node answers, else exit 3
#   scripts/broker.sh depth  <dir> <queue>   messages ready in a queue (exit 4: no such queue)
#   scripts/broker.sh queues <dir>   every queue: name, messages ready, durable, auto-delete,
#                                    exclusive (tab-separated, one a line)
#   scripts/broker.sh watch  <dir>   wait for EOF on stdin, then stop the node and remove <dir>;
#                                    a watchdog for a node that must not outlive its owner:
#                                      exec 9> >(setsid -f scripts/broker.sh watch "$dir")
#
# <dir>/broker.env (KEY=VALUE lines): URL=amqp://127.0.0.1:PORT, PORT, USER=mqsec,
# PASSWORD_FILE=<dir>/broker.pw (mode 0600, the caller's; the password is random, reaches the
# node only as its salted hash in <dir>/node/defs.json, imported at boot, and is never printed
# nor put on a command line), NODE, DIST_PORT, EPMD_PORT.
# `start` again on the same <dir> reuses its ports, password and data (durable queues and
# messages survive). The AMQP listener, Erlang distribution (node and CLI tools) and the node's
# own epmd listen on 127.0.0.1 only (epmd adds ::1, also loopback); the system service,
# /etc/rabbitmq and the system epmd (4369) are never used; the user guest never exists. Run as
# root, the node runs as the user `rabbitmq` (MQSEC_BROKER_RUN_AS) and <dir> is made 0711; run as
# another user, as that user. Limits: MQSEC_BROKER_START_TIMEOUT (120 s), _STOP_TIMEOUT (60 s).
# No rabbitmqctl VM in start or stop: ready means the node logged "Server startup complete" and
# its AMQP port accepts; stop is SIGTERM (RabbitMQ's clean shutdown). The policy mqsec-reply
# deletes a remote-read reply queue (mqsec.reply.*) unused for MQSEC_BROKER_REPLY_EXPIRES_MS
# (1000 ms).
# Measured on 2 cores, alternating with the rabbitmqctl version (load average 1.5-3.2): first
# start 8-9 s (was 9-12 s), start again about 7 s (unchanged: 6-7 s), stop 1.4-1.5 s (was
# 2-3.5 s); at load 3-6 first start 17-20 s, start again 14-17 s (after a SIGKILL 12 s), stop
# 1.6-2.5 s; status, depth, queues 0.4 s (were 2-3.6 s: rabbitmqctl, 1.3 s of CPU each).
set -euo pipefail

readonly RMQ_BIN=/usr/lib/rabbitmq/bin
readonly START_TIMEOUT=${MQSEC_BROKER_START_TIMEOUT:-120}
readonly STOP_TIMEOUT=${MQSEC_BROKER_STOP_TIMEOUT:-60}
readonly BROKER_USER=mqsec
# Remote read's reply queues (mqsec.reply.*): RabbitMQ 3.10's AMQP 1.0 plugin declares a queue a
# receiver attaches to without auto-delete, so a policy deletes each one this long after its
# reader went away (docs/remote.md, "Remote read").
readonly REPLY_EXPIRES_MS=${MQSEC_BROKER_REPLY_EXPIRES_MS:-1000}

die() { echo "broker.sh: $*" >&2; exit 1; }
usage() { die "usage: broker.sh start|stop|kill|status|watch|queues <dir> | depth <dir> <queue>"; }

[ $# -ge 2 ] || usage
cmd=$1
[ -n "$2" ] || usage
dir=$(realpath -m -- "$2")
node_dir=$dir/node
env_file=$dir/broker.env
pw_file=$dir/broker.pw

# Who runs the node: an unprivileged user, never root.
if [ "$(id -u)" -eq 0 ]; then
  run_user=${MQSEC_BROKER_RUN_AS:-rabbitmq}
  getent passwd "$run_user" >/dev/null || die "no user '$run_user' to run the node as"
  [ "$(id -u "$run_user")" -ne 0 ] || die "refusing to run the node as root"
  as_node() { setpriv --reuid="$run_user" --regid="$(id -g "$run_user")" --init-groups -- "$@"; }
else
  run_user=$(id -un)
  as_node() { "$@"; }
fi

# Values of broker.env without sourcing it (it is read by the C++ fixture too).
env_get() { sed -n "s/^$1=//p" "$env_file" 2>/dev/null | head -n 1; }

load_env() {
  [ -f "$env_file" ] || return 1
  PORT=$(env_get PORT); DIST_PORT=$(env_get DIST_PORT); EPMD_PORT=$(env_get EPMD_PORT)
  NODE=$(env_get NODE)
  [ -n "$PORT" ] && [ -n "$DIST_PORT" ] && [ -n "$EPMD_PORT" ] && [ -n "$NODE" ]
}

# The environment of every RabbitMQ and Erlang process of this node: nothing inherited.
rmq() {
  as_node env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME="$node_dir/home" LANG=C.UTF-8 \
    LC_ALL=C.UTF-8 \
    RABBITMQ_NODENAME="$NODE" RABBITMQ_USE_LONGNAME=false \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$PORT" \
    RABBITMQ_DIST_PORT="$DIST_PORT" ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT="$EPMD_PORT" \
    RABBITMQ_CONF_ENV_FILE="$node_dir/rabbitmq-env.conf" \
    RABBITMQ_CONFIG_FILE="$node_dir/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$node_dir/advanced.config" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$node_dir/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$node_dir/mnesia" RABBITMQ_LOG_BASE="$node_dir/log" \
    RABBITMQ_PID_FILE="$node_dir/rabbit.pid" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    "$@" 8>&-
}
ctl() { rmq timeout "$((STOP_TIMEOUT + 10))" "$RMQ_BIN/rabbitmqctl" -n "$NODE" -q "$@"; }

# A pid from a pid file, if that process is alive and is ours (its command line names `what`).
live_pid() {
  local file=$1 what=$2 pid
  pid=$(cat "$file" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$what" || return 1
  echo "$pid"
}
# The node's Erlang VM: its command line names this node's own HOME (so no other node matches)
# and RabbitMQ's boot (so none of the node's CLI tools match), also before it writes its pid file.
is_node_cmdline() {
  local -a args
  mapfile -d '' args 2>/dev/null <"$1" || return 1   # a builtin: no process per /proc entry
  [[ " ${args[*]} " == *beam.smp*" -home $node_dir/home "*" -s rabbit boot "* ]]
}
node_pid() {
  local pid f
  pid=$(cat "$node_dir/rabbit.pid" 2>/dev/null) || pid=
  if [[ $pid =~ ^[0-9]+$ ]] && is_node_cmdline "/proc/$pid/cmdline"; then echo "$pid"; return 0; fi
  for f in /proc/[0-9]*/cmdline; do
    is_node_cmdline "$f" || continue
    pid=${f#/proc/}; echo "${pid%/cmdline}"; return 0
  done
  return 1
}
epmd_pid() { live_pid "$node_dir/epmd.pid" "-port $EPMD_PORT"; }
wrapper_pid() { live_pid "$node_dir/wrapper.pid" rabbitmq-server; }

# Free ports on 127.0.0.1 below the ephemeral range (so that no outgoing connection takes one
# between a stop and the next start), avoiding the system broker's distribution port.
free_ports() {
  python3 - "$1" <<'EOF'
import random, socket, sys
want, found = int(sys.argv[1]), []
candidates = [p for p in range(20000, 32000) if not 25672 <= p <= 25699]
random.shuffle(candidates)
for port in candidates:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        found.append(port)
    except OSError:
        pass
    finally:
        s.close()
    if len(found) == want:
        break
print(" ".join(map(str, found)))
EOF
}

log_tail() {
  local f
  for f in "$node_dir/log/console.log" "$node_dir/log/$NODE.log"; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 40 "$f"; }
  done
}

init_dir() {
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then chmod 0711 "$dir"; fi
  if ! load_env; then
    local ports
    read -r -a ports <<<"$(free_ports 3)"
    [ ${#ports[@]} -eq 3 ] || die "no free ports on 127.0.0.1"
    PORT=${ports[0]} DIST_PORT=${ports[1]} EPMD_PORT=${ports[2]}
    NODE="mqsec-$PORT@localhost"
    local tmp=$env_file.tmp
    {
      echo "URL=amqp://127.0.0.1:$PORT"
      echo "PORT=$PORT"
      echo "USER=$BROKER_USER"
      echo "PASSWORD_FILE=$pw_file"
      echo "NODE=$NODE"
      echo "DIST_PORT=$DIST_PORT"
      echo "EPMD_PORT=$EPMD_PORT"
    } >"$tmp"
    mv -f "$tmp" "$env_file"
  fi
  if [ ! -s "$pw_file" ]; then
    (umask 077 && head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32 >"$pw_file.tmp")
    mv -f "$pw_file.tmp" "$pw_file"
  fi
  chmod 0600 "$pw_file"
  # The node's own files, owned by the user that runs it.
  if [ ! -d "$node_dir" ]; then
    mkdir -m 0700 "$node_dir"
    if [ "$(id -u)" -eq 0 ]; then chown "$run_user:$(id -g "$run_user")" "$node_dir"; fi
  fi
  as_node test -w "$node_dir" || die "$run_user cannot write $node_dir (is a parent of it private?)"
  as_node sh -c 'umask 077; mkdir -p "$1/home" "$1/mnesia" "$1/log"
    [ -s "$1/home/.erlang.cookie" ] || {
      head -c 256 /dev/urandom | base64 | tr -dc A-Z | head -c 20 >"$1/home/.erlang.cookie"; }
    chmod 0400 "$1/home/.erlang.cookie"
    : >"$1/rabbitmq-env.conf"
    printf "%s\n" "listeners.tcp.1 = 127.0.0.1:$2" \
      "amqp1_0.default_user = none" "log.file.level = info" "log.console = false" \
      "load_definitions = $1/defs.json" >"$1/rabbitmq.conf"' sh "$node_dir" "$PORT"
  # The plugin, enabled offline: the file `rabbitmq-plugins --offline enable` writes (without
  # the 2-3 s of starting that CLI tool).
  [ -d "$(echo /usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/rabbitmq_amqp1_0-*)" ] \
    || die "the rabbitmq_amqp1_0 plugin is not installed"
  as_node sh -c 'echo "[rabbitmq_amqp1_0]." >"$1"' sh "$node_dir/enabled_plugins"
  write_definitions
}

# The user, its permissions and the reply-queue policy, imported by the node at every boot
# (load_definitions in rabbitmq.conf) instead of four rabbitmqctl calls after the first start
# (each one a whole Erlang VM: seconds of CPU). The file holds the password's salted SHA-256 in
# RabbitMQ's own format (rabbit_password_hashing_sha256), never the password; it is written by
# the node's user, 0600. With definitions to load, a blank node seeds neither the vhost / nor the
# user guest: / comes from here and guest never exists.
write_definitions() {
  python3 - "$BROKER_USER" "$REPLY_EXPIRES_MS" 3<"$pw_file" <<'EOF' \
      | as_node sh -c 'umask 077; cat >"$1.tmp" && mv -f "$1.tmp" "$1"' sh "$node_dir/defs.json" \
    || die "cannot write $node_dir/defs.json"
import base64, hashlib, json, os, sys
user, expires = sys.argv[1], int(sys.argv[2])
with os.fdopen(3, "rb") as f:
    password = f.read()
salt = os.urandom(4)
digest = base64.b64encode(salt + hashlib.sha256(salt + password).digest()).decode()
json.dump({
    "vhosts": [{"name": "/"}],
    "users": [{"name": user, "password_hash": digest,
               "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}],
    "permissions": [{"user": user, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
    "policies": [{"vhost": "/", "name": "mqsec-reply", "pattern": r"^mqsec\.reply\.",
                  "apply-to": "queues", "definition": {"expires": expires}, "priority": 0}],
}, sys.stdout)
EOF
}

start_epmd() {
  epmd_pid >/dev/null && return 0
  # Its own epmd on its own port, 127.0.0.1 only; the pid is written by the process itself.
  rmq setsid sh -c 'echo $$ >"$1"; exec epmd -address 127.0.0.1 -port "$2"' sh \
    "$node_dir/epmd.pid" "$EPMD_PORT" </dev/null >>"$node_dir/log/epmd.log" 2>&1 8>&- &
  for _ in $(seq 50); do
    if epmd_pid >/dev/null && rmq epmd -port "$EPMD_PORT" -names >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "epmd did not start on 127.0.0.1:$EPMD_PORT"
}

print_url() { echo "amqp://127.0.0.1:$PORT"; }

# Starts the node (epmd first) and waits until it is ready; 1 if it is not.
launch() {
  do_stop >/dev/null 2>&1 || true   # a dead or half-started node: clear it away (data kept)
  start_epmd
  rm -f "$node_dir/rabbit.pid"
  # Only this boot's lines of the node's log count (a start again appends to it).
  local log=$node_dir/log/$NODE.log from
  from=$(stat -c %s "$log" 2>/dev/null) || from=0
  rmq setsid sh -c 'echo $$ >"$1"; shift; exec "$@"' sh "$node_dir/wrapper.pid" \
    "$RMQ_BIN/rabbitmq-server" </dev/null >>"$node_dir/log/console.log" 2>&1 8>&- &
  for _ in $(seq 50); do [ -s "$node_dir/wrapper.pid" ] && break; sleep 0.1; done
  # Ready when the node logs that its startup is complete (RabbitMQ, its plugin and its
  # listeners; what `rabbitmqctl wait` waits for, without starting that CLI VM) and its AMQP
  # port accepts a connection; failed as soon as the node's processes are gone.
  local deadline=$((SECONDS + START_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if [ -s "$node_dir/rabbit.pid" ] && booted_since "$log" "$from" \
        && (: <>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      return 0
    fi
    if ! wrapper_pid >/dev/null && ! node_pid >/dev/null; then return 1; fi
    sleep 0.2
  done
  return 1
}

# The node's log has "Server startup complete" after byte `from` (from 0 if it was truncated).
booted_since() {
  local log=$1 from=$2 size
  size=$(stat -c %s "$log" 2>/dev/null) || return 1
  [ "$size" -ge "$from" ] || from=0
  tail -c "+$((from + 1))" "$log" | grep -q 'Server startup complete'
}

not_ready() {
  echo "broker.sh: the node did not become ready (limit ${START_TIMEOUT}s)" >&2
  log_tail >&2
  do_stop >/dev/null 2>&1 || true
  exit 1
}

do_start() {
  init_dir
  if node_pid >/dev/null \
      && { erl_running || ctl await_startup --timeout 10 >/dev/null 2>&1; }; then
    print_url
    return 0
  fi
  if ! launch; then
    # Ports are free when chosen, not reserved: another node starting at the same moment may
    # take one. A node that never started gets new ports once.
    if [ -f "$node_dir/user-created" ] \
        || ! grep -qsiE 'eaddrinuse|already in use|port_already_used' "$node_dir"/log/*.log; then
      not_ready
    fi
    echo "broker.sh: a port was taken meanwhile; starting again on new ports" >&2
    do_stop >/dev/null 2>&1 || true
    rm -rf -- "$node_dir" "$env_file"
    init_dir
    launch || not_ready
  fi
  # The user, its permissions and the policy came from the definitions (write_definitions);
  # this marks a node that has started once (a port clash is then no longer retried).
  [ -f "$node_dir/user-created" ] || : >"$node_dir/user-created"
  print_url
}

kill_pid() {  # pid, then wait up to 5 s for it to go
  local pid=$1
  kill -KILL "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    [ -d "/proc/$pid" ] || return 0
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && return 0
    sleep 0.1
  done
}

do_stop() {
  load_env || return 0   # nothing was ever started here
  local pid
  if pid=$(node_pid); then
    kill -CONT "$pid" 2>/dev/null || true   # a test may have frozen it (SIGSTOP) and died
    # SIGTERM: RabbitMQ's own handler shuts the node down cleanly (what `rabbitmqctl shutdown`
    # asks for, without starting that CLI VM); bounded, then killed below.
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq "$((STOP_TIMEOUT * 10))"); do
      [ -d "/proc/$pid" ] || break
      [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
      sleep 0.1
    done
  fi
  if pid=$(node_pid); then kill_pid "$pid"; fi
  if pid=$(wrapper_pid); then kill_pid "$pid"; fi
  if pid=$(epmd_pid); then kill_pid "$pid"; fi
  # An epmd that a CLI tool started on our port by itself (never a name-based kill: other
  # nodes may run): the listener on our own port, if it is an epmd.
  for pid in $(ss -Hltnp "sport = :$EPMD_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 \
      | sort -u); do
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q epmd; then kill_pid "$pid"; fi
  done
  rm -f "$node_dir/rabbit.pid" "$node_dir/wrapper.pid" "$node_dir/epmd.pid"
}

do_kill() {
  load_env || return 0
  local pid
  if pid=$(node_pid); then kill_pid "$pid"; fi
  if pid=$(wrapper_pid); then kill_pid "$pid"; fi
}

# An expression evaluated on the node by erl_call (a small C program of erlang-base: no Erlang VM
# to start, unlike rabbitmqctl), connecting like the CLI tools (the node's own epmd, the cookie in
# its HOME, nothing on the command line). Prints the result, a string the expression returns
# hex-encoded (so that no quoting of Erlang's printer matters); fails if erl_call does, or if
# the node did not answer {ok, "<hex>"}.
erl_eval() {
  local out hex
  out=$(rmq timeout 20 /usr/lib/erlang/bin/erl_call -sname "$NODE" -timeout 15 -e <<<"$1" \
    2>/dev/null) || return 1
  case $out in
    '{ok, []}') return 0 ;;
    '{ok, "'*'"}') hex=${out#\{ok, \"}; hex=${hex%\"\}} ;;
    *) return 1 ;;
  esac
  [[ $hex =~ ^([0-9A-F]{2})+$ ]] || return 1
  # shellcheck disable=SC2001  # a pattern substitution with & needs bash 5.2's patsub_replacement
  printf '%b' "$(sed 's/../\\x&/g' <<<"$hex")"
}

# The node's rabbit application is running (rabbit:is_running/0).
erl_running() {
  [ "$(erl_eval 'binary_to_list(binary:encode_hex(atom_to_binary(rabbit:is_running()))).')" \
    = true ]
}

# Every queue of the vhost /: name, messages ready, durable, auto-delete, exclusive (the columns
# and values of rabbitmqctl list_queues).
erl_queues() {
  erl_eval 'Items = [name, messages_ready, durable, auto_delete, exclusive],
    Rows = [[proplists:get_value(K, I) || K <- Items]
            || I <- rabbit_amqqueue:info_all(<<"/">>, Items)],
    Text = [io_lib:format("~ts\t~w\t~w\t~w\t~w~n", [element(4, Q), R, D, A, E])
            || [Q, R, D, A, E] <- Rows],
    binary_to_list(binary:encode_hex(unicode:characters_to_binary(Text))).'
}

# status, depth and queues ask the node through erl_call, and through rabbitmqctl (a whole CLI
# VM: seconds of CPU) only if that did not answer.
do_status() {
  load_env || exit 3
  node_pid >/dev/null || exit 3
  erl_running || ctl await_startup --timeout 5 >/dev/null 2>&1 || exit 3
  print_url
}

list_queues() {
  node_pid >/dev/null || { echo "broker.sh: the node is not running" >&2; return 1; }
  erl_queues && return 0
  ctl list_queues --no-table-headers name messages_ready durable auto_delete exclusive
}

do_depth() {
  load_env || die "no node in $dir"
  local out
  out=$(list_queues) || die "list_queues failed"
  awk -F '\t' -v q="$1" '$1 == q { print $2; found = 1 } END { exit found ? 0 : 4 }' <<<"$out"
}

do_queues() {
  load_env || die "no node in $dir"
  list_queues || die "list_queues failed"
}

do_watch() {
  cat >/dev/null || true
  [ -d "$dir" ] || exit 0
  lock 2>/dev/null || exit 0
  do_stop >/dev/null 2>&1 || true
  case $dir in /|"") ;; *) [ -f "$env_file" ] && rm -rf -- "$dir" ;; esac
}

# start, stop, kill and watch's stop run one at a time per <dir> (a watchdog waits for a start
# under way, then stops what it started). Long-lived children never inherit the lock (8>&-).
lock() {
  exec 8>>"$dir/.lock" || die "cannot lock $dir"
  flock -w "$((START_TIMEOUT + 3 * STOP_TIMEOUT))" 8 || die "$dir is locked by another broker.sh"
}

case $cmd in
  start) [ $# -eq 2 ] || usage; mkdir -p "$dir"; lock; do_start ;;
  stop) [ $# -eq 2 ] || usage; [ -d "$dir" ] || exit 0; lock; do_stop ;;
  kill) [ $# -eq 2 ] || usage; [ -d "$dir" ] || exit 0; lock; do_kill ;;
  status) [ $# -eq 2 ] || usage; do_status ;;
  depth) [ $# -eq 3 ] || usage; do_depth "$3" ;;
  queues) [ $# -eq 2 ] || usage; do_queues ;;
  watch) [ $# -eq 2 ] || usage; do_watch ;;
  *) usage ;;
esac
