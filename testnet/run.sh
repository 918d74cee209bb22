#!/usr/bin/env bash
# A local Chorus testnet: N chorusd processes on loopback, one genesis, a funded keystore.
#
#   testnet/run.sh start --engine pow --nodes 3 [--base-port 40000] [--miners 1]
#   testnet/run.sh status | stop | clean | logs K
#   testnet/run.sh kill K | restart K | pause K | resume K | partition 1,2 3 | heal
#
# Node K (1-based) listens on p2p BASE+10K, RPC BASE+10K+1, metrics BASE+10K+2 (each checked
# free before anything starts). State lives in $CHORUS_TESTNET_DIR (default testnet/.data).
# Binaries are built in release into $CHORUS_RELEASE_TARGET (default ~/.cache/chorus-release-target)
# unless $CHORUS_BIN_DIR points at a directory that already holds chorusd and chorus.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
data="${CHORUS_TESTNET_DIR:-$here/.data}"
password="testnet"

die() { echo "run.sh: $*" >&2; exit 1; }

bins() {
  if [ -n "${CHORUS_BIN_DIR:-}" ]; then
    echo "$CHORUS_BIN_DIR"
    return
  fi
  local target="${CHORUS_RELEASE_TARGET:-$HOME/.cache/chorus-release-target}"
  "$root/.ci/setup" >&2
  echo "run.sh: building chorusd and chorus (release; RocksDB takes ~11 minutes the first time)" >&2
  CARGO_TARGET_DIR="$target" cargo build --release --locked -p chorus-node -p chorus-cli --manifest-path "$root/Cargo.toml" >&2
  echo "$target/release"
}

# rpc PORT METHOD [JSON-PARAMS] -> the result as JSON, or exit 1.
rpc() {
  python3 - "$1" "$2" "${3:-[]}" <<'PY'
import json, sys, urllib.request
port, method, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
request = urllib.request.Request(f"http://127.0.0.1:{port}", body, {"content-type": "application/json"})
try:
    reply = json.load(urllib.request.urlopen(request, timeout=5))
except Exception:
    sys.exit(1)
if "error" in reply:
    sys.exit(1)
print(json.dumps(reply["result"]))
PY
}

port_free() {
  python3 -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1])))" "$1" 2>/dev/null
}

node_dir() { echo "$data/node$1"; }
setting() { grep "^$1=" "$data/testnet.env" | cut -d= -f2-; }
p2p_port() { echo $(( $(setting base_port) + 10 * $1 )); }
rpc_port() { echo $(( $(setting base_port) + 10 * $1 + 1 )); }
metrics_port() { echo $(( $(setting base_port) + 10 * $1 + 2 )); }

alive() {
  local pid_file; pid_file="$(node_dir "$1")/pid"
  [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

launch() {
  local k="$1" dir; dir="$(node_dir "$k")"
  local bin; bin="$(setting bin_dir)"
  local args=(run --genesis "$data/genesis.json" --data-dir "$dir/chain" --key "$dir/node.key"
    --listen "/ip4/127.0.0.1/tcp/$(p2p_port "$k")" --rpc "127.0.0.1:$(rpc_port "$k")"
    --metrics "127.0.0.1:$(metrics_port "$k")")
  if [ "$k" -gt 1 ]; then
    args+=(--bootnode "/ip4/127.0.0.1/tcp/$(p2p_port 1)/p2p/$(cat "$(node_dir 1)/peer_id")")
  fi
  if [ "$k" -le "$(setting miners)" ]; then
    args+=(--mine --coinbase "$(cat "$dir/address")")
  fi
  nohup "$bin/chorusd" "${args[@]}" >>"$dir/node.log" 2>&1 &
  echo $! >"$dir/pid"
}

wait_ready() {
  local k="$1" nodes="$2" deadline=$(( SECONDS + 90 ))
  until status="$(rpc "$(rpc_port "$k")" node_status)" \
      && python3 -c "import json,sys; s=json.loads(sys.argv[1]); sys.exit(0 if s['peers'] >= min(1, int(sys.argv[2]) - 1) else 1)" "$status" "$nodes"; do
    alive "$k" || die "node $k exited; its log: $(node_dir "$k")/node.log"
    [ $SECONDS -lt $deadline ] || die "node $k not ready after 90 s; its log: $(node_dir "$k")/node.log"
    sleep 0.2
  done
}

# Starts every node and waits until each answers and sees its peers. Node 1 is everyone's
# bootnode: the others start once it listens.
launch_all() {
  local nodes; nodes="$(setting nodes)"
  for k in $(seq 1 "$nodes"); do
    launch "$k"
    if [ "$k" -eq 1 ]; then wait_ready 1 1; fi
  done
  for k in $(seq 1 "$nodes"); do wait_ready "$k" "$nodes"; done
}

start() {
  local engine="" nodes="" base_port=40000 miners=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --engine) engine="$2"; shift 2 ;;
      --nodes) nodes="$2"; shift 2 ;;
      --base-port) base_port="$2"; shift 2 ;;
      --miners) miners="$2"; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  if [ -f "$data/testnet.env" ]; then
    # A stopped testnet starts again on its data, with the settings it was made with.
    for k in $(seq 1 "$(setting nodes)"); do
      alive "$k" && die "node $k of the testnet in $data is running: run.sh stop first (or run.sh clean to start over)"
    done
    launch_all
    echo "run.sh: restarted the $(setting nodes) nodes in $data"
    status
    return
  fi
  [ -n "$engine" ] && [ -n "$nodes" ] || die "usage: run.sh start --engine pow --nodes N [--base-port P] [--miners M]"
  case "$engine" in
    pow) ;;
    pos|dpos|raft) die "engine $engine is not implemented yet; only pow runs today" ;;
    *) die "unknown engine $engine; expected pow, pos, dpos or raft" ;;
  esac
  [ "$nodes" -ge 1 ] 2>/dev/null || die "--nodes must be a positive number"

  for k in $(seq 1 "$nodes"); do
    for port in $(( base_port + 10 * k )) $(( base_port + 10 * k + 1 )) $(( base_port + 10 * k + 2 )); do
      port_free "$port" || die "port $port (node $k) is in use; choose another --base-port"
    done
  done
  local bin; bin="$(bins)"
  [ -x "$bin/chorusd" ] && [ -x "$bin/chorus" ] || die "no chorusd and chorus in $bin"
  mkdir -p "$data"
  printf 'engine=%s\nnodes=%s\nbase_port=%s\nminers=%s\nbin_dir=%s\n' "$engine" "$nodes" "$base_port" "$miners" "$bin" >"$data/testnet.env"

  # Keys: a node key per node, and funded wallet keys in the testnet keystore.
  local accounts=()
  for k in $(seq 1 "$nodes"); do
    local dir; dir="$(node_dir "$k")"
    mkdir -p "$dir"
    local out; out="$("$bin/chorusd" key generate --out "$dir/node.key")"
    echo "$out" | awk '/^peer id:/ {print $3}' >"$dir/peer_id"
    echo "$out" | awk '/^address:/ {print $2}' >"$dir/address"
    local funded; funded="$(CHORUS_PASSWORD="$password" "$bin/chorus" --json --keystore "$data/keystore" wallet new "funded$k")"
    accounts+=(--account "$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['address'])" "$funded")=1000000000000")
  done
  "$bin/chorusd" genesis new --chain-id chorus-testnet --block-time-ms 1000 "${accounts[@]}" --out "$data/genesis.json" >/dev/null

  launch_all
  echo "run.sh: $nodes $engine nodes are up (state in $data)"
  echo "  point chorus at node K with:"
  echo "    export CHORUS_RPC_URL=http://127.0.0.1:$(rpc_port 1) CHORUS_KEYSTORE=$data/keystore CHORUS_PASSWORD=$password"
  echo "    $bin/chorus wallet list      # funded1..funded$nodes"
  status
}

status() {
  [ -f "$data/testnet.env" ] || die "no testnet in $data"
  printf '%-5s %-6s %-8s %-9s %-6s %-8s %-8s %s\n' node engine head finalized peers syncing pid rpc
  for k in $(seq 1 "$(setting nodes)"); do
    local pid="-" head="-" finalized="-" peers="-" syncing="-" engine="-"
    alive "$k" && pid="$(cat "$(node_dir "$k")/pid")"
    if [ "$pid" != "-" ] && s="$(rpc "$(rpc_port "$k")" node_status)"; then
      read -r engine head finalized peers syncing < <(python3 -c "
import json,sys; s=json.loads(sys.argv[1]); f=s['finalized']
print(s['engine'], s['head']['height'], f['height'] if f else '-', s['peers'], str(s['syncing']).lower())" "$s")
    fi
    printf '%-5s %-6s %-8s %-9s %-6s %-8s %-8s %s\n' "$k" "$engine" "$head" "$finalized" "$peers" "$syncing" "$pid" "127.0.0.1:$(rpc_port "$k")"
  done
}

signal_node() {
  local k="$1" signal="$2"
  alive "$k" || die "node $k is not running"
  kill "-$signal" "$(cat "$(node_dir "$k")/pid")"
}

stop_node() {
  local k="$1"
  alive "$k" || return 0
  local pid; pid="$(cat "$(node_dir "$k")/pid")"
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid"
  local deadline=$(( SECONDS + 15 ))
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { kill -KILL "$pid" 2>/dev/null || true; break; }
    sleep 0.1
  done
  rm -f "$(node_dir "$k")/pid"
}

stop() {
  [ -f "$data/testnet.env" ] || return 0
  for k in $(seq 1 "$(setting nodes)"); do stop_node "$k"; done
  echo "run.sh: stopped; the data stays in $data (run.sh clean removes it)"
}

node_arg() {
  [ -f "$data/testnet.env" ] || die "no testnet in $data"
  [ -n "${1:-}" ] && [ "$1" -ge 1 ] 2>/dev/null && [ "$1" -le "$(setting nodes)" ] || die "node must be 1..$(setting nodes)"
}

# admin_pair A B METHOD: node A calls METHOD on node B's peer id (admin RPC, loopback only).
admin_pair() {
  rpc "$(rpc_port "$1")" "$3" "[\"$(cat "$(node_dir "$2")/peer_id")\"]" >/dev/null \
    || die "node $1's admin RPC refused $3 (is it running?)"
}

# partition 1,2 3: the groups stop talking to each other (each side bans the other's peers).
partition() {
  [ $# -ge 2 ] || die "usage: run.sh partition 1,2 3[,4]..."
  local groups=("$@")
  for i in "${!groups[@]}"; do
    for j in "${!groups[@]}"; do
      [ "$i" -lt "$j" ] || continue
      for a in ${groups[$i]//,/ }; do
        node_arg "$a"
        for b in ${groups[$j]//,/ }; do
          node_arg "$b"
          admin_pair "$a" "$b" admin_banPeer
          admin_pair "$b" "$a" admin_banPeer
        done
      done
    done
  done
  echo "run.sh: partitioned ${groups[*]}"
}

# heal: every node lifts every ban on the others (and redials them).
heal() {
  [ -f "$data/testnet.env" ] || die "no testnet in $data"
  local nodes; nodes="$(setting nodes)"
  for a in $(seq 1 "$nodes"); do
    alive "$a" || continue
    for b in $(seq 1 "$nodes"); do
      if [ "$a" -ne "$b" ]; then admin_pair "$a" "$b" admin_unbanPeer; fi
    done
  done
  echo "run.sh: healed"
}

command="${1:-}"
shift || true
case "$command" in
  start) start "$@" ;;
  status) status ;;
  stop) stop ;;
  clean) stop >/dev/null; rm -rf "$data"; echo "run.sh: removed $data" ;;
  logs) node_arg "${1:-}"; tail -n "${2:-100}" "$(node_dir "$1")/node.log" ;;
  kill) node_arg "${1:-}"; signal_node "$1" KILL; rm -f "$(node_dir "$1")/pid" ;;
  restart) node_arg "${1:-}"; stop_node "$1"; launch "$1"; wait_ready "$1" "$(setting nodes)"; echo "run.sh: node $1 restarted" ;;
  pause) node_arg "${1:-}"; signal_node "$1" STOP ;;
  resume) node_arg "${1:-}"; signal_node "$1" CONT ;;
  partition) partition "$@" ;;
  heal) heal ;;
  *) die "usage: run.sh start|status|stop|clean|logs K|kill K|restart K|pause K|resume K|partition 1,2 3|heal" ;;
esac
