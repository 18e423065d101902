"""Multi-stage recipe runner: stage manifests, resume, report."""
