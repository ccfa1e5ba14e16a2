"""Kubernetes operator for agent-runtime.

Layers (upper imports lower; see .importlinter):
  __main__ (CLI) > handlers (kopf registrations, thin) > controller (async shell: state, patch queue)
  > folders, crdgen > placement, resources, agents, shards, paths (pure) > models.
The apiserver client and kubeconfig loader are agent_runtime.kube's (client, config), shared with
the shards and the router.
"""
