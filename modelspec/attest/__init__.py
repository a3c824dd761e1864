"""Attestations: in-toto provenance statements, DSSE envelopes signed with ed25519, the keys
that sign and the keys trusted to have signed, and signed checkpoints of the audit log.

Below the registry and above the store: nothing here opens a database or builds anything.
`cryptography` is imported only where a signature is made or checked.
"""
