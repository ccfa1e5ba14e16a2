"""Kubernetes operator for agent-runtime.

Layers (upper imports lower; see .importlinter):
  __main__ (CLI) > handlers (kopf registrations, thin) > controller (async shell: state, patch queue)
  > kubeapi (async apiserver client) | placement, resources, shards, deletion (pure) > models, crdgen.
"""
