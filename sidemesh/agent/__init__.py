"""The sidecar agent: writes a sidecar's bootstrap, starts and supervises its Envoy.

Owns: finding the Envoy binary, the Envoy child process, signal forwarding, exit status.
Must not: talk xDS itself (Envoy does), or read mesh.yaml (the control plane does).
"""
