#!/bin/sh
# {{name}} {{vsn}}: manages this release's node. Made by `skitter release`.
#
#   bin/{{name}} start | start_iex | daemon | daemon_iex | stop | restart | pid
#   bin/{{name}} remote            attach a shell to the running node
#   bin/{{name}} rpc EXPR          evaluate EXPR on the running node
#   bin/{{name}} eval EXPR         evaluate EXPR in a fresh runtime, then exit
#   bin/{{name}} version           print "{{name}} <version>"
#
# The mode (local, master or worker) comes from SKITTER_MODE, default
# {{mode}}. releases/<version>/env.sh is sourced first by every command.
set -e
self=$0
while [ -h "$self" ]; do
  link=$(ls -ld "$self" | sed 's/.*-> //')
  case $link in /*) self=$link ;; *) self=${self%/*}/$link ;; esac
done
# Shell built-ins only from here on: every command of this script is timed.
case $self in */*) bin=${self%/*} ;; *) bin=. ;; esac
SKITTER_RELEASE_ROOT=$(cd "$bin/.." && pwd -P)
SKITTER_RELEASE_NAME={{name}}
read -r SKITTER_RELEASE_VSN < "$SKITTER_RELEASE_ROOT/releases/start_data"
SKITTER_RELEASE_COMMAND=${1:-}
export SKITTER_RELEASE_ROOT SKITTER_RELEASE_NAME SKITTER_RELEASE_VSN SKITTER_RELEASE_COMMAND
if [ -f "$SKITTER_RELEASE_ROOT/releases/$SKITTER_RELEASE_VSN/env.sh" ]; then
  . "$SKITTER_RELEASE_ROOT/releases/$SKITTER_RELEASE_VSN/env.sh"
fi
mode=${SKITTER_MODE:-{{mode}}}
skitter="$SKITTER_RELEASE_ROOT/bin/skitter"
node=${SKITTER_NODE:-skitter_$mode}
case $SKITTER_RELEASE_COMMAND in
  start|start_iex|daemon|daemon_iex|stop|restart|pid)
    shift
    exec "$skitter" "$mode" "$SKITTER_RELEASE_COMMAND" "$@" ;;
  remote)
    shift
    exec "$skitter" remote "$node" "$@" ;;
  rpc)
    shift
    [ $# -ge 1 ] || { echo "usage: bin/{{name}} rpc EXPR" >&2; exit 2; }
    exec "$skitter" rpc "$node" "$@" ;;
  eval)
    shift
    [ $# -ge 1 ] || { echo "usage: bin/{{name}} eval EXPR" >&2; exit 2; }
    exec "$skitter" eval "$@" ;;
  version)
    echo "{{name}} $SKITTER_RELEASE_VSN" ;;
  *)
    sed -n '2,12p' "$self" | sed 's/^# \{0,1\}//' >&2
    exit 2 ;;
esac
