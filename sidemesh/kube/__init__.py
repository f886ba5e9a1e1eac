"""Kubernetes: the same mesh, with pods as workloads.

Owns: sidecar injection (``inject.py``: which pods get the sidecar and the JSONPatch
that adds it, a native sidecar after an init container that installs the traffic
redirect), the mutating admission webhook that serves it (``webhook.py``), and the
redirect's rules (``redirect.py``).
Must not: talk to a cluster to decide an injection (the webhook answers from the
AdmissionReview alone, so it never hangs the API server), or change a pod it was not
asked about.
"""
