# Sourced by every bin/{{name}} command before it runs, with
# SKITTER_RELEASE_ROOT, SKITTER_RELEASE_NAME, SKITTER_RELEASE_VSN and
# SKITTER_RELEASE_COMMAND set. Configure the node per host here, from the
# host's environment; keep secrets out of the release itself.
#
# export SKITTER_MODE=local          # local, master or worker
# export SKITTER_NODE=my_node        # the node's name
# export SKITTER_DEPLOY="word_count()"
# export SKITTER_COOKIE=$(cat /etc/my_app/cookie)
# export SKITTER_MASTER=master@10.0.0.10:7000   # for workers
