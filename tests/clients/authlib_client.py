"""Authlib and requests with their defaults against a running gatehouse: metadata validation,
client_credentials, private_key_jwt, the jwt-bearer grant with only an assertion, code + PKCE
through the sign-in form with an RS256 ID token, refresh, userinfo, introspection, revocation,
token exchange (RFC 8693).
Prints "ok: <flow>" per flow; any failure exits non-zero.
Input (environment): GATEHOUSE_URL, SVC_SECRET, SIGNER_KEY (PKCS#8 PEM file), ALICE_PASSWORD,
EXCHANGER_SECRET, REQUESTS_CA_BUNDLE (the gateway's certificate).
"""

import base64
import html
import json
import os
import re
import sys
import uuid

import requests
from authlib.integrations.requests_client import AssertionSession, OAuth2Session
from authlib.jose import JsonWebKey, jwt  # noqa: the stable API of Authlib 1.x
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oidc.discovery import OpenIDProviderMetadata

BASE = os.environ["GATEHOUSE_URL"].rstrip("/")


def ok(what):
    print(f"ok: {what}", flush=True)


def must(cond, what):
    if not cond:
        sys.exit(f"failed: {what}")


meta = requests.get(f"{BASE}/.well-known/openid-configuration", timeout=10).json()
OpenIDProviderMetadata(meta).validate()
ok("metadata validation")
TOKEN = meta["token_endpoint"]

svc = OAuth2Session("svc", os.environ["SVC_SECRET"], scope="orders.read")
cc = svc.fetch_token(TOKEN, grant_type="client_credentials")
must(cc.get("access_token"), "client_credentials token")
ok("client_credentials")

key = open(os.environ["SIGNER_KEY"]).read()
signer = OAuth2Session("signer", key, token_endpoint_auth_method="private_key_jwt", scope="orders.read")
signer.register_client_auth_method(PrivateKeyJWT(TOKEN))
pkj = signer.fetch_token(TOKEN, grant_type="client_credentials")
must(pkj.get("access_token"), "private_key_jwt token")
ok("private_key_jwt (Authlib's one-hour assertions)")

def assertion_session(**more):
    """The jwt-bearer grant for alice, signed by the client "signer"."""
    return AssertionSession(
        token_endpoint=TOKEN,
        issuer="signer",
        subject="alice",
        audience=TOKEN,
        key=key,
        header={"alg": "RS256"},
        claims={"jti": str(uuid.uuid4())},
        scope="orders.read",
        **more,
    )


jb = assertion_session().refresh_token()
must(jb.get("access_token"), "jwt-bearer token")
ok("jwt-bearer with only the assertion")

nb = assertion_session(client_id="signer").refresh_token()
must(nb.get("access_token"), "jwt-bearer token with client_id")
ok("jwt-bearer naming its client_id")

spa = OAuth2Session(
    "browser",
    redirect_uri="https://app.example/cb",
    scope="openid profile orders.read",
    code_challenge_method="S256",
)
verifier = uuid.uuid4().hex + uuid.uuid4().hex
url, state = spa.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce="n-1")
browser = requests.Session()
page = browser.get(url, timeout=10)
must(page.status_code == 200, f"sign-in page {page.status_code}")
form = {k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)}
form.update(username="alice@example.com", password=os.environ["ALICE_PASSWORD"])
done = browser.post(meta["authorization_endpoint"], data=form, allow_redirects=False, timeout=10)
must(done.status_code == 303, f"sign-in answered {done.status_code}")
tokens = spa.fetch_token(TOKEN, authorization_response=done.headers["location"], code_verifier=verifier)
jwks = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
claims = jwt.decode(tokens["id_token"], jwks, claims_options={"iss": {"values": [meta["issuer"]]}})
claims.validate()
must(claims["sub"] == "user-alice" and claims["nonce"] == "n-1", "id token claims")
ok("authorization_code with PKCE and an RS256 ID token")

info = spa.get(meta["userinfo_endpoint"], timeout=10).json()
must(info.get("name") == "Alice", f"userinfo {info}")
ok("userinfo")

old = tokens["refresh_token"]
fresh = spa.refresh_token(TOKEN, refresh_token=old)
must(fresh["refresh_token"] != old, "refresh rotated")
ok("refresh")

live = svc.introspect_token(meta["introspection_endpoint"], token=cc["access_token"]).json()
must(live.get("active") is True, f"introspection {live}")
svc.revoke_token(meta["revocation_endpoint"], token=cc["access_token"])
dead = svc.introspect_token(meta["introspection_endpoint"], token=cc["access_token"]).json()
must(dead == {"active": False}, f"after revocation {dead}")
ok("introspection and revocation")

# The client "exchanger" swaps svc's token for one for the same audience, narrowed, acting for svc.
exchanger = OAuth2Session("exchanger", os.environ["EXCHANGER_SECRET"])
subject = svc.fetch_token(TOKEN, grant_type="client_credentials")["access_token"]
swapped = exchanger.fetch_token(
    TOKEN,
    grant_type="urn:ietf:params:oauth:grant-type:token-exchange",
    subject_token=subject,
    subject_token_type="urn:ietf:params:oauth:token-type:access_token",
    audience="api",
    scope="orders.read",
)
must(swapped.get("issued_token_type") == "urn:ietf:params:oauth:token-type:access_token", f"exchange {swapped}")
must(swapped.get("token_type") == "Bearer" and swapped.get("scope") == "orders.read", f"exchange {swapped}")
payload = swapped["access_token"].split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
must(claims["sub"] == "svc" and claims["act"] == {"sub": "exchanger"}, f"exchanged claims {claims}")
ok("token exchange")
