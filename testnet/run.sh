#!/usr/bin/env bash
# A local Chorus testnet: N chorusd processes on loopback, one genesis, a funded keystore.
#
#   testnet/run.sh start --engine pow|pos|dpos|raft --nodes 3 [--base-port 40000] [--miners 1]
#                        [--prometheus]
#   testnet/run.sh status | stop | clean | logs K
#   testnet/run.sh kill K | restart K | pause K | resume K | partition 1,2 3 | heal
#
# Node K (1-based) listens on p2p BASE+10K, RPC BASE+10K+1, metrics BASE+10K+2 and serves its
# explorer page on BASE+10K+3 (each checked free before anything starts). With --prometheus, a Prometheus server (Debian's prometheus
# package) scrapes every node's metrics and answers on BASE+9; testnet/dashboard.json is a
# Grafana dashboard of its data. State lives in $CHORUS_TESTNET_DIR (default testnet/.data).
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

# rpc PORT METHOD [JSON-PARAMS [TOKEN-FILE]] -> the result as JSON, or exit 1. TOKEN-FILE, the
# node's rpc-admin.token, is sent as a bearer token (admin methods need it).
rpc() {
  python3 - "$1" "$2" "${3:-[]}" "${4:-}" <<'PY'
import json, sys, urllib.request
port, method, params, token_file = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
headers = {"content-type": "application/json"}
try:
    if token_file:
        with open(token_file) as file:
            headers["authorization"] = "Bearer " + file.read().strip()
    request = urllib.request.Request(f"http://127.0.0.1:{port}", body, headers)
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
explorer_port() { echo $(( $(setting base_port) + 10 * $1 + 3 )); }
prometheus_port() { echo $(( $(setting base_port) + 9 )); }

# alive K: node K's recorded process runs, and is that node's chorusd (its data directory is on
# the command line), so a pid reused by another program after a crash is never signalled.
alive() {
  local dir; dir="$(node_dir "$1")"
  [ -f "$dir/pid" ] || return 1
  local args; args="$(ps -p "$(cat "$dir/pid")" -o args= 2>/dev/null)" || return 1
  case "$args" in *chorusd*"$dir/chain"*) return 0 ;; *) return 1 ;; esac
}

launch() {
  local k="$1" dir; dir="$(node_dir "$k")"
  local bin; bin="$(setting bin_dir)"
  local args=(run --genesis "$data/genesis.json" --data-dir "$dir/chain" --key "$dir/node.key"
    --listen "/ip4/127.0.0.1/tcp/$(p2p_port "$k")" --rpc "127.0.0.1:$(rpc_port "$k")"
    --metrics "127.0.0.1:$(metrics_port "$k")" --explorer "127.0.0.1:$(explorer_port "$k")")
  # Every other node is a bootnode: whichever restarts finds the others again. Bootnodes are
  # redialed while a node has no peer, so one that is not listening yet is no race.
  for j in $(seq 1 "$(setting nodes)"); do
    [ "$j" -eq "$k" ] || args+=(--bootnode "/ip4/127.0.0.1/tcp/$(p2p_port "$j")/p2p/$(cat "$(node_dir "$j")/peer_id")")
  done
  if [ "$k" -le "$(setting miners)" ]; then
    args+=(--mine --coinbase "$(cat "$dir/address")")
  fi
  nohup "$bin/chorusd" "${args[@]}" >>"$dir/node.log" 2>&1 &
  echo $! >"$dir/pid"
}

# Prometheus, when the testnet has it: its configuration, database, log and pid live in
# $data/prometheus. It scrapes every node every 2 s (blocks come every second), each target
# labelled node="K", and keeps a day of samples.
prometheus_dir() { echo "$data/prometheus"; }

prometheus_alive() {
  local dir; dir="$(prometheus_dir)"
  [ -f "$dir/pid" ] || return 1
  local args; args="$(ps -p "$(cat "$dir/pid")" -o args= 2>/dev/null)" || return 1
  case "$args" in *prometheus*"$dir/"*) return 0 ;; *) return 1 ;; esac
}

launch_prometheus() {
  [ "$(setting prometheus)" = 1 ] || return 0
  command -v prometheus >/dev/null 2>&1 \
    || die "--prometheus needs a Prometheus server on the PATH: apt-get install prometheus (Debian's package)"
  local dir port; dir="$(prometheus_dir)"; port="$(prometheus_port)"
  mkdir -p "$dir"
  {
    printf 'global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n  evaluation_interval: 2s\n'
    printf 'scrape_configs:\n  - job_name: chorus\n    static_configs:\n'
    for k in $(seq 1 "$(setting nodes)"); do
      printf "      - targets: ['127.0.0.1:%s']\n        labels: {node: '%s'}\n" "$(metrics_port "$k")" "$k"
    done
  } >"$dir/prometheus.yml"
  nohup prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --storage.tsdb.retention.time=1d --web.listen-address="127.0.0.1:$port" >>"$dir/prometheus.log" 2>&1 &
  echo $! >"$dir/pid"
  local deadline=$(( SECONDS + 60 ))
  until python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
      "http://127.0.0.1:$port/-/ready" 2>/dev/null; do
    prometheus_alive || die "prometheus exited; its log: $dir/prometheus.log"
    [ $SECONDS -lt $deadline ] || die "prometheus not ready after 60 s; its log: $dir/prometheus.log"
    sleep 0.2
  done
  echo "run.sh: prometheus scrapes the nodes at http://127.0.0.1:$port (Grafana: import testnet/dashboard.json)"
}

stop_prometheus() {
  prometheus_alive || return 0
  terminate "$(prometheus_dir)/pid"
}

# wait_ready K PEERS: polls node K until its RPC answers and it has at least PEERS peers.
wait_ready() {
  local k="$1" want="$2" deadline=$(( SECONDS + 90 ))
  until status="$(rpc "$(rpc_port "$k")" node_status)" \
      && python3 -c "import json,sys; sys.exit(0 if json.loads(sys.argv[1])['peers'] >= int(sys.argv[2]) else 1)" "$status" "$want"; do
    alive "$k" || die "node $k exited; its log: $(node_dir "$k")/node.log"
    [ $SECONDS -lt $deadline ] || die "node $k not ready (wanted $want peers) after 90 s; its log: $(node_dir "$k")/node.log"
    sleep 0.2
  done
}

# The most peers start waits for each node to see, in a testnet too large for every node to see all.
peers_target=25

# Starts every node and waits until each answers and sees all the others (up to peers_target).
# Node 1 first, so the others find a listening bootnode at once.
launch_all() {
  local nodes; nodes="$(setting nodes)"
  rm -f "$data/partition"
  local want=$(( nodes - 1 < peers_target ? nodes - 1 : peers_target ))
  for k in $(seq 1 "$nodes"); do
    launch "$k"
    if [ "$k" -eq 1 ]; then wait_ready 1 0; fi
  done
  for k in $(seq 1 "$nodes"); do wait_ready "$k" "$want"; done
}

# group_of K: the nodes on K's side of the partition in force (all nodes without one).
group_of() {
  if [ -f "$data/partition" ]; then
    for group in $(cat "$data/partition"); do
      case ",$group," in *",$1,"*) echo "${group//,/ }"; return ;; esac
    done
  fi
  seq 1 "$(setting nodes)"
}

# restart K: stop and start node K; a partition in force applies to it again (the others still
# refuse it; it must refuse them), and it waits for a peer if its side has another live node.
restart_node() {
  local k="$1" side others=0
  stop_node "$k"
  launch "$k"
  wait_ready "$k" 0
  side=" $(group_of "$k" | tr '\n' ' ') "
  for j in $(seq 1 "$(setting nodes)"); do
    [ "$j" -ne "$k" ] || continue
    case "$side" in
      *" $j "*) alive "$j" && others=$(( others + 1 )) ;;
      *) admin_pair "$k" "$j" admin_banPeer ;;
    esac
  done
  wait_ready "$k" $(( others > 0 ? 1 : 0 ))
  echo "run.sh: node $k restarted"
}

start() {
  local engine="" nodes="" base_port=40000 miners=1 prometheus=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --engine) engine="$2"; shift 2 ;;
      --nodes) nodes="$2"; shift 2 ;;
      --base-port) base_port="$2"; shift 2 ;;
      --miners) miners="$2"; shift 2 ;;
      --prometheus) prometheus=1; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  if [ -f "$data/testnet.env" ]; then
    # A stopped testnet starts again on its data, with the settings it was made with.
    for k in $(seq 1 "$(setting nodes)"); do
      alive "$k" && die "node $k of the testnet in $data is running: run.sh stop first (or run.sh clean to start over)"
    done
    launch_all
    launch_prometheus
    echo "run.sh: restarted the $(setting nodes) nodes in $data"
    status
    return
  fi
  [ -n "$engine" ] && [ -n "$nodes" ] || die "usage: run.sh start --engine pow|pos|dpos|raft --nodes N [--base-port P] [--miners M] [--prometheus]"
  case "$engine" in
    pow|pos|dpos|raft) ;;
    *) die "unknown engine $engine; expected pow, pos, dpos or raft" ;;
  esac
  [ "$nodes" -ge 1 ] 2>/dev/null || die "--nodes must be a positive number"

  for k in $(seq 1 "$nodes"); do
    for port in $(( base_port + 10 * k )) $(( base_port + 10 * k + 1 )) $(( base_port + 10 * k + 2 )) $(( base_port + 10 * k + 3 )); do
      port_free "$port" || die "port $port (node $k) is in use; choose another --base-port"
    done
  done
  if [ "$prometheus" = 1 ]; then
    port_free $(( base_port + 9 )) || die "port $(( base_port + 9 )) (prometheus) is in use; choose another --base-port"
  fi
  local bin; bin="$(bins)"
  [ -x "$bin/chorusd" ] && [ -x "$bin/chorus" ] || die "no chorusd and chorus in $bin"
  mkdir -p "$data"
  printf 'engine=%s\nnodes=%s\nbase_port=%s\nminers=%s\nbin_dir=%s\nprometheus=%s\n' \
    "$engine" "$nodes" "$base_port" "$miners" "$bin" "$prometheus" >"$data/testnet.env"

  # Keys: a node key per node, and funded wallet keys in the testnet keystore.
  # Under pos every node is a validator with equal stake, under dpos a delegate approving itself
  # with equal stake (so each is a producer); either way with funds to pay for the evidence
  # transactions it submits. Under raft every node is a member, node K with member id K.
  local accounts=() validators=()
  for k in $(seq 1 "$nodes"); do
    local dir; dir="$(node_dir "$k")"
    mkdir -p "$dir"
    local out; out="$("$bin/chorusd" key generate --out "$dir/node.key")"
    echo "$out" | awk '/^peer id:/ {print $3}' >"$dir/peer_id"
    echo "$out" | awk '/^address:/ {print $2}' >"$dir/address"
    local funded; funded="$(CHORUS_PASSWORD="$password" "$bin/chorus" --json --keystore "$data/keystore" wallet new "funded$k")"
    accounts+=(--account "$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['address'])" "$funded")=1000000000000")
    case "$engine" in
      pos) validators+=(--validator "$(cat "$dir/address")=1000000") ;;
      dpos) validators+=(--delegate "$(cat "$dir/address")=1000000") ;;
      raft) validators+=(--member "$(cat "$dir/address")") ;;
    esac
    if [ "$engine" != pow ]; then accounts+=(--account "$(cat "$dir/address")=1000000000"); fi
  done
  "$bin/chorusd" genesis new --chain-id chorus-testnet --engine "$engine" --block-time-ms 1000 \
    "${accounts[@]}" "${validators[@]}" --out "$data/genesis.json" >/dev/null

  launch_all
  launch_prometheus
  echo "run.sh: $nodes $engine nodes are up (state in $data)"
  echo "  explorer pages: node 1 at http://127.0.0.1:$(explorer_port 1)/, node K on port $base_port+10K+3"
  echo "  point chorus at node K with:"
  echo "    export CHORUS_RPC_URL=http://127.0.0.1:$(rpc_port 1) CHORUS_KEYSTORE=$data/keystore CHORUS_PASSWORD=$password"
  echo "    $bin/chorus wallet list      # funded1..funded$nodes"
  status
}

# status: one line per node. "proposer" is who made the head block (the miner under PoW): a
# node of this testnet by number, or another address. "role" is the node's part under raft
# (leader, follower, learner, or electing while it knows no leader); "-" under other engines.
status() {
  [ -f "$data/testnet.env" ] || die "no testnet in $data"
  local nodes; nodes="$(setting nodes)"
  local addresses=()
  for k in $(seq 1 "$nodes"); do addresses+=("$(cat "$(node_dir "$k")/address")"); done
  if [ "$(setting prometheus)" = 1 ]; then
    local state=stopped
    prometheus_alive && state="pid $(cat "$(prometheus_dir)/pid")"
    echo "prometheus: http://127.0.0.1:$(prometheus_port) ($state)"
  fi
  printf '%-5s %-6s %-8s %-9s %-6s %-8s %-9s %-8s %-16s %s\n' node engine head finalized peers syncing proposer pid rpc role
  for k in $(seq 1 "$nodes"); do
    local pid="-" row="- - - - - - -"
    alive "$k" && pid="$(cat "$(node_dir "$k")/pid")"
    if [ "$pid" != "-" ] && s="$(rpc "$(rpc_port "$k")" node_status)" \
        && b="$(rpc "$(rpc_port "$k")" chain_getBlock "[$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['head']['height'])" "$s")]")" \
        && v="$(rpc "$(rpc_port "$k")" consensus_validators)"; then
      row="$(python3 - "$s" "$b" "$v" "${addresses[@]}" <<'PY'
import json, sys
s, block, validators, addresses = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4:]
f = s["finalized"]
proposer = block["proposer"] if block else None
who = f"node{addresses.index(proposer) + 1}" if proposer in addresses else (proposer or "-")[:9]
role = "-"
raft = validators.get("raft")
if raft:
    mine = [m for m in raft["members"] if m["id"] == raft["memberId"]]
    if not mine:
        role = "not-a-member"
    elif mine[0]["role"] == "learner":
        role = "learner"
    elif raft["leader"] is None:
        role = "electing"
    else:
        role = "leader" if raft["leader"] == raft["memberId"] else "follower"
print(s["engine"], s["head"]["height"], f["height"] if f else "-", s["peers"], str(s["syncing"]).lower(), who, role)
PY
)"
    fi
    read -r engine head finalized peers syncing proposer role <<<"$row"
    printf '%-5s %-6s %-8s %-9s %-6s %-8s %-9s %-8s %-16s %s\n' "$k" "$engine" "$head" "$finalized" "$peers" "$syncing" "$proposer" "$pid" "127.0.0.1:$(rpc_port "$k")" "$role"
  done
}

signal_node() {
  local k="$1" signal="$2"
  alive "$k" || die "node $k is not running"
  kill "-$signal" "$(cat "$(node_dir "$k")/pid")"
}

# terminate PIDFILE: SIGTERM to the process it names (resumed first, if paused), SIGKILL after
# 15 s; then the file goes. Callers check first that the process is the one they started.
terminate() {
  local pid; pid="$(cat "$1")"
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid"
  local deadline=$(( SECONDS + 15 ))
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { kill -KILL "$pid" 2>/dev/null || true; break; }
    sleep 0.1
  done
  rm -f "$1"
}

stop_node() {
  alive "$1" || return 0
  terminate "$(node_dir "$1")/pid"
}

stop() {
  [ -f "$data/testnet.env" ] || return 0
  for k in $(seq 1 "$(setting nodes)"); do stop_node "$k"; done
  stop_prometheus
  rm -f "$data/partition" # bans live in the processes
  echo "run.sh: stopped; the data stays in $data (run.sh clean removes it)"
}

node_arg() {
  [ -f "$data/testnet.env" ] || die "no testnet in $data"
  [ -n "${1:-}" ] && [ "$1" -ge 1 ] 2>/dev/null && [ "$1" -le "$(setting nodes)" ] || die "node must be 1..$(setting nodes)"
}

# admin_pair A B METHOD: node A calls METHOD on node B's peer id (admin RPC: loopback only, with
# node A's admin token from its data directory).
admin_pair() {
  rpc "$(rpc_port "$1")" "$3" "[\"$(cat "$(node_dir "$2")/peer_id")\"]" "$(node_dir "$1")/chain/rpc-admin.token" >/dev/null \
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
  echo "${groups[*]}" >"$data/partition"
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
  rm -f "$data/partition"
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
  restart) node_arg "${1:-}"; restart_node "$1" ;;
  pause) node_arg "${1:-}"; signal_node "$1" STOP ;;
  resume) node_arg "${1:-}"; signal_node "$1" CONT ;;
  partition) partition "$@" ;;
  heal) heal ;;
  *) die "usage: run.sh start|status|stop|clean|logs K|kill K|restart K|pause K|resume K|partition 1,2 3|heal" ;;
esac
