"""An s3:// remote's credentials from an AWS profile (store/awsprofile.py), as the AWS CLI
reads the shared credentials and config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelspec.errors import UsageError
from modelspec.store.awsprofile import profile_settings

CREDENTIALS = """\
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = default-secret

[team]
aws_access_key_id = AKIDTEAM
aws_secret_access_key = team-secret
aws_session_token = team-token
"""
CONFIG = """\
[default]
region = eu-west-1

[profile team]
region = eu-central-1
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "credentials").write_text(CREDENTIALS)
    (tmp_path / "config").write_text(CONFIG)
    return {
        "HOME": str(tmp_path / "nowhere"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
    }


def test_the_default_profile_without_variables(files: dict[str, str]) -> None:
    assert profile_settings(None, files) == {
        "access_key_id": "AKIDDEFAULT",
        "secret_access_key": "default-secret",
        "region": "eu-west-1",
    }


def test_aws_profile_or_the_remotes_profile_names_one(files: dict[str, str]) -> None:
    team = {
        "access_key_id": "AKIDTEAM",
        "secret_access_key": "team-secret",
        "session_token": "team-token",
        "region": "eu-central-1",
    }
    assert profile_settings(None, {**files, "AWS_PROFILE": "team"}) == team
    assert profile_settings("team", {**files, "AWS_PROFILE": "default"}) == team
    # The variables win over AWS_PROFILE and the default; a profile the remote names wins over them.
    variables = {**files, "AWS_ACCESS_KEY_ID": "AKIDVAR", "AWS_PROFILE": "team"}
    assert profile_settings(None, variables) == {}
    assert profile_settings("team", variables) == team


def test_no_files_no_settings_but_a_named_profile_that_is_not_there_is_an_error(tmp_path: Path) -> None:
    nothing = {"HOME": str(tmp_path)}
    assert profile_settings(None, nothing) == {}  # an instance role may still answer
    with pytest.raises(UsageError, match="AWS profile 'ghost' has no credentials in"):
        profile_settings("ghost", nothing)
    with pytest.raises(UsageError, match="AWS profile 'ghost'"):
        profile_settings(None, {**nothing, "AWS_PROFILE": "ghost"})


def test_a_file_that_is_not_ini_is_named(tmp_path: Path) -> None:
    (tmp_path / "credentials").write_text("aws_access_key_id = no section\n")
    with pytest.raises(UsageError, match="cannot be read as an AWS shared file"):
        profile_settings(None, {"HOME": str(tmp_path), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials")})
