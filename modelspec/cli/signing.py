"""Commands on trust: `keys generate|list|trust`, and `audit` with its checkpoints."""

from __future__ import annotations

import sys

import click

from . import echo, emit_json, handle_errors, json_option, main, open_catalog_here, when, workspace_of


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


@keys.command("untrust")
@click.argument("key")
@click.option("--force", is_flag=True, help="Also when it is this workspace's own signing key.")
@json_option
@handle_errors
def keys_untrust(key: str, force: bool, as_json: bool) -> None:
    """Stop accepting signatures by KEY (its id, a prefix of 8+ characters, or the public key):
    removed from modelspec.yaml's trusted_keys. Versions signed only by it no longer verify;
    to rotate, `keys generate --force` first, then untrust the old key once nothing needs it."""
    from ..api import untrust_key

    info = untrust_key(workspace_of(None), key, force)
    if as_json:
        emit_json(info.to_dict())
        return
    echo(f"untrusted: {info.keyid}")


@main.group(invoke_without_command=True)
@click.option(
    "--verify",
    "check",
    is_flag=True,
    help="Check the hash chain and replay it against the tables; exit 1 naming what was tampered with.",
)
@click.option("--limit", type=int, default=None, help="Only the newest N events.")
@json_option
@handle_errors
@click.pass_context
def audit(ctx: click.Context, check: bool, limit: int | None, as_json: bool) -> None:
    """The append-only log of builds, promotions, rollbacks, tags and retirements; with
    --verify, also checked against its latest checkpoint (`audit checkpoint`), which a
    rewritten and recomputed log no longer matches."""
    if ctx.invoked_subcommand is not None:
        return
    # --verify examines a registry the store refuses
    with open_catalog_here(guard=not check, read_only=True) as catalog:
        result = catalog.audit(check, limit)
    if as_json:
        emit_json(result)
    else:
        for e in result["events"]:
            echo(f"{e['seq']:>5}  {when(e['time'])}  {e['kind']:<9} {e['subject']:<24} {e['actor']}")
        if check:
            for problem in result["problems"] or []:
                echo(f"TAMPERED: {problem}")
            anchor = result.get("checkpoint")
            if anchor:
                signed = "signed" if anchor["signed_by"] else "unsigned"
                echo(f"latest checkpoint: event {anchor['events']} at {when(anchor['time'])} UTC ({signed})")
            if result["ok"]:
                echo("audit log intact")
    if check and not result["ok"]:
        sys.exit(1)


@audit.command("checkpoint")
@json_option
@handle_errors
def audit_checkpoint(as_json: bool) -> None:
    """Anchor the audit log now: a checkpoint of its head (event count, last digest, time),
    signed with the workspace's key, stored outside the database. gc, promote and rollback
    write one too."""
    with open_catalog_here() as catalog:
        anchor = catalog.checkpoint()
    if as_json:
        emit_json(anchor)
        return
    signed = f"signed by {anchor['signed_by'][0][:16]}" if anchor["signed_by"] else "unsigned (no signing key)"
    echo(f"checkpoint of event {anchor['events']} ({anchor['head']}): {anchor['digest']}, {signed}")
