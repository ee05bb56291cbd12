#!/usr/bin/env bash
# A real Apache Kafka broker (KRaft, one node) on loopback, assembled from Maven Central.
#
#   kafka-local.sh fetch             resolve the jars with Maven into the cache (idempotent)
#   kafka-local.sh start STATE_DIR   format storage, start on free loopback ports, wait until it
#                                    serves; prints the bootstrap address (host:port)
#   kafka-local.sh stop STATE_DIR    stop it cleanly (SIGTERM, then SIGKILL after 30 s)
#   kafka-local.sh restart STATE_DIR stop it, then start it again with its data, on the same
#                                    ports (no formatting); prints the bootstrap address
#   kafka-local.sh status STATE_DIR  exit 0 and print the bootstrap address if it runs
#
# Environment: KAFKA_VERSION (default 4.0.0), INTENTWATCH_CACHE (default ~/.cache/intentwatch),
# KAFKA_HEAP (default -Xmx768m), KAFKA_PARTITIONS (default partitions of new topics, 4),
# KAFKA_SECURITY (default plaintext; scram-tls: clients must use SASL_SSL with SCRAM-SHA-512;
# a CA, the broker's certificate and the credentials are generated into STATE_DIR/secure, and
# the only other listener is the KRaft controller's, which serves no client requests).
# Needs Java 17+ and Maven. Nothing here needs Docker.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_VERSION="${KAFKA_VERSION:-4.0.0}"
CACHE="${INTENTWATCH_CACHE:-$HOME/.cache/intentwatch}"
LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"

die() { echo "kafka-local: $*" >&2; exit 1; }

need_tools() {
  command -v java >/dev/null || die "java not found (Java 17 or newer is needed)"
  command -v mvn >/dev/null || die "mvn not found (Maven is needed to fetch Kafka)"
}

fetch() {
  need_tools
  if [ -f "$LIBS/.complete" ]; then return 0; fi
  echo "kafka-local: fetching Apache Kafka $KAFKA_VERSION from Maven Central into $LIBS" >&2
  mkdir -p "$LIBS"
  mvn -q -B -f "$HERE/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIBS" >&2 \
    || die "Maven could not resolve Kafka $KAFKA_VERSION"
  ls "$LIBS"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null || die "kafka jar missing after fetch"
  touch "$LIBS/.complete"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir="$1"
  fetch
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if status "$dir" >/dev/null 2>&1; then cat "$dir/bootstrap"; return 0; fi
  local port cport
  port="$(free_port)"; cport="$(free_port)"
  while [ "$cport" = "$port" ]; do cport="$(free_port)"; done
  rm -rf "$dir/data" "$dir/server.log" "$dir/stdout.log" "$dir/secure"
  local scram=()
  if [ "${KAFKA_SECURITY:-plaintext}" = scram-tls ]; then
    secure_material "$dir/secure"
    scram=(--add-scram "SCRAM-SHA-512=[name=broker,password=$(cat "$dir/secure/broker.password")]"
           --add-scram "SCRAM-SHA-512=[name=$(cat "$dir/secure/username"),password=$(cat "$dir/secure/password")]")
  elif [ "${KAFKA_SECURITY:-plaintext}" != plaintext ]; then
    die "KAFKA_SECURITY must be plaintext or scram-tls, not ${KAFKA_SECURITY}"
  fi
  { if [ ${#scram[@]} -gt 0 ]; then secure_listeners "$dir/secure" "$port" "$cport"
    else plaintext_listeners "$port" "$cport"; fi
    cat <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
controller.listener.names=CONTROLLER
log.dirs=$dir/data
num.partitions=${KAFKA_PARTITIONS:-4}
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Lets test workers use short session timeouts (Faust with fast_rebalance asks for 2 s).
group.min.session.timeout.ms=500
PROPS
  } > "$dir/server.properties"
  cat > "$dir/log4j2.properties" <<'LOG'
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
LOG
  local java_opts=(-cp "$LIBS/*" -Dkafka.logs.dir="$dir" -Dlog4j2.configurationFile="$dir/log4j2.properties")
  java "${java_opts[@]}" kafka.tools.StorageTool format --standalone \
    -t "$(java "${java_opts[@]}" kafka.tools.StorageTool random-uuid)" \
    -c "$dir/server.properties" "${scram[@]}" > "$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "format failed"; }
  echo "127.0.0.1:$port" > "$dir/bootstrap"
  launch "$dir" 0 start
  if [ -d "$dir/secure" ]; then
    echo "kafka-local: SASL_SSL + SCRAM-SHA-512 on $(cat "$dir/bootstrap"); CA: $dir/secure/ca.pem;" \
      "user and password: $dir/secure/username, $dir/secure/password" >&2
  fi
  cat "$dir/bootstrap"
}

plaintext_listeners() {  # PORT CONTROLLER_PORT
  cat <<PROPS
listeners=PLAINTEXT://127.0.0.1:$1,CONTROLLER://127.0.0.1:$2
advertised.listeners=PLAINTEXT://127.0.0.1:$1
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
PROPS
}

secure_listeners() {  # SECURE_DIR PORT CONTROLLER_PORT
  # The broker talks to itself over the same SASL_SSL listener (user "broker"): no plaintext
  # port serves data. The controller listener stays plaintext on loopback (KRaft quorum only).
  local sec="$1"
  cat <<PROPS
listeners=SASL_SSL://127.0.0.1:$2,CONTROLLER://127.0.0.1:$3
advertised.listeners=SASL_SSL://127.0.0.1:$2
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$(cat "$sec/broker.password")";
ssl.keystore.type=PKCS12
ssl.keystore.location=$sec/broker.p12
ssl.keystore.password=$(cat "$sec/store.password")
ssl.key.password=$(cat "$sec/store.password")
ssl.truststore.type=PEM
ssl.truststore.location=$sec/ca.pem
PROPS
}

secure_material() {  # DIR: a fresh CA, the broker's certificate (127.0.0.1, localhost), passwords
  local sec="$1"
  command -v openssl >/dev/null || die "openssl not found (needed for KAFKA_SECURITY=scram-tls)"
  mkdir -p "$sec" && chmod 700 "$sec"
  openssl rand -hex 24 > "$sec/broker.password"
  openssl rand -hex 24 > "$sec/store.password"
  openssl rand -hex 24 > "$sec/password"
  echo intentwatch > "$sec/username"
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=intentwatch local CA" \
      -keyout "$sec/ca.key" -out "$sec/ca.pem"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout "$sec/broker.key" -out "$sec/broker.csr"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$sec/broker.ext"
    openssl x509 -req -days 30 -in "$sec/broker.csr" -CA "$sec/ca.pem" -CAkey "$sec/ca.key" \
      -CAcreateserial -extfile "$sec/broker.ext" -out "$sec/broker.pem"
    openssl pkcs12 -export -in "$sec/broker.pem" -inkey "$sec/broker.key" -certfile "$sec/ca.pem" \
      -out "$sec/broker.p12" -passout "pass:$(cat "$sec/store.password")"
  } > "$sec/openssl.log" 2>&1 || { cat "$sec/openssl.log" >&2; die "certificate generation failed"; }
  chmod 600 "$sec"/*
}

status() {
  local dir="$1"
  [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null || return 1
  cat "$dir/bootstrap"
}

stop() {
  local dir="$1" pid
  [ -f "$dir/pid" ] || return 0
  pid="$(cat "$dir/pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
}

# Keeps data, ports and configuration of an earlier `start`: the fault tests restart a broker
# under load and expect every record it had acknowledged to be there afterwards.
restart() {
  local dir="$1" started
  [ -f "$dir/server.properties" ] && [ -f "$dir/bootstrap" ] || die "no broker was started in $dir"
  dir="$(cd "$dir" && pwd)"
  stop "$dir"
  # The old log says "started" already: wait for one more such line than it has now.
  started="$(grep -c "Kafka Server started" "$dir/server.log" 2>/dev/null || true)"
  launch "$dir" "${started:-0}" restart
  cat "$dir/bootstrap"
}

launch() {  # DIR STARTED_LINES WHAT: run the broker, wait for one more "started" line in its log
  local dir="$1" before="$2" what="$3"
  local java_opts=(-cp "$LIBS/*" -Dkafka.logs.dir="$dir" -Dlog4j2.configurationFile="$dir/log4j2.properties")
  # setsid: the broker survives the shell that started it and gets its own process group.
  setsid java ${KAFKA_HEAP:--Xmx768m} -XX:+UseG1GC "${java_opts[@]}" kafka.Kafka "$dir/server.properties" \
    >> "$dir/stdout.log" 2>&1 < /dev/null &
  echo $! > "$dir/pid"
  local waited=0
  until [ "$(grep -c "Kafka Server started" "$dir/server.log" 2>/dev/null || true)" -gt "$before" ]; do
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      tail -n 30 "$dir/stdout.log" "$dir/server.log" >&2 2>/dev/null || true
      die "broker exited during $what"
    fi
    [ "$waited" -ge 600 ] && { stop "$dir"; die "broker did not $what within 60 s"; }
    sleep 0.1; waited=$((waited + 1))
  done
}

case "${1:-}" in
  fetch) fetch ;;
  start) [ $# -eq 2 ] || die "usage: $0 start STATE_DIR"; start "$2" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop STATE_DIR"; stop "$2" ;;
  restart) [ $# -eq 2 ] || die "usage: $0 restart STATE_DIR"; restart "$2" ;;
  status) [ $# -eq 2 ] || die "usage: $0 status STATE_DIR"; status "$2" ;;
  *) echo "usage: $0 {fetch|start DIR|stop DIR|restart DIR|status DIR}" >&2; exit 2 ;;
esac
