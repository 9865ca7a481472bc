"""STS GetCallerIdentity over the query protocol: the aws CLI, boto3, and a
presigned URL fetched with a plain GET."""

import datetime
import re

from berthlib import ACCOUNT_ID, ROOT_ARN, http


def test_get_caller_identity_cli(aws):
    out = aws("sts", "get-caller-identity")
    assert out["Account"] == ACCOUNT_ID
    assert out["Arn"] == ROOT_ARN
    assert out["UserId"]


def test_get_caller_identity_boto3(sts):
    out = sts.get_caller_identity()
    assert (out["Account"], out["Arn"]) == (ACCOUNT_ID, ROOT_ARN)
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert out["ResponseMetadata"]["RequestId"]


def presign(sts, expires=300):
    # HttpMethod="GET": without it botocore signs the URL for the model's
    # method (POST), and no SigV4 verifier, AWS's included, accepts it on a GET.
    return sts.generate_presigned_url("get_caller_identity", ExpiresIn=expires, HttpMethod="GET")


def test_presigned_get_caller_identity(sts):
    url = presign(sts)
    assert "X-Amz-Signature=" in url and "Action=GetCallerIdentity" in url
    resp = http().get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    assert f"<Account>{ACCOUNT_ID}</Account>" in resp.text
    assert f"<Arn>{ROOT_ARN}</Arn>" in resp.text
    assert resp.headers.get("x-amzn-RequestId")


def test_presigned_url_tampered(sts):
    url = presign(sts)
    sig = re.search(r"X-Amz-Signature=([0-9a-f]{64})", url).group(1)
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    resp = http().get(url.replace(sig, flipped), timeout=10)
    assert resp.status_code == 403, resp.text
    assert "<Code>SignatureDoesNotMatch</Code>" in resp.text
    assert "<Account>" not in resp.text


def test_presigned_url_expired(sts, monkeypatch):
    import botocore.auth

    real = botocore.auth.get_current_datetime
    monkeypatch.setattr(
        botocore.auth, "get_current_datetime", lambda *a, **k: real(*a, **k) - datetime.timedelta(minutes=30)
    )
    url = presign(sts, 60)
    monkeypatch.undo()
    resp = http().get(url, timeout=10)
    assert 400 <= resp.status_code < 500, resp.text
    assert "<Account>" not in resp.text
