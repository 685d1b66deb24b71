# Sourced by every bin/{{name}} command before it runs, with
# SKITTER_RELEASE_ROOT, SKITTER_RELEASE_NAME, SKITTER_RELEASE_VSN and
# SKITTER_RELEASE_COMMAND set. It supplies defaults: a variable the host
# already set keeps the host's value whatever this file says. The same
# release runs on every host; what differs per host comes from the host's
# environment. Keep secrets out of the release (SKITTER_COOKIE, or
# ~/.skitter.cookie on the host).
#
# export SKITTER_ENV=prod            # the [env.NAME] of skitter.toml
# export SKITTER_MODE=local          # local, master or worker
# export SKITTER_NODE=my_node        # the node's name
# export SKITTER_DEPLOY="word_count()"
# export SKITTER_MASTER=master@10.0.0.10:7000   # for workers
