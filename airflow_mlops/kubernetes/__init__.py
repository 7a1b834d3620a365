"""The Kubernetes backend's manifests and controllers (plain functions; the kubernetes client is used by hooks)."""
