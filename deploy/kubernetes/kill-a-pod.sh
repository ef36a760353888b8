#!/usr/bin/env bash
# Kill one site pod: the fault of the kill experiment, on Kubernetes.
#
#   deploy/kubernetes/kill-a-pod.sh                    # the first running site pod, force-deleted
#   deploy/kubernetes/kill-a-pod.sh --graceful         # the same, with the pod's grace period
#   deploy/kubernetes/kill-a-pod.sh --pod site-7d9c-x2 # that pod
#
# Force (--grace-period=0 --force, the default) is the closest kubectl gets
# to `python -m deploy kill` (SIGKILL): the pod leaves the Service's
# endpoints at once and the kubelet kills its container with no grace. It is
# not exactly SIGKILL: the kubelet may still send SIGTERM a moment before.
# Graceful is `deploy kill --signal TERM`: preStop, then SIGTERM, and
# gunicorn finishes its requests.
#
# Bounded: every kubectl call has a timeout. Idempotent: a pod that is
# already gone is not an error, and nothing else is touched. The
# Deployment starts a replacement pod, with a new name and empty memory.
set -euo pipefail

namespace=${NAMESPACE:-stateful-lab}
pod=""
graceful=0
timeout=60s

usage() {
    echo "usage: $0 [--graceful] [--pod NAME] [--namespace NAME] [--timeout 60s]" >&2
    exit 2
}

while (($#)); do
    case $1 in
        --graceful) graceful=1 ;;
        --pod) pod=${2:?--pod needs a name}; shift ;;
        --namespace) namespace=${2:?--namespace needs a name}; shift ;;
        --timeout) timeout=${2:?--timeout needs a duration, e.g. 60s}; shift ;;
        -h|--help) usage ;;
        *) echo "kill-a-pod: unknown argument $1" >&2; usage ;;
    esac
    shift
done

command -v kubectl >/dev/null || { echo "kill-a-pod: kubectl is not on PATH" >&2; exit 1; }

if [[ -z $pod ]]; then
    pod=$(kubectl --namespace "$namespace" --request-timeout="$timeout" get pods \
        --selector app.kubernetes.io/name=site --field-selector status.phase=Running \
        --output jsonpath='{.items[0].metadata.name}')
    if [[ -z $pod ]]; then
        echo "kill-a-pod: no running site pod in namespace $namespace; nothing to do"
        exit 0
    fi
fi

if ((graceful)); then
    how=(--wait=true --timeout="$timeout")
    what="graceful (preStop, SIGTERM, the pod's grace period)"
else
    how=(--grace-period=0 --force --wait=false)
    what="forced (no grace: a dead process)"
fi

echo "kill-a-pod: $(date -u +%H:%M:%S) deleting pod $pod in $namespace, $what"
kubectl --namespace "$namespace" --request-timeout="$timeout" delete pod "$pod" \
    --ignore-not-found "${how[@]}"
echo "kill-a-pod: $(date -u +%H:%M:%S) done; the Deployment replaces it (kubectl -n $namespace get pods -w)"
