"""Root credentials generated into <data-dir>/credentials when the
environment gives none: mode 0600, AWS shared-credentials format, profile
`berth`, usable as is with `aws --profile berth`."""

import configparser
import stat

from berthlib import ACCOUNT_ID, ROOT_ARN, AwsCli


def cli_with_profile(server, tmp_path, creds_file):
    cli = AwsCli(server.endpoint, server.region, None, None, tmp_path / "cli")
    cli.env["AWS_SHARED_CREDENTIALS_FILE"] = str(creds_file)
    return cli


def read_profile(path):
    cp = configparser.ConfigParser()
    cp.read(path)
    assert cp.has_section("berth"), f"no [berth] profile in {path}: {path.read_text()!r}"
    return cp["berth"]["aws_access_key_id"], cp["berth"]["aws_secret_access_key"]


def test_generated_credentials_file(berth_factory, tmp_path):
    server = berth_factory.start("generated", credentials=None)
    creds_file = server.data_dir / "credentials"
    assert creds_file.exists(), "no credentials file generated"
    mode = stat.S_IMODE(creds_file.stat().st_mode)
    assert mode == 0o600, f"credentials file mode is {oct(mode)}"
    key, secret = read_profile(creds_file)
    assert len(key) >= 16 and len(secret) >= 30, (key, secret)

    cli = cli_with_profile(server, tmp_path, creds_file)
    who = cli("--profile", "berth", "sts", "get-caller-identity")
    assert (who["Account"], who["Arn"]) == (ACCOUNT_ID, ROOT_ARN)
    made = cli("--profile", "berth", "ecs", "create-cluster", "--cluster-name", "from-profile")
    assert made["cluster"]["status"] == "ACTIVE"

    # Without the profile there are no credentials at all; with the
    # well-known test keys the server says no.
    err = cli.fail("ecs", "list-clusters", env={"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
                                                 "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"})
    assert err.code == "UnrecognizedClientException", err.stderr

    # A restart on the same data dir keeps the same credentials and state.
    server.stop()
    server.start()
    assert read_profile(creds_file) == (key, secret)
    assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
    cli = cli_with_profile(server, tmp_path, creds_file)
    names = cli("--profile", "berth", "ecs", "list-clusters")["clusterArns"]
    assert f"arn:aws:ecs:us-east-1:{ACCOUNT_ID}:cluster/from-profile" in names


def test_environment_credentials_are_not_written(berth_factory):
    server = berth_factory.start("from-env")
    creds_file = server.data_dir / "credentials"
    assert not creds_file.exists(), "credentials from the environment must not be written to disk"
    assert server.client("sts").get_caller_identity()["Account"] == ACCOUNT_ID


def test_region_and_account_settings(berth_factory):
    server = berth_factory.start("other-region", region="eu-west-1", account_id="123456789012")
    ecs = server.client("ecs")
    arn = ecs.create_cluster(clusterName="c")["cluster"]["clusterArn"]
    assert arn == "arn:aws:ecs:eu-west-1:123456789012:cluster/c"
    assert server.client("sts").get_caller_identity()["Account"] == "123456789012"


def test_configuration_from_environment(berth_factory):
    server = berth_factory.start(
        "env-config", config_from_env=True, region="ap-south-1", account_id="210987654321"
    )
    assert server.address.startswith("127.0.0.1:")
    assert any(server.data_dir.iterdir()), "the data dir from BERTH_DATA_DIR is unused"
    arn = server.client("ecs").create_cluster(clusterName="e")["cluster"]["clusterArn"]
    assert arn == "arn:aws:ecs:ap-south-1:210987654321:cluster/e"
