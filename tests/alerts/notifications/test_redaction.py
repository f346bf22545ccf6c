"""What an admin sees of a channel's URL in the notification log and in facmon's log."""

from __future__ import annotations

import pytest

from facmon.alerts.notifications.redaction import redact, redact_url

SLACK = "https://hooks.slack.com/services/T024BE7LD/B01234567/Zq8rT3xVn6Wb1Lk5Yh0Pm2Jc"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (SLACK, "https://hooks.slack.com/services/T0***"),
        (
            "https://open.feishu.cn/open-apis/bot/v2/hook/8c6d1f2a-5b3e-4f7a-9c2d-0e1f2a3b4c5d",
            "https://open.feishu.cn/open-apis/bot/v2/hook/8c6d***",
        ),
        (
            "https://prod-12.westeurope.logic.azure.com:443/workflows/0a1b2c3d4e5f6a7b/triggers/manual/paths/invoke"
            "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=Qx7-Kp2Vb9",
            "https://prod-12.westeurope.logic.azure.com:443/workflows/0a1b***?api-version=***&sp=***&sv=***&sig=***",
        ),
        (
            "https://contoso.webhook.office.com/webhookb2/1a2b3c4d-0000-4111-8222-333344445555@9f8e7d6c/"
            "IncomingWebhook/0123abcd/ffee",
            "https://contoso.webhook.office.com/webhookb2/1a2b***",
        ),
        (
            "https://oapi.dingtalk.com/robot/send?access_token=0123456789abcdef&timestamp=1795397772000&sign=a%2Bb%3D",
            "https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=***&sign=***",
        ),
        (
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7aaa-4bc4-97a0-0ec2sifa5aaa",
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***",
        ),
        ("https://facmon:p@ss:w0rd@ops.example.com/facmon", "https://facmon:***@ops.example.com/facmon"),
        ("https://ghp_token1234@ops.example.com/facmon", "https://***@ops.example.com/facmon"),
        ("https://ops.example.com/facmon", "https://ops.example.com/facmon"),  # nothing secret: all of it
        ("http://[::1]:8080/api/v1/hook#section", "http://[::1]:8080/api/v1/hook#***"),
    ],
)
def test_the_host_and_the_start_of_the_path_stay_the_secret_goes(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # redacting twice changes nothing
    assert redact(f"POST to {url} failed") == f"POST to {shown} failed"


def test_a_known_url_is_redacted_also_where_only_its_path_or_token_appears() -> None:
    text = (
        "HTTPSConnectionPool(host='hooks.slack.com', port=443): Max retries exceeded with url: "
        "/services/T024BE7LD/B01234567/Zq8rT3xVn6Wb1Lk5Yh0Pm2Jc; the receiver said: no hook Zq8rT3xVn6Wb1Lk5Yh0Pm2Jc"
    )
    redacted = redact(text, urls=[SLACK])
    assert "Zq8rT3xVn6Wb1Lk5Yh0Pm2Jc" not in redacted
    assert "B01234567" not in redacted
    assert redacted.startswith("HTTPSConnectionPool(host='hooks.slack.com', port=443): ")
    assert "with url: /services/T0***;" in redacted


def test_http_request_lines_and_bare_credentials_are_redacted_without_knowing_the_url() -> None:
    line = 'https://hooks.slack.com:443 "POST /services/T024BE7LD/B01234567/Zq8rT3xVn6Wb1Lk5Yh0Pm2Jc HTTP/1.1" 404 9'
    assert redact(line) == 'https://hooks.slack.com:443 "POST /services/T0*** HTTP/1.1" 404 9'
    assert redact("GET /cgi-bin/webhook/send?key=KEY-1234 HTTP/1.1") == "GET /cgi-bin/webhook/send?key=*** HTTP/1.1"
    assert redact("rejected access_token=abcd1234 and sig=xyz") == "rejected access_token=*** and sig=***"


def test_known_secrets_are_replaced_anywhere_but_short_ones_and_plain_text_are_left_alone() -> None:
    assert redact("535 auth failed for s3cret-pass", secrets=["s3cret-pass"]) == "535 auth failed for ***"
    assert redact("451 try again later", secrets=["ab"]) == "451 try again later"
    assert redact("see https://ops.example.com/facmon.") == "see https://ops.example.com/facmon."
