#!/bin/sh
# {{name}} {{vsn}}: manages this release's node. Made by `skitter release`.
usage() {
  cat >&2 <<'USAGE'
usage: bin/{{name}} COMMAND

  start | start_iex | daemon | daemon_iex | stop | restart | pid
                     run or manage this release's node
  remote             attach a shell to the running node
  rpc EXPR           evaluate EXPR on the running node
  eval EXPR          evaluate EXPR in a fresh runtime, then exit
  deploy HOSTS...    start workers on HOSTS over ssh (--release ships this release)
  upgrade VERSION    move the running node to VERSION (installed beside this
                     one, or give its tarball): drained, restarted, redeployed
  versions           the versions installed here, and which is current
  version            print "{{name}} <version>"

The mode (local, master or worker) comes from SKITTER_MODE, default {{mode}}.
releases/<version>/env.sh is sourced first by every command; it supplies
defaults and never overrides a variable already set.
USAGE
}
self=$0
while [ -h "$self" ]; do
  link=$(ls -ld "$self" | sed 's/.*-> //')
  case $link in /*) self=$link ;; *) self=${self%/*}/$link ;; esac
done
# Shell built-ins only from here on: every command of this script is timed.
case $self in */*) bin=${self%/*} ;; *) bin=. ;; esac
SKITTER_RELEASE_ROOT=$(cd "$bin/.." && pwd -P) || exit 2
SKITTER_RELEASE_NAME={{name}}
read -r SKITTER_RELEASE_VSN < "$SKITTER_RELEASE_ROOT/releases/start_data" || exit 2
SKITTER_RELEASE_COMMAND=${1:-}
export SKITTER_RELEASE_ROOT SKITTER_RELEASE_NAME SKITTER_RELEASE_VSN SKITTER_RELEASE_COMMAND
if [ -f "$SKITTER_RELEASE_ROOT/releases/$SKITTER_RELEASE_VSN/env.sh" ]; then
  # env.sh supplies defaults: what the host set before wins.
  skitter_host_env=$(export -p)
  . "$SKITTER_RELEASE_ROOT/releases/$SKITTER_RELEASE_VSN/env.sh"
  eval "$skitter_host_env"
  unset skitter_host_env
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
  deploy)
    shift
    exec "$skitter" deploy "$@" ;;
  upgrade)
    shift
    [ $# -eq 1 ] || { echo "usage: bin/{{name}} upgrade VERSION (or the new release's tarball)" >&2; exit 2; }
    exec "$skitter" upgrade --node "$node" --mode "$mode" "$1" ;;
  versions)
    exec "$skitter" versions "$SKITTER_RELEASE_ROOT" ;;
  version)
    echo "{{name}} $SKITTER_RELEASE_VSN" ;;
  *)
    usage
    exit 2 ;;
esac
