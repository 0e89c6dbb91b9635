"""PII: realistic strings are redacted with typed placeholders and counted; look-alikes are left alone."""
import pytest

from curate.tasks.classify.pii import PLACEHOLDERS, find_pii, luhn_ok, redact


@pytest.mark.parametrize("text, expected, counts", [
    ("Copyright 2004-2010 Jane Roe <jane.roe@example.org>", "Copyright 2004-2010 Jane Roe <<EMAIL>>", {"email": 1}),
    ("Reach the maintainer at pkg-foo+bugs@lists.debian.org.", "Reach the maintainer at <EMAIL>.", {"email": 1}),
    ("client 203.0.113.9 blocked; resolver 8.8.8.8 answered", "client 203.0.113.9 blocked; resolver <IP_ADDRESS> answered",
     {"ip_address": 1}),  # 203.0.113.0/24 is a documentation range, not a person's address
    ("Call +49 30 1234567 or (415) 555-2671, fax 415.555.2672.", "Call <PHONE> or <PHONE>, fax <PHONE>.", {"phone": 3}),
    ("paid with 4111 1111 1111 1111 yesterday", "paid with <CARD_NUMBER> yesterday", {"card_number": 1}),
    ("card 5500-0000-0000-0004 on file", "card <CARD_NUMBER> on file", {"card_number": 1}),
    ("Visa card number: 4012888888881881.", "Visa card number: <CARD_NUMBER>.", {"card_number": 1}),
    ("export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "export AWS_ACCESS_KEY_ID=<SECRET>", {"secret": 1}),
    ("token = 'ghp_" + "x1Y2" * 9 + "'", "token = '<SECRET>'", {"secret": 1}),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\nrest", "<SECRET>\nrest", {"secret": 1}),
])
def test_redacts_realistic_personal_data(text, expected, counts):
    out, found = redact(text)
    assert out == expected and dict(found) == counts


@pytest.mark.parametrize("text", [
    "numpy 1.26.4 requires python>=3.9; see version 2.0.0.1 and v10.1.2.3",  # versions
    "Released 2023-11-22, updated 22.11.2023 at 14:05:33",  # dates and times
    "md5 d41d8cd98f00b204e9800998ecf8427e sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",  # hashes
    "order 4111 1111 1111 1112 fails the Luhn check",  # not a valid card number
    "listen on 127.0.0.1 and 192.168.0.10 and 10.0.0.1",  # loopback and private ranges
    "x = y+1 2 3; range(10, 20, 30); arr[1234:5678]",  # code
    "@property\ndef name(self): return self.__dict__['a@b']",  # decorators, not addresses
    "ISBN 978-0-13-468599-1 and page 1024",  # identifiers that are not phone numbers
    "timestamp 1700000000123 and serial 1234567890123456",  # long digit runs without separators
    "see https://x.com/ezyang/status/1746653285440585798/ and assert_almost_equal(norm, 46.4222398107638)",
    "alpha = -1.6732632423543772 and s = pa.scalar(4012888888881881 + 1000)",  # Luhn-valid, but a constant
    "list('-+0123456789') and array([+1.12345679+1.12j])",  # code, not phone numbers
    "$Id: strftime.c,v 1.10.2.3 2005 and ROCM_VERSION,6.0.0.0-1296",  # RCS and build versions
    "0000000: 0000 0000 0000 0000 0000  ................",  # a hex dump
])
def test_leaves_look_alikes_alone(text):
    assert redact(text) == (text, {})


def test_only_the_configured_types():
    text = "mail a.b@example.com from 8.8.4.4"
    assert redact(text, frozenset({"email"}))[0] == "mail <EMAIL> from 8.8.4.4"
    assert [k for _, _, k in find_pii(text)] == ["email", "ip_address"]


def test_luhn():
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713") and not luhn_ok("79927398710")


def test_data_written_against_chinese_or_japanese_text_is_found():
    """Chinese and Japanese run words together: a Han or Kana letter next to a number or an address does not make
    it part of a longer word, as a Latin letter would."""
    text = "电话+86 138 1234 5678，地址8.8.8.8。邮箱user@example.com的；信用卡4111111111111111。ご連絡はinfo@example.jpまで"
    redacted, found = redact(text, frozenset(PLACEHOLDERS))
    assert found == {"phone": 1, "ip_address": 1, "email": 2, "card_number": 1}, redacted
    assert redact("x8.8.8.8 and id8.8.8.8", frozenset(PLACEHOLDERS))[1] == {}  # a Latin letter still joins them
