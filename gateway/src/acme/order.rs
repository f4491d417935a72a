//! One order, placed by the instance holding the order lock: the account (made once per
//! directory and kept in storage), the challenges answered through storage, a fresh key and
//! CSR, and the issued chain. The ACME protocol itself is instant-acme's.

use super::certificate::{directory_id, Certificate};
use super::challenge::{tls_alpn01_certificate, Answers};
use super::https::HttpsClient;
use super::storage::{keys, Storage};
use super::{AcmeConfig, Challenge};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use std::time::Duration;

/// How long a challenge answer is of use: the CA validates within minutes.
const CHALLENGE_TTL: Duration = Duration::from_secs(600);

/// Waiting for the CA to validate, then to issue.
const VALIDATION: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));

/// What an order needs from its manager.
pub struct OrderContext<'a> {
    pub config: &'a AcmeConfig,
    pub names: &'a [String],
    pub storage: &'a dyn Storage,
    pub answers: &'a Answers,
}

/// Places an order and returns the issued certificate, or why not (for the WARN log).
pub async fn place_order(cx: &OrderContext<'_>) -> Result<Certificate, String> {
    let account = load_or_create_account(cx).await?;
    match order_with(cx, &account).await {
        // The CA forgot the account (a test CA restarted, an account deactivated): make a
        // new one once.
        Err(OrderError::AccountGone(why)) => {
            log::warn!(
                "acme: the CA no longer knows the stored account ({why}); creating a new one"
            );
            cx.storage
                .delete(&keys::account(&directory_id(&cx.config.directory)))
                .await
                .map_err(|e| e.to_string())?;
            let account = load_or_create_account(cx).await?;
            order_with(cx, &account).await.map_err(|e| e.to_string())
        }
        other => other.map_err(|e| e.to_string()),
    }
}

enum OrderError {
    AccountGone(String),
    Other(String),
}

impl std::fmt::Display for OrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrderError::AccountGone(s) | OrderError::Other(s) => f.write_str(s),
        }
    }
}

impl From<instant_acme::Error> for OrderError {
    fn from(e: instant_acme::Error) -> Self {
        match &e {
            instant_acme::Error::Api(p)
                if p.r#type.as_deref()
                    == Some("urn:ietf:params:acme:error:accountDoesNotExist") =>
            {
                OrderError::AccountGone(e.to_string())
            }
            _ => OrderError::Other(e.to_string()),
        }
    }
}

impl From<String> for OrderError {
    fn from(s: String) -> Self {
        OrderError::Other(s)
    }
}

/// The stored account, or a new one (stored before use, so that the pair shares it).
async fn load_or_create_account(cx: &OrderContext<'_>) -> Result<Account, String> {
    let http = || HttpsClient::new(cx.config.ca.as_deref()).map(Box::new);
    let key = keys::account(&directory_id(&cx.config.directory));
    let stored = cx.storage.get(&key).await.map_err(|e| e.to_string())?;
    if let Some(json) = stored {
        match serde_json::from_slice::<AccountCredentials>(&json) {
            Ok(credentials) => {
                return Account::builder_with_http(http()?)
                    .from_credentials(credentials)
                    .await
                    .map_err(|e| format!("directory {}: {e}", cx.config.directory));
            }
            Err(e) => {
                log::warn!("acme: the stored account is unreadable ({e}); creating a new one")
            }
        }
    }
    let contact = cx.config.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = Account::builder_with_http(http()?)
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            cx.config.directory.clone(),
            None,
        )
        .await
        .map_err(|e| {
            format!(
                "directory {}: cannot create an account: {e}",
                cx.config.directory
            )
        })?;
    let json = serde_json::to_vec(&credentials).map_err(|e| e.to_string())?;
    cx.storage
        .put(&key, &json, None)
        .await
        .map_err(|e| format!("cannot store the new account: {e}"))?;
    log::info!(
        "acme: created an account at {} ({})",
        cx.config.directory,
        account.id()
    );
    Ok(account)
}

async fn order_with(cx: &OrderContext<'_>, account: &Account) -> Result<Certificate, OrderError> {
    let identifiers: Vec<Identifier> = cx.names.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut published = Vec::new();
    let result = answer_and_finalize(cx, &mut order, &mut published).await;
    // The answers are of no more use whatever happened (Redis would forget them anyway).
    for key in published {
        cx.answers.forget(&key);
        if let Err(e) = cx.storage.delete(&key).await {
            log::debug!("acme: cannot delete the challenge answer {key}: {e}");
        }
    }
    result
}

async fn answer_and_finalize(
    cx: &OrderContext<'_>,
    order: &mut instant_acme::Order,
    published: &mut Vec<String>,
) -> Result<Certificate, OrderError> {
    let kind = match cx.config.challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            // Validated for an earlier order and still valid: nothing to answer.
            AuthorizationStatus::Valid => continue,
            status => {
                return Err(format!(
                    "the authorization for {} is {status:?}",
                    authorization.identifier()
                )
                .into())
            }
        }
        let domain = authorization.identifier().to_string();
        let mut challenge = authorization
            .challenge(kind.clone())
            .ok_or_else(|| format!("the CA offers no {kind:?} challenge for {domain}"))?;
        let key_authorization = challenge.key_authorization();
        let (key, value) = match cx.config.challenge {
            Challenge::Http01 => (
                keys::http01(&challenge.token),
                key_authorization.as_str().as_bytes().to_vec(),
            ),
            Challenge::TlsAlpn01 => {
                let (cert, key) =
                    tls_alpn01_certificate(&domain, key_authorization.digest().as_ref())?;
                (
                    keys::tls_alpn01(&domain),
                    format!("{cert}{key}").into_bytes(),
                )
            }
        };
        // Stored before the CA is told to look: it may ask any instance.
        cx.storage
            .put(&key, &value, Some(CHALLENGE_TTL))
            .await
            .map_err(|e| format!("cannot store the challenge answer for {domain}: {e}"))?;
        cx.answers.remember(&key, &value);
        published.push(key);
        challenge.set_ready().await?;
    }

    let status = order.poll_ready(&VALIDATION).await?;
    if status != OrderStatus::Ready {
        return Err(format!(
            "the CA did not validate the challenges: {}",
            failures(order).await
        )
        .into());
    }
    let key = rcgen::KeyPair::generate().map_err(|e| format!("certificate key: {e}"))?;
    let mut params =
        rcgen::CertificateParams::new(cx.names.to_vec()).map_err(|e| format!("CSR: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| format!("CSR: {e}"))?;
    order.finalize_csr(csr.der()).await?;
    let chain = order.poll_certificate(&VALIDATION).await?;
    let certificate = Certificate::from_pem(&chain, &key.serialize_pem())
        .map_err(|e| format!("the CA sent an unusable certificate: {e}"))?;
    if !certificate.covers(cx.names) {
        return Err(format!(
            "the CA issued a certificate for {:?}, not for {:?}",
            certificate.names, cx.names
        )
        .into());
    }
    Ok(certificate)
}

/// The CA's reasons for the challenges it refused, for the log.
async fn failures(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        for challenge in &state.challenges {
            if let Some(problem) = &challenge.error {
                reasons.push(format!("{}: {problem}", state.identifier()));
            }
        }
    }
    if reasons.is_empty() {
        "no reason given".into()
    } else {
        reasons.join("; ")
    }
}
