#!/usr/bin/env bash
# make demo: replays both incidents on an embedded control plane. With a
# cluster configured (KUBECONFIG), it changes nothing and says how to deploy.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${KUBECONFIG:-}" ]; then
  cat <<'TXT'
KUBECONFIG is set: the demo never touches a real cluster. To deploy Ballast there:

  make build
  # as a second scheduler (pods opt in with schedulerName: ballast-scheduler):
  bin/scheduler --config config/samples/secondary-profile.yaml   # set clientConnection.kubeconfig
  # or in place of kube-scheduler:
  bin/scheduler --config config/samples/replacement.yaml
  # beside cluster-autoscaler on AWS, see what the balancer would change first:
  bin/az-balancer plan --cluster-name <name> --region <region>

Unset KUBECONFIG to run the demo on an embedded control plane.
TXT
  exit 0
fi
export PATH="$PWD/bin:$PATH"
go test -count=1 -timeout 20m -run '^TestDemo$' -v ./test/demo/ > /tmp/ballast-demo.log 2>&1 || { tail -50 /tmp/ballast-demo.log; echo "demo failed, full log: /tmp/ballast-demo.log"; exit 1; }
sed -n '/^BALLAST DEMO/,/^END OF DEMO/p' /tmp/ballast-demo.log
