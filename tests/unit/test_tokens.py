"""Generated tokens must survive a command line: `--token <value>` breaks if the value
starts with "-" (argparse reads it as an option), which a bare urlsafe token does 1 in 32."""

import argparse
import string

from gateway.auth import ACCOUNT_TOKEN_PREFIX, ADMIN_TOKEN_PREFIX, new_account_token, new_admin_token, token_hash

URLSAFE = set(string.ascii_letters + string.digits + "-_")


def test_generated_tokens_parse_as_option_values() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--token")
    for _ in range(500):
        admin = new_admin_token()
        account, digest = new_account_token()
        assert admin.startswith(ADMIN_TOKEN_PREFIX) and account.startswith(ACCOUNT_TOKEN_PREFIX)
        assert set(admin) <= URLSAFE and set(account) <= URLSAFE
        assert digest == token_hash(account)
        for token in (admin, account):
            assert parser.parse_args(["--token", token]).token == token


def test_admin_tokens_are_not_account_tokens() -> None:
    # The authenticator looks account keys up by their prefix; an admin token must never
    # take that path.
    assert not new_admin_token().startswith(ACCOUNT_TOKEN_PREFIX)
