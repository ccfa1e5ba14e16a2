"""Kubernetes mode: a small async API client, the shard process (controller, Lease, status
reporter), the router, and the sans-IO cores they drive (status batching, routes)."""
