"""An AWS profile's credentials, read from the shared files as the AWS CLI reads them, for an
s3:// remote: obstore takes the usual variables (AWS_ACCESS_KEY_ID, ...) but not the profiles
of `~/.aws/credentials` and `~/.aws/config`, which is where most people keep their keys.

The variables win when AWS_ACCESS_KEY_ID is set; otherwise the profile named by the remote's
`profile:`, else AWS_PROFILE, else `default` (a default profile that is not there is no error:
the variables, an instance role or a container's credentials may still answer)."""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import UsageError

# Keys of the shared files → obstore's S3Store configuration keys.
_CREDENTIALS = {
    "aws_access_key_id": "access_key_id",
    "aws_secret_access_key": "secret_access_key",
    "aws_session_token": "session_token",
}


def profile_settings(named: str | None, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """S3Store keyword arguments (credentials, region) of the profile, or {} as said above."""
    if env.get("AWS_ACCESS_KEY_ID") and not named:
        return {}
    name = named or env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    home = Path(env.get("HOME") or Path.home())
    credentials_file = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials")
    config_file = Path(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config")
    # In the config file every profile but the default is a `[profile NAME]` section.
    config_section = name if name == "default" else f"profile {name}"
    found: dict[str, str] = {}
    for path, section in ((config_file, config_section), (credentials_file, name)):
        values = _section(path, section)
        if values is None:
            continue
        found.update({_CREDENTIALS[k]: v for k, v in values.items() if k in _CREDENTIALS and v})
        if values.get("region"):
            found["region"] = values["region"]
    if not found.get("access_key_id") and (named or env.get("AWS_PROFILE")):
        raise UsageError(
            f"AWS profile {name!r} has no credentials in {credentials_file} or {config_file}",
            hint="add aws_access_key_id and aws_secret_access_key to that profile, or set AWS_ACCESS_KEY_ID",
        )
    if not found.get("access_key_id"):
        found.pop("session_token", None)
        found.pop("secret_access_key", None)
    return found


def _section(path: Path, section: str) -> dict[str, str] | None:
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise UsageError(f"{path}: cannot be read as an AWS shared file: {exc}") from None
    if not parser.has_section(section):
        return None
    return {key.lower(): value.strip() for key, value in parser.items(section)}
