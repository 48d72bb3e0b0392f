#!/usr/bin/env bash
# A local Apache Kafka broker in KRaft mode (broker and controller in one JVM), from Maven Central jars.
#   kafka.sh fetch                          copy the broker jars into deploy/kafka/lib (once)
#   kafka.sh start PORT DATA_DIR [CTRL_PORT] format DATA_DIR if new, start, wait until it answers
#   kafka.sh stop DATA_DIR                  stop the broker started on DATA_DIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lib="$here/lib"

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
  if [ -f "$lib/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the Kafka jars"
  echo "kafka.sh: fetching the Apache Kafka broker jars from Maven Central" >&2
  (cd "$here" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$lib" -DincludeScope=runtime)
  touch "$lib/.complete"
}

java_args=(-Xms128m -Xmx512m -XX:+UseG1GC -XX:TieredStopAtLevel=1
  -Djava.awt.headless=true -Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$lib/*")

wait_port() {  # PORT SECONDS
  local deadline=$(( $(date +%s) + $2 ))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

start() {
  local port=${1:?PORT} data=${2:?DATA_DIR} ctrl=${3:-$(( ${1} + 1000 ))}
  fetch
  mkdir -p "$data"
  data="$(cd "$data" && pwd)"
  if [ -f "$data/broker.pid" ] && kill -0 "$(cat "$data/broker.pid")" 2>/dev/null; then
    echo "kafka.sh: broker already running on $data (pid $(cat "$data/broker.pid"))" >&2; return 0
  fi
  cat > "$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctrl
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctrl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data/logs
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=168
PROPS
  if [ ! -f "$data/logs/meta.properties" ]; then
    java "${java_args[@]}" kafka.tools.StorageTool format \
      -t "$(java "${java_args[@]}" kafka.tools.StorageTool random-uuid)" \
      -c "$data/server.properties" > "$data/format.log" 2>&1 || { cat "$data/format.log" >&2; die "format failed"; }
  fi
  nohup java "${java_args[@]}" kafka.Kafka "$data/server.properties" > "$data/broker.log" 2>&1 &
  echo $! > "$data/broker.pid"
  if ! wait_port "$port" 60; then
    tail -30 "$data/broker.log" >&2; die "broker on port $port did not come up in 60 s"
  fi
  echo "kafka.sh: broker up on 127.0.0.1:$port (data $data)" >&2
}

stop() {
  local data=${1:?DATA_DIR} pid
  [ -f "$data/broker.pid" ] || return 0
  pid=$(cat "$data/broker.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$data/broker.pid"
}

case "${1:-}" in
  fetch) fetch ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) die "usage: kafka.sh fetch | start PORT DATA_DIR [CTRL_PORT] | stop DATA_DIR" ;;
esac
