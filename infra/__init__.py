"""Deployment templates and their offline checks; a package only so tests import bicep_variants."""
