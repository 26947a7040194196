#!/usr/bin/env bash
# A local Apache Kafka broker for the distributed mode's tests, benchmarks
# and local runs: a single KRaft node (combined broker and controller) on
# loopback, assembled from Kafka's artifacts on Maven Central.
#
#   scripts/kafka.sh install          resolve Kafka into the cache (once per machine)
#   scripts/kafka.sh start DIR        format DIR if new, start a broker in the
#                                     background, print its bootstrap address
#   scripts/kafka.sh stop DIR         stop the broker of DIR (SIGTERM, then waits)
#   scripts/kafka.sh status DIR       whether it runs, and where
#   scripts/kafka.sh run DIR PORT CONTROLLER_PORT [ADVERTISED_PORT]
#                                     the same broker in the foreground (the
#                                     end-to-end tests that stop and restart
#                                     their own broker use this)
#
# The cache is $SHOP_KAFKA_HOME (default ~/.cache/shop/kafka-$KAFKA_VERSION):
# Maven copies kafka_2.13 and its dependencies, with a log4j2 binding for
# SLF4J (not a transitive dependency), into its libs/ from the pom.xml in
# scripts/kafka/. Nothing downloaded lands in the repository.
#
# The broker keeps its log, its settings and its own log file in DIR:
# warnings and errors go to DIR/kafka.log, and nothing to the terminal. Its
# heap is bounded (-Xmx512m; $SHOP_KAFKA_HEAP to change). Topics are never
# created on first use: the services create theirs.
#
# Source this file to get the functions (scripts/lib.sh does); run it to
# use the commands above.

KAFKA_POM="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka/pom.xml"
# The version is the pom's, which docker-compose.yml runs too.
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM")

kafka_say() {
    if [ -t 2 ]; then printf '\033[1m==> %s\033[0m\n' "$*" >&2; else printf '==> %s\n' "$*" >&2; fi
}

kafka_home() {
    printf '%s\n' "${SHOP_KAFKA_HOME:-$HOME/.cache/shop/kafka-$KAFKA_VERSION}"
}

# Resolves Kafka's jars into the cache, unless they are there already.
# Several callers at once (parallel tests) wait for one another.
kafka_install() {
    local home
    home=$(kafka_home)
    if [ -f "$home/libs/kafka_2.13-$KAFKA_VERSION.jar" ] && [ -f "$home/complete" ]; then
        return
    fi
    if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            kafka_say "installing Java and Maven to assemble Apache Kafka (Debian's openjdk-17-jdk-headless, maven)"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
        else
            kafka_say "Apache Kafka needs Java 17 or newer and Maven to assemble it: apt-get install openjdk-17-jdk-headless maven"
            return 1
        fi
    fi
    mkdir -p "$home"
    (
        flock 9
        if [ -f "$home/complete" ]; then
            exit 0
        fi
        kafka_say "resolving Apache Kafka $KAFKA_VERSION from Maven Central into $home (once)"
        rm -rf "$home/libs"
        mvn -q -B -f "$KAFKA_POM" dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$home/libs" >"$home/maven.log" 2>&1 || {
            kafka_say "Maven could not resolve Kafka; see $home/maven.log"
            exit 1
        }
        touch "$home/complete"
    ) 9>"$home/.lock"
}

# A TCP port on 127.0.0.1 that nothing listens on now.
kafka_free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return
        fi
    done
}

# Writes DIR/server.properties and DIR/log4j2.xml, and formats DIR/data as
# a new single-node cluster unless it is formatted already.
kafka_prepare() {
    local dir=$1 port=$2 controller=$3 advertised=$4 home
    home=$(kafka_home)
    mkdir -p "$dir"
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$advertised
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=2
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
EOF
    cat >"$dir/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <File name="file" fileName="$dir/kafka.log">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="warn"><AppenderRef ref="file"/></Root>
    <!-- One line when the broker is ready: the start-up waits for it. -->
    <Logger name="kafka.server.KafkaRaftServer" level="info"/>
  </Loggers>
</Configuration>
EOF
    if [ ! -f "$dir/data/meta.properties" ]; then
        java -Xmx128m -cp "$home/libs/*" -Dlog4j2.configurationFile="$dir/log4j2.xml" \
            kafka.tools.StorageTool format --cluster-id="$(kafka_cluster_id)" \
            --config "$dir/server.properties" >>"$dir/kafka.log" 2>&1 || {
            kafka_say "formatting the Kafka log dir $dir/data failed; see $dir/kafka.log"
            return 1
        }
    fi
}

# A new cluster id: 16 random bytes in URL-safe base64 without padding,
# the form Kafka's own `random-uuid` prints. It may begin with '-', so it is
# passed as --cluster-id=ID, never as a separate argument.
kafka_cluster_id() {
    head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'
}

kafka_java() {
    local dir=$1 home
    home=$(kafka_home)
    printf '%s\n' java "-Xmx${SHOP_KAFKA_HEAP:-512m}" "-Xms${SHOP_KAFKA_HEAP_MIN:-128m}" \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        "-Dlog4j2.configurationFile=$dir/log4j2.xml" -cp "$home/libs/*" \
        kafka.Kafka "$dir/server.properties"
}

# Runs the broker of DIR in the foreground on the given ports; clients are
# told to reach it at ADVERTISED_PORT (PORT unless given: a proxy in front).
kafka_run() {
    local dir=$1 port=$2 controller=$3 advertised=${4:-$2}
    kafka_install || return 1
    kafka_prepare "$dir" "$port" "$controller" "$advertised" || return 1
    local command
    mapfile -t command < <(kafka_java "$dir")
    exec "${command[@]}" >>"$dir/kafka.log" 2>&1 </dev/null
}

# Starts the broker of DIR in the background, waits until it serves, and
# prints its bootstrap address. Its ports are kept in DIR, so a second start
# of the same DIR (after a stop) serves the same address.
kafka_start() {
    local dir=$1 port controller
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if kafka_running "$dir"; then
        kafka_say "Kafka already runs for $dir (pid $(cat "$dir/kafka.pid"))"
        kafka_bootstrap "$dir"
        return
    fi
    if [ -f "$dir/ports" ]; then
        read -r port controller <"$dir/ports"
    else
        port=$(kafka_free_port)
        controller=$(kafka_free_port)
        while [ "$controller" = "$port" ]; do controller=$(kafka_free_port); done
        printf '%s %s\n' "$port" "$controller" >"$dir/ports"
    fi
    kafka_install || return 1
    kafka_prepare "$dir" "$port" "$controller" "$port" || return 1
    local command started
    started=$(wc -l <"$dir/kafka.log" 2>/dev/null || echo 0)
    mapfile -t command < <(kafka_java "$dir")
    setsid "${command[@]}" >>"$dir/kafka.log" 2>&1 </dev/null &
    echo $! >"$dir/kafka.pid"
    local waited=0
    until tail -n +"$((started + 1))" "$dir/kafka.log" | grep -q 'Kafka Server started'; do
        if ! kafka_running "$dir"; then
            kafka_say "Kafka exited while starting; the end of $dir/kafka.log:"
            tail -n 20 "$dir/kafka.log" >&2
            rm -f "$dir/kafka.pid"
            return 1
        fi
        if [ "$waited" -ge 1200 ]; then
            kafka_say "Kafka did not start within 120 s; see $dir/kafka.log"
            kafka_stop "$dir"
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    kafka_bootstrap "$dir"
}

kafka_bootstrap() {
    local port controller
    read -r port controller <"$1/ports"
    printf '127.0.0.1:%s\n' "$port"
}

# Whether the broker of DIR runs: its pid file names a live process that is
# this DIR's broker (a pid left by a crash may have been reused since).
kafka_running() {
    local dir pid
    dir=$(cd "$1" 2>/dev/null && pwd) || return 1
    [ -f "$dir/kafka.pid" ] || return 1
    pid=$(cat "$dir/kafka.pid")
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $dir/server.properties"
}

# Stops the broker of DIR: SIGTERM lets Kafka close its log cleanly; after
# 60 s it is killed.
kafka_stop() {
    local dir=$1 pid waited=0
    if ! kafka_running "$dir"; then
        rm -f "$dir/kafka.pid"
        return 0
    fi
    pid=$(cat "$dir/kafka.pid")
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$waited" -eq 600 ]; then
            kafka_say "Kafka (pid $pid) did not stop within 60 s; killing it"
            kill -KILL "$pid" 2>/dev/null
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$dir/kafka.pid"
}

kafka_main() {
    set -euo pipefail
    local usage="usage: scripts/kafka.sh install | start DIR | stop DIR | status DIR | run DIR PORT CONTROLLER_PORT [ADVERTISED_PORT]"
    case "${1:-}" in
        install) kafka_install ;;
        start) [ $# -eq 2 ] || { echo "$usage" >&2; exit 1; }; kafka_start "$2" ;;
        stop) [ $# -eq 2 ] || { echo "$usage" >&2; exit 1; }; kafka_stop "$2" ;;
        status)
            [ $# -eq 2 ] || { echo "$usage" >&2; exit 1; }
            if kafka_running "$2"; then
                echo "Kafka runs (pid $(cat "$2/kafka.pid")) at $(kafka_bootstrap "$2"); log $2/kafka.log"
            else
                echo "Kafka does not run for $2"
                exit 3
            fi
            ;;
        run) [ $# -ge 4 ] && [ $# -le 5 ] || { echo "$usage" >&2; exit 1; }; kafka_run "$2" "$3" "$4" "${5:-}" ;;
        -h | --help | help) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
        *) echo "$usage" >&2; exit 1 ;;
    esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    kafka_main "$@"
fi
