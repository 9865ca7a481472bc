"""Account settings: PutAccountSetting, PutAccountSettingDefault,
ListAccountSettings, DeleteAccountSetting. On a server of its own, since
account defaults would change what other tests' clusters get."""

import pytest

from berthlib import ACCOUNT_ID, ROOT_ARN, assert_client_error

ALICE = f"arn:aws:iam::{ACCOUNT_ID}:user/alice"


@pytest.fixture
def server(berth_factory):
    return berth_factory.start("settings")


@pytest.fixture
def aws(server, tmp_path):
    return server.aws(tmp_path / "cli")


@pytest.fixture
def ecs(server):
    return server.client("ecs")


def effective(ecs, name, principal=None):
    kw = {"name": name, "effectiveSettings": True}
    if principal:
        kw["principalArn"] = principal
    settings = ecs.list_account_settings(**kw)["settings"]
    assert len(settings) == 1, settings
    return settings[0]


def test_account_settings_lifecycle_cli(aws, ecs):
    out = aws("ecs", "put-account-setting-default", "--name", "containerInsights", "--value", "enabled")
    assert out["setting"]["name"] == "containerInsights"
    assert out["setting"]["value"] == "enabled"
    assert out["setting"]["principalArn"] == ROOT_ARN

    out = aws(
        "ecs", "put-account-setting", "--name", "containerInsights", "--value", "disabled",
        "--principal-arn", ALICE,
    )
    assert out["setting"] == {**out["setting"], "name": "containerInsights", "value": "disabled", "principalArn": ALICE}

    own, eff = aws.parallel(
        ["ecs", "list-account-settings", "--name", "containerInsights", "--principal-arn", ALICE],
        ["ecs", "list-account-settings", "--name", "containerInsights", "--principal-arn", ALICE, "--effective-settings"],
    )
    assert [(s["name"], s["value"], s["principalArn"]) for s in own["settings"]] == [("containerInsights", "disabled", ALICE)]
    assert [(s["name"], s["value"]) for s in eff["settings"]] == [("containerInsights", "disabled")]

    out = aws("ecs", "delete-account-setting", "--name", "containerInsights", "--principal-arn", ALICE)
    assert (out["setting"]["name"], out["setting"]["principalArn"]) == ("containerInsights", ALICE)

    own, eff = aws.parallel(
        ["ecs", "list-account-settings", "--name", "containerInsights", "--principal-arn", ALICE],
        ["ecs", "list-account-settings", "--name", "containerInsights", "--principal-arn", ALICE, "--effective-settings"],
    )
    assert own["settings"] == []
    # Alice falls back to the account default.
    assert [(s["name"], s["value"]) for s in eff["settings"]] == [("containerInsights", "enabled")]


def test_account_setting_for_caller(ecs):
    # Without a principal, the setting is the caller's own (the root user).
    out = ecs.put_account_setting(name="tagResourceAuthorization", value="on")["setting"]
    assert (out["name"], out["value"], out["principalArn"]) == ("tagResourceAuthorization", "on", ROOT_ARN)
    assert effective(ecs, "tagResourceAuthorization")["value"] == "on"
    listed = ecs.list_account_settings(name="tagResourceAuthorization", value="on")["settings"]
    assert [(s["principalArn"], s["value"]) for s in listed] == [(ROOT_ARN, "on")]
    assert ecs.list_account_settings(name="tagResourceAuthorization", value="off")["settings"] == []


def test_effective_settings_list_all_and_paginate(ecs):
    names = [s["name"] for p in ecs.get_paginator("list_account_settings").paginate(
        effectiveSettings=True, PaginationConfig={"PageSize": 2}) for s in p["settings"]]
    assert len(names) == len(set(names)), names
    for expected in ("containerInsights", "serviceLongArnFormat", "taskLongArnFormat", "containerInstanceLongArnFormat", "awsvpcTrunking"):
        assert expected in names, names
    first = ecs.list_account_settings(effectiveSettings=True, maxResults=2)
    assert len(first["settings"]) == 2 and first.get("nextToken")


def test_bad_account_setting(ecs):
    assert_client_error(
        lambda: ecs.put_account_setting(name="containerInsights", value="maybe"), "InvalidParameterException"
    )
    assert_client_error(
        lambda: ecs.put_account_setting_default(name="notASetting", value="enabled"), "InvalidParameterException"
    )
