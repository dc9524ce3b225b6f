"""Secret scrubbing: what each function leaves of a URL, a query, an SDK message, a long text."""

from __future__ import annotations

from secpref_guard import logs, scrub

SIGNED = (
    "https://ims.aliyuncs.com/?Action=GetSecurityPreference&Signature=c2lnbmF0dXJl"
    "&SecurityToken=CAIS-token-in-the-query"
)


def test_a_query_string_is_removed_wherever_it_stands() -> None:
    text = f"HTTPConnectionPool failed for {SIGNED} (Caused by timeout)"

    assert scrub.remove_queries(text) == (
        "HTTPConnectionPool failed for https://ims.aliyuncs.com/?<query removed> "
        "(Caused by timeout)"
    )
    assert scrub.remove_queries("'/robot/send?access_token=abc'") == (
        "'/robot/send?<query removed>'"
    )


def test_a_url_is_cut_to_its_host_and_urllib3s_quoted_path_is_removed() -> None:
    text = (
        "HTTPSConnectionPool(host='oapi.dingtalk.com', port=443): Max retries exceeded with "
        "url: /robot/send?access_token=tok&sign=abc (Caused by NewConnectionError) "
        "see https://hooks.example.com/secpref/token-in-path"
    )

    assert scrub.cut_urls(text) == (
        "HTTPSConnectionPool(host='oapi.dingtalk.com', port=443): Max retries exceeded with "
        "url: <removed> (Caused by NewConnectionError) see https://hooks.example.com/..."
    )


def test_an_sdk_message_loses_its_string_to_sign_its_query_and_every_registered_secret() -> None:
    logs.register_secret("registered-secret-value-1")
    message = (
        f"SignatureDoesNotMatch for {SIGNED} with registered-secret-value-1; the server string "
        "to sign is: GET&%2F&AccessKeyId%3DLTAI\nSecurityToken%3DCAIS"
    )

    assert scrub.api_message(message) == (
        "SignatureDoesNotMatch for https://ims.aliyuncs.com/?<query removed> with ***; the "
        "server string to sign is:<removed>"
    )


def test_an_error_text_is_scrubbed_and_bounded() -> None:
    logs.register_secret("registered-secret-value-2")
    text = scrub.error_text(f"failed: {SIGNED} registered-secret-value-2 " + "x" * 600)

    assert text.startswith("failed: https://ims.aliyuncs.com/... *** xxx")
    assert len(text) == scrub.MAX_TEXT_CHARS
    assert text.endswith("...")
    assert scrub.error_text("short") == "short"


def test_a_destination_keeps_scheme_host_and_port_only() -> None:
    assert scrub.safe_destination("https://oapi.dingtalk.com/robot/send?access_token=t") == (
        "https://oapi.dingtalk.com/..."
    )
    assert scrub.safe_destination("https://hooks.example.com:8443/") == (
        "https://hooks.example.com:8443"
    )
    assert scrub.safe_destination("https://hooks.example.com?token=t") == (
        "https://hooks.example.com/..."
    )


def test_every_query_value_of_a_url_is_masked_from_then_on() -> None:
    scrub.register_url_secrets("https://hooks.example.com/h?token=query-token-42&team=sec-ops")

    assert logs.redact("token=query-token-42 team sec-ops") == "token=*** team ***"
    assert logs.redact("token=query-token-42&team=sec-ops") == "***"
