"""Commands on keys: `keys generate`, `keys list`, `keys trust`."""

from __future__ import annotations

import click

from . import echo, emit_json, handle_errors, json_option, main, workspace_of


@main.group()
def keys() -> None:
    """The ed25519 key that signs provenance and audit checkpoints, and the keys trusted.

    \b
    The private key: .modelspec/keys/signing.pem (mode 0600), or PEM text in
    MODELSPEC_SIGNING_KEY. Trusted public keys: `trusted_keys` in modelspec.yaml."""


@keys.command("generate")
@click.option("--force", is_flag=True, help="Replace the workspace's existing signing key.")
@click.option("--no-trust", is_flag=True, help="Do not add its public key to modelspec.yaml's trusted_keys.")
@json_option
@handle_errors
def keys_generate(force: bool, no_trust: bool, as_json: bool) -> None:
    """Make the workspace's signing key; builds sign their provenance with it from now on."""
    from ..api import generate_key

    info = generate_key(workspace_of(None), force=force, trust=not no_trust)
    if as_json:
        emit_json(info.to_dict())
        return
    echo(f"wrote {info.source} (readable by you only; never commit it)")
    echo(f"key id      {info.keyid}")
    echo(f"public key  {info.public}")
    if info.trusted:
        echo("trusted in modelspec.yaml: commit it so that others verify with it")
    else:
        echo(f"trust it elsewhere with `modelspec keys trust {info.public}`")


@keys.command("list")
@json_option
@handle_errors
def keys_list(as_json: bool) -> None:
    """The signing key and the trusted public keys."""
    from ..api import list_keys

    found = list_keys(workspace_of(None))
    if as_json:
        emit_json({"keys": [k.to_dict() for k in found]})
        return
    if not found:
        echo("no signing key and no trusted key: `modelspec keys generate` makes one")
    for key in found:
        roles = ", ".join(r for r, on in (("signing", key.signing), ("trusted", key.trusted)) if on)
        echo(f"{key.keyid[:16]}  {key.public}  {roles}  ({key.source})")


@keys.command("trust")
@click.argument("public_key")
@json_option
@handle_errors
def keys_trust(public_key: str, as_json: bool) -> None:
    """Accept signatures by PUBLIC_KEY (base64 of the raw key, or a PEM file): added to
    modelspec.yaml's trusted_keys."""
    from ..api import trust_key

    info, added = trust_key(workspace_of(None), public_key)
    if as_json:
        emit_json({**info.to_dict(), "added": added})
        return
    echo(f"{'trusted' if added else 'already trusted'}: {info.keyid}")
