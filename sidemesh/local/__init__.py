"""Local mode: ``sidemesh up`` runs every workload of mesh.yaml on this machine, each
app with its sidecar agent, and gateways, with no Kubernetes.

Owns: picking free ports (and keeping them across reloads), starting sidecars before
their apps and stopping in reverse, restarting crashed processes with backoff,
per-workload log files, the background (``-d``) run and ``down``.
Must not: translate config or serve xDS (the control plane does, in the same process).
"""
