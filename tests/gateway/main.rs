//! Integration tests: the real gateway on ephemeral ports against in-process identity providers and upstreams.
// Real processes on real time: the tests wait on them and put secrets in the environment before a
// gateway starts, which the gateway itself never does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod audit;
mod audit_sinks;
mod browser;
mod browser_console;
mod browser_sessions;
mod cli;
mod clients;
mod console;
mod dpop;
mod exchange;
mod faults;
mod forward_auth;
mod grpc;
mod grpc_clients;
mod grpc_wire;
mod hardening_proxy;
mod hardening_tokens;
mod headers;
mod imports;
mod issuers;
mod jwks;
mod login_providers;
mod login_state;
mod mcp;
mod mcp_sdk;
mod mcp_sdk_auth;
mod mcp_sdk_open;
mod open_clients;
mod paths;
mod policy;
mod proxies;
mod redis;
mod redis_sign_in;
mod reload;
mod removals;
mod resources;
mod rules;
mod rules_explain;
mod session_cookies;
mod sessions;
mod shape;
mod source_map;
mod standards;
mod stores;
mod support;
mod telemetry;
mod tls;
mod tokens;
mod tokens_code;
mod tokens_ops;
mod tokens_users;
mod upgrade;
mod upstreams;
mod verify;
mod websocket;

use support::harness::Gw;
use support::keys::TestKey;
use support::servers::{Echo, Idp};

pub const HS_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
pub const AUD: &str = "api";

/// A gateway trusting four issuers (RS256 by jwks_uri, ES256 by discovery, EdDSA by static key,
/// HS256 by secret) in front of an echo upstream, with one route per policy.
pub struct World {
    pub gw: Gw,
    pub rsa: TestKey,
    pub ec: TestKey,
    pub ed: TestKey,
    pub hs: TestKey,
    pub idp: Idp,
    pub echo: Echo,
}

pub const RSA_ISS: &str = "https://rsa.test";
pub const ED_ISS: &str = "https://ed.test";
pub const HS_ISS: &str = "https://hs.test";

/// The HS256 issuer `hs` (its secret put in the environment it names), taking `audience`.
pub fn hs_issuer(audience: &str) -> String {
    std::env::set_var("GH_TEST_HS_SECRET", HS_SECRET);
    format!(
        "\n[[issuers]]\nname = \"hs\"\nissuer = \"{HS_ISS}\"\nsecret_env = \"GH_TEST_HS_SECRET\"\n\
         audiences = [\"{audience}\"]\nalgorithms = [\"HS256\"]\n"
    )
}

/// The HS256 issuer for audience `api`, an upstream `echo` at `echo`, a public route `/open` and a
/// route that needs a token, `/closed`, where a rule refuses DELETE: the gateway the audit and
/// telemetry tests watch. More sections follow it.
pub fn open_and_closed(echo: std::net::SocketAddr) -> String {
    hs_issuer("api")
        + &format!(
            r#"
[[upstreams]]
name = "echo"
peers = ["{echo}"]

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "echo"
auth = "public"

[[routes]]
name = "closed"
path_prefix = "/closed"
upstream = "echo"
deny_if = ["request.method == 'DELETE'"]
"#
        )
}

impl World {
    pub async fn start() -> World {
        Self::start_with("").await
    }

    /// `extra` is appended to the configuration (more routes or upstreams).
    pub async fn start_with(extra: &str) -> World {
        let (rsa, ec, ed, hs) = (
            TestKey::rsa("rsa-1"),
            TestKey::ec("ec-1"),
            TestKey::ed("ed-1"),
            TestKey::hmac(HS_SECRET),
        );
        let idp = Idp::start(vec![rsa.jwk.clone(), ec.jwk.clone()]).await;
        let echo = Echo::start("echo").await;
        // SAFETY of set_var: every test sets the same value.
        std::env::set_var("GH_TEST_HS_SECRET", HS_SECRET);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ed.pub.pem"), &ed.public_pem).unwrap();
        let body = format!(
            r#"
[[issuers]]
name = "rsa"
issuer = "{RSA_ISS}"
jwks_uri = "{jwks}"
audiences = ["{AUD}"]
algorithms = ["RS256"]
roles_claim = "realm_access.roles"

[[issuers]]
name = "ec"
issuer = "{ec_iss}"
discovery = true
audiences = ["{AUD}", "other"]
algorithms = ["ES256"]

[[issuers]]
name = "ed"
issuer = "{ED_ISS}"
keys = ["ed.pub.pem"]
audiences = ["{AUD}"]
algorithms = ["EdDSA"]

[[issuers]]
name = "hs"
issuer = "{HS_ISS}"
secret_env = "GH_TEST_HS_SECRET"
audiences = ["{AUD}"]
algorithms = ["HS256"]

[[upstreams]]
name = "echo"
peers = ["{echo}"]

[[upstreams]]
name = "whoami"
kind = "whoami"

[[routes]]
path_prefix = "/public"
upstream = "echo"
auth = "public"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "echo"
[routes.claim_headers]
"X-Auth-Email" = "email"
"X-Tenant" = "org.tenant"

[[routes]]
name = "admin"
path_prefix = "/admin"
upstream = "echo"
roles_any = ["admin"]

[[routes]]
path_prefix = "/scoped"
upstream = "echo"
scopes_all = ["orders.write"]

[[routes]]
path_prefix = "/tenant"
upstream = "echo"
claims = {{ tenant = "acme" }}

[[routes]]
path_prefix = "/optional"
upstream = "echo"
auth = "optional"

[[routes]]
path_prefix = "/q"
upstream = "echo"
token_from = ["query:access_token", "header"]

[[routes]]
path_prefix = "/cookie"
upstream = "echo"
token_from = ["cookie:session"]

[[routes]]
path_prefix = "/strip"
upstream = "echo"
strip_prefix = true

[[routes]]
path_prefix = "/fwd"
upstream = "echo"
forward_token = true

[[routes]]
path_prefix = "/whoami"
upstream = "whoami"
auth = "public"

[[routes]]
path_prefix = "/rsa-only"
upstream = "echo"
issuers = ["rsa"]

[[routes]]
path_prefix = "/methods"
methods = ["GET"]
upstream = "echo"
auth = "public"
{extra}
"#,
            jwks = idp.jwks_uri(),
            ec_iss = idp.url,
            echo = echo.addr,
        );
        let gw = Gw::start_in(dir, &body);
        World {
            gw,
            rsa,
            ec,
            ed,
            hs,
            idp,
            echo,
        }
    }

    pub fn rsa_token(&self, extra: serde_json::Value) -> String {
        self.rsa.sign(&support::keys::claims(RSA_ISS, AUD, extra))
    }

    pub fn ec_token(&self, extra: serde_json::Value) -> String {
        self.ec
            .sign(&support::keys::claims(&self.idp.url, AUD, extra))
    }
}
