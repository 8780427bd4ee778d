//! Signing in across a fleet: the sign-in form served by one gateway and posted to another, as a
//! load balancer without sticky sessions sends it, with `[sessions] state_secret_env` shared.

use crate::redis::{pair_with, RedisServer};
use crate::sessions::{Browser, APP};
use crate::support::harness::Resp;
use crate::tokens::ALICE_PASSWORD;
use crate::tokens_code::{hidden, set_cookie};

const SECRET_ENV: &str = "GATEHOUSE_TEST_FLEET_STATE_SECRET";

/// Posts the sign-in form `page` (served by some gateway) to `to`, as the browser that got it.
async fn post_form(to: &Browser<'_>, page: &Resp) -> Resp {
    let pre_login = set_cookie(page, "__Host-gatehouse-csrf").unwrap();
    let form = [
        ("csrf", hidden(&page.body, "csrf")),
        ("rd", hidden(&page.body, "rd")),
        ("username", "alice@example.com".to_string()),
        ("password", ALICE_PASSWORD.to_string()),
    ];
    let r = (to.a.gw.https.post(to.url("/oauth/login")))
        .header("cookie", &pre_login)
        .header("origin", to.url(""))
        .form(&form)
        .send()
        .await
        .unwrap();
    Resp::from(r).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_form_from_one_gateway_is_taken_by_another_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    std::env::set_var(SECRET_ENV, "a secret every replica of the fleet is given");
    let extra = format!("{APP}\n[sessions]\nstate_secret_env = \"{SECRET_ENV}\"\n");
    let (a, b) = pair_with(&redis, &extra).await;
    let (on_a, on_b) = (Browser::new(&a), Browser::new(&b));
    let page = on_a.navigate("/oauth/login?rd=/app/").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let r = post_form(&on_b, &page).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(set_cookie(&r, "__Host-gatehouse").is_some());
    // the same form again, on either gateway: taken once across the fleet
    for again in [&on_a, &on_b] {
        let r = post_form(again, &page).await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("This sign-in form has expired"));
    }
}
