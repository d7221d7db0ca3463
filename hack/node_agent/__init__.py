"""A small kubelet stand-in: runs the pods bound to its Node as local processes (see docs/local-cluster.md).

``python -m node_agent --kubeconfig K --node-name N --state-dir D``; container logs:
:func:`node_agent.logs.read_log` or ``python -m node_agent logs``.
"""
