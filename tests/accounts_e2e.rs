//! End-to-end: roles in another AWS account. LocalStack picks the account from the access
//! key ID, and `AssumeRole` lands in the account of the role ARN, so a second account
//! needs only a management role created there with that account's keys. A PodIamRole in a
//! granted namespace gets its role (and, in manage mode, the cluster's OIDC provider) in
//! that account; a namespace without the grant, and an account that is not declared, are
//! refused with no IAM write in either account. LocalStack checks no trust or external
//! ID: the management role's trust is evaluated as STS would (`trust::evaluate_assume_role`).

mod support;

use irsa_api::{PodIamRoleAccount, PodIamRoleAccountStatus};
use irsa_core::{account::management_trust_policy, trust};
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use support::{
    Operator, eventually, eventually_matches,
    fault_proxy::{Fault, FaultProxy, Rule},
    fresh_account_id,
    rbac::{self, OPERATOR_NAMESPACE},
    scenario::{Scenario, dynamo_spec},
    sum_metric, trust_admits, unique,
};

const RBAC: &str = include_str!("../config/rbac/role.yaml");
const EXTERNAL_ID: &str = "irsa-e2e-external-id";
/// The operator's own role, as the management role trusts it. LocalStack runs every
/// caller as its account's root; STS would see a session of this role.
const OPERATOR_ROLE: &str = "arn:aws:iam::000000000000:role/irsa-operator";

/// Sums the write calls the operator made at home and in target accounts.
async fn writes(operator: &Operator) -> (u64, u64) {
    let text = operator.metrics().await.expect("metrics are served");
    (
        sum_metric(&text, "irsa_operator_iam_calls_total", "access=\"write\""),
        sum_metric(
            &text,
            "irsa_operator_account_iam_calls_total",
            "access=\"write\"",
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn roles_are_created_in_a_granted_target_account_only() {
    let mut s = Scenario::prepare("accounts").await;
    s.bed.ensure_oidc_provider().await;
    let account_id = fresh_account_id();
    let target = s.bed.iam_in(&account_id).await;
    let grant = unique("grant");
    s.bed
        .label_namespace(&s.namespace, json!({"irsa-e2e/account": grant}))
        .await;
    let other = unique("no-grant");
    s.bed.create_namespace(&other).await;
    s.bed.grant_everything(&other).await;

    // The platform team's side: the management role in account B, trusting the operator.
    let trust_policy = management_trust_policy(OPERATOR_ROLE, EXTERNAL_ID);
    let operator_session = "arn:aws:sts::000000000000:assumed-role/irsa-operator/irsa-operator";
    assert_eq!(
        trust::evaluate_assume_role(&trust_policy, operator_session, Some(EXTERNAL_ID)),
        Ok(())
    );
    assert!(trust::evaluate_assume_role(&trust_policy, operator_session, None).is_err());
    let account_name = declare_account(&s, &account_id, &trust_policy, &grant).await;
    let accounts: Api<PodIamRoleAccount> = Api::all(s.bed.kube.clone());

    // The operator runs with exactly the shipped RBAC: it reads the accounts and writes
    // their status.
    let kubeconfig = rbac::operator_kubeconfig(&s, &[RBAC]).await;
    s.bed.vars.insert("KUBECONFIG".into(), kubeconfig);
    let scope = format!("{},{other}", s.namespace);
    // Manage mode at home too: the thumbprint for account B's provider needs the CA.
    let ca_file = s.bed.vars["TESTBED_CA_FILE"].clone();
    let flags = [
        "--oidc-provider",
        "manage",
        "--oidc-ca-file",
        &ca_file,
        "--leader-election-namespace",
        OPERATOR_NAMESPACE,
    ];
    s.operator = Some(Operator::start(&s.bed, &s.cluster, &scope, &flags));
    s.operator().wait_ready().await;

    // Granted: the role and the provider are created in account B.
    s.bed.create_service_account(&s.namespace, "payments").await;
    let mut spec = dynamo_spec("payments");
    spec["account"] = json!(account_name);
    s.apply("payments", spec.clone()).await;
    let status = s.wait_reason("payments", "Synced").await;
    let role_name = s.role_name("payments");
    let role_arn = format!(
        "arn:aws:iam::{account_id}:role/irsa/{}/{role_name}",
        s.cluster
    );
    assert_eq!(status.role_arn.as_deref(), Some(role_arn.as_str()));
    assert_eq!(status.account_id.as_deref(), Some(account_id.as_str()));
    let provider_arn = format!(
        "arn:aws:iam::{account_id}:oidc-provider/{}",
        s.bed.issuer_host_path()
    );
    assert_eq!(
        status.oidc_provider_arn.as_deref(),
        Some(provider_arn.as_str())
    );
    assert_eq!(s.annotation("payments").await, Some(role_arn.clone()));
    let role = target
        .get_role()
        .role_name(&role_name)
        .send()
        .await
        .expect("the role is in account B")
        .role
        .unwrap();
    assert_eq!(role.arn(), role_arn);
    let tags = support::scenario::tags(&role);
    assert_eq!(tags.get("irsa.dev/cluster"), Some(&s.cluster));
    assert_eq!(tags.get("irsa.dev/namespace"), Some(&s.namespace));
    let role_trust: Value = serde_json::from_str(
        &percent_encoding::percent_decode_str(role.assume_role_policy_document().unwrap())
            .decode_utf8_lossy(),
    )
    .unwrap();
    assert_eq!(
        role_trust["Statement"][0]["Principal"]["Federated"], provider_arn,
        "the trust names account B's provider"
    );
    let (_, claims) = s
        .bed
        .service_account_token(&s.namespace, "payments", "sts.amazonaws.com")
        .await;
    assert!(
        trust_admits(&role_trust, &claims),
        "STS would admit the pod's token"
    );
    assert!(
        s.role(&role_name).await.is_none(),
        "nothing is created in the operator's own account"
    );
    let provider = target
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(&provider_arn)
        .send()
        .await
        .expect("the cluster's OIDC provider exists in account B");
    assert_eq!(provider.client_id_list(), ["sts.amazonaws.com"]);
    let ready = wait_account_ready(&accounts, &account_name).await;
    assert_eq!(ready.oidc_provider_arn, Some(provider_arn.clone()));
    let text = s.operator().metrics().await.unwrap();
    let label = format!("account=\"{account_name}\"");
    let created = sum_metric(&text, "irsa_operator_account_iam_calls_total", &label);
    let calls: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("irsa_operator_account_iam_calls_total{"))
        .collect();
    eprintln!("IAM calls in account B for one role and its provider: {created}: {calls:#?}");
    let (home_writes, account_writes) = writes(s.operator()).await;
    assert_eq!(
        home_writes, 0,
        "no write at home: the provider there exists"
    );
    // CreateRole + PutRolePolicy, and CreateOpenIDConnectProvider.
    assert_eq!(account_writes, 3, "{text}");

    // Not granted, and not declared: refused, with no IAM write anywhere.
    let refused = Scenario {
        namespace: other.clone(),
        operator: None,
        operator_env: Vec::new(),
        cluster: s.cluster.clone(),
        bed: support::testbed().await,
    };
    refused.bed.create_service_account(&other, "payments").await;
    refused.apply("payments", spec).await;
    let status = refused.wait_reason("payments", "AccountNotAllowed").await;
    assert!(
        status.conditions[0]
            .message
            .contains(&format!("does not grant namespace {other}")),
        "{:?}",
        status.conditions[0]
    );
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(s.bed.kube.clone(), &other);
    eventually("an AccountNotAllowed Event", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("AccountNotAllowed"))
            .map(drop)
    })
    .await;
    let mut unknown = dynamo_spec("payments");
    unknown["account"] = json!("no-such-account");
    s.apply("unknown", unknown).await;
    s.wait_reason("unknown", "AccountNotFound").await;
    assert_eq!(writes(s.operator()).await, (0, account_writes));
    assert!(refused.annotation("payments").await.is_none());
    let listed = target.list_roles().send().await.unwrap();
    assert_eq!(
        listed
            .roles()
            .iter()
            .filter(|r| r.role_name().starts_with(&s.cluster))
            .count(),
        1,
        "account B holds the granted role only"
    );

    // Granting the namespace later lets its PodIamRole through.
    s.bed
        .label_namespace(&other, json!({"irsa-e2e/account": grant}))
        .await;
    refused.wait_reason("payments", "Synced").await;

    // Deleting removes the roles from account B.
    s.delete("payments").await;
    refused.delete("payments").await;
    eventually("the roles to be gone from account B", || async {
        let listed = target.list_roles().send().await.ok()?;
        (!listed
            .roles()
            .iter()
            .any(|r| r.role_name().starts_with(&s.cluster)))
        .then_some(())
    })
    .await;
    s.delete("unknown").await;
    accounts
        .delete(&account_name, &DeleteParams::default())
        .await
        .expect("delete PodIamRoleAccount");
    let log = std::fs::read_to_string(&s.operator().log).unwrap();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator hit an RBAC denial:\n{log}"
    );
}

/// Waits until the account's management role was assumed and its provider found right.
async fn wait_account_ready(
    accounts: &Api<PodIamRoleAccount>,
    name: &str,
) -> PodIamRoleAccountStatus {
    let ready = eventually_matches(
        "the PodIamRoleAccount to be Ready",
        || async { accounts.get(name).await.ok()?.status },
        |status| {
            status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        },
    )
    .await;
    ready.unwrap()
}

/// The platform team's side: a management role in `account_id` with this trust, and a
/// PodIamRoleAccount for it, granted to namespaces labelled `irsa-e2e/account: <grant>`.
async fn declare_account(
    s: &Scenario,
    account_id: &str,
    trust_policy: &Value,
    grant: &str,
) -> String {
    let management_role = s
        .bed
        .iam_in(account_id)
        .await
        .create_role()
        .role_name(unique("irsa-management"))
        .assume_role_policy_document(trust_policy.to_string())
        .send()
        .await
        .expect("CreateRole in account B")
        .role
        .unwrap();
    assert!(management_role.arn().contains(&format!(":{account_id}:")));
    let name = unique("data");
    let declaration = json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "PodIamRoleAccount",
        "metadata": {"name": name},
        "spec": {"accountId": account_id, "managementRoleArn": management_role.arn(),
                 "externalId": EXTERNAL_ID, "oidcProvider": "Manage",
                 "namespaceSelector": {"matchLabels": {"irsa-e2e/account": grant}}}});
    Api::<PodIamRoleAccount>::all(s.bed.kube.clone())
        .patch(
            &name,
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&declaration),
        )
        .await
        .expect("apply PodIamRoleAccount");
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test bed: scripts/test runs it"]
async fn a_failed_assume_role_is_reported_with_sts_message_and_writes_nothing() {
    let mut s = Scenario::prepare("assume-fails").await;
    s.bed.ensure_oidc_provider().await;
    let grant = unique("grant");
    s.bed
        .label_namespace(&s.namespace, json!({"irsa-e2e/account": grant}))
        .await;
    let account_id = fresh_account_id();
    let trust_policy = management_trust_policy(OPERATOR_ROLE, EXTERNAL_ID);
    let account_name = declare_account(&s, &account_id, &trust_policy, &grant).await;
    // STS refuses AssumeRole, as it does when the trust or the external ID does not match.
    let proxy = FaultProxy::start(&s.bed.vars["AWS_ENDPOINT_URL"], 14).await;
    let denied = "User: arn:aws:sts::000000000000:assumed-role/irsa-operator/x is not authorized \
                  to perform: sts:AssumeRole on resource: the management role";
    proxy.set_rules(vec![
        Rule::new(Fault::Error {
            status: 403,
            code: "AccessDenied".into(),
            message: denied.into(),
        })
        .action("AssumeRole"),
    ]);
    s.operator_env = vec![("AWS_ENDPOINT_URL_STS".into(), proxy.url().into())];
    let ca_file = s.bed.vars["TESTBED_CA_FILE"].clone();
    let s = s.with_operator(&["--oidc-ca-file", &ca_file]).await;
    s.bed.create_service_account(&s.namespace, "payments").await;
    let mut spec = dynamo_spec("payments");
    spec["account"] = json!(account_name);
    s.apply("payments", spec).await;
    let status = s.wait_reason("payments", "AccountAssumeFailed").await;
    let message = &status.conditions[0].message;
    assert!(
        message.contains(&format!("AccessDenied: {denied}")),
        "STS's code and message are quoted, not the SDK's dump: {message}"
    );
    assert!(message.contains("nothing was written to IAM"), "{message}");
    // The Warning Event the API server once refused (a note over 1,024 bytes) is recorded.
    let events: Api<Event> = Api::namespaced(s.bed.kube.clone(), &s.namespace);
    eventually_matches(
        "the AccountAssumeFailed Warning Event",
        || async { events.list(&Default::default()).await.unwrap().items },
        |items| {
            items.iter().any(|e| {
                e.reason.as_deref() == Some("AccountAssumeFailed")
                    && e.note.as_deref().is_some_and(|n| n.contains(denied))
            })
        },
    )
    .await;
    assert_eq!(writes(s.operator()).await, (0, 0));
    assert_eq!(
        proxy.attempts("AssumeRole"),
        1,
        "one AssumeRole, however often it is asked"
    );
    let accounts: Api<PodIamRoleAccount> = Api::all(s.bed.kube.clone());
    let declared = accounts.get(&account_name).await.unwrap();
    let ready = &declared.status.unwrap().conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "AccountAssumeFailed")
    );

    // The trust is fixed and the declaration touched: the role follows.
    proxy.clear();
    let touched = json!({"spec": {"sessionName": "irsa-operator-retry"}});
    accounts
        .patch(
            &account_name,
            &PatchParams::default(),
            &Patch::Merge(&touched),
        )
        .await
        .unwrap();
    s.wait_reason("payments", "Synced").await;
    wait_account_ready(&accounts, &account_name).await;
    assert_eq!(
        writes(s.operator()).await.1,
        3,
        "CreateRole, PutRolePolicy, CreateOpenIDConnectProvider"
    );
    s.delete("payments").await;
    accounts
        .delete(&account_name, &DeleteParams::default())
        .await
        .unwrap();
}
