"""Services Berth does not serve yet answer honestly, in their own
protocol, naming the service: the real aws CLI shows an "operation not
implemented" error it parsed, not a signature error that reads like a
credentials problem. Their requests are still authenticated."""

import pytest

from berthlib import ROOT_ACCESS_KEY_ID, make_client

# (aws CLI command, the signing name the error names, the code botocore parses)
UNSERVED = [
    (["elbv2", "describe-load-balancers"], "elasticloadbalancing", "InvalidAction"),  # query, XML
    (["iam", "list-users"], "iam", "InvalidAction"),  # query, XML
    (["ec2", "describe-instances"], "ec2", "InvalidAction"),  # ec2 protocol
    (["logs", "describe-log-groups"], "logs", "UnknownOperationException"),  # JSON 1.1
    (["route53", "list-hosted-zones"], "route53", "InvalidAction"),  # rest-xml
    (["scheduler", "list-schedules"], "scheduler", "UnknownOperationException"),  # rest-json
]


@pytest.mark.parametrize("command,service,code", UNSERVED, ids=[c[0][0] for c in UNSERVED])
def test_an_unserved_service_says_so_in_its_own_protocol(aws, command, service, code):
    err = aws.fail(*command)
    assert err.code == code, err.stderr
    assert f"Berth does not serve the {service} API yet" in err.message, err.stderr
    assert "Credential should be scoped" not in err.stderr


def test_unserved_services_still_need_a_valid_signature(berth, tmp_path):
    wrong = berth.aws(tmp_path, credentials=(ROOT_ACCESS_KEY_ID, "not-the-secret-not-the-secret-not-the-sec"))
    err = wrong.fail("elbv2", "describe-load-balancers")
    assert err.code == "SignatureDoesNotMatch", err.stderr
    err = wrong.fail("logs", "describe-log-groups")
    assert err.code == "InvalidSignatureException", err.stderr
    unknown = make_client("ec2", berth.endpoint, "AKIDNOTAKEY000000000", "x")
    with pytest.raises(Exception) as caught:
        unknown.describe_instances()
    assert "AuthFailure" in str(caught.value) or "InvalidClientTokenId" in str(caught.value), caught.value
