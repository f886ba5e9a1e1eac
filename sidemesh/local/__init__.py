"""Local mode: ``sidemesh up`` runs every workload of mesh.yaml on this machine, each
app with its sidecar agent, and gateways, with no Kubernetes.

Owns: the supervisor (``up``), which runs the control plane as a child and every
workload its plan names; picking free ports (and keeping them across reloads and
control plane restarts); starting sidecars before their apps and stopping in reverse;
restarting crashed processes with backoff; children that die with the supervisor;
the run files through which the processes talk and ``down`` cleans up; per-workload
log files; the background (``-d``) run and ``down``.
Must not: translate config or serve xDS (the control plane does, in its own process).
"""
